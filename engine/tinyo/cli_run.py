"""Provides ``tinyo run`` on the full command line (typer): its options and help, then ``run_headless``.

The ``tinyo`` entry point runs a plain ``tinyo run`` without typer (:mod:`tinyo.cli_direct`); this is
the command for everything else (``--help``, ``--executor``, an option it does not read).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .cli_options import AllowWorldWritableOpt, DbOpt, DebugOpt, ExecutionOpt, ExecutorOpt, RecipeArg, WorkersOpt
from .cli_support import add_command, debugging, fail
from .headless import run_headless
from .model import Execution

__all__ = ["register", "run", "run_headless"]


def run(
    recipe: RecipeArg,
    db: DbOpt = None,
    idle_exit: Annotated[Optional[float], typer.Option("--idle-exit", metavar="SECONDS",
                         help="Exit once nothing arrived, was queued or ran for this many seconds.")] = None,
    stop_after: Annotated[Optional[int], typer.Option("--stop-after", metavar="N",
                          help="Exit after N events were taken in and the work they caused finished.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Print one JSON object per bus event.")] = False,
    debug: DebugOpt = False,
    execution: ExecutionOpt = None,
    workers: WorkersOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print state changes.")] = False,
    allow_world_writable: AllowWorldWritableOpt = False,
    executor: ExecutorOpt = None,
) -> None:
    """Run a recipe headless: watch its folders and timers, run its ops, log what happens."""
    if executor is not None:
        if executor != "local-dask" and "://" not in executor:
            fail(f"--executor must be a Dask scheduler address like tcp://host:8786, or local-dask; got {executor!r}")
        if execution is not None:
            fail(f"--executor {executor} runs ops on Dask; it cannot be combined with --execution {execution.value}")
    code = run_headless(recipe, db=db, idle_exit=idle_exit, stop_after=stop_after, json_lines=json_lines,
                        debug=debug or debugging(), execution=Execution(execution.value) if execution else None,
                        workers=workers, verbose=verbose, allow_world_writable=allow_world_writable,
                        executor_address=executor)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``tinyo run`` to the command line."""
    add_command(app, run, "tinyo run recipe.py --idle-exit 5")
