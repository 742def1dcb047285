"""Provides ``tinyo-tui RECIPE``: the console, or the headless engine when there is no terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer
from tinyo.cli_options import (
    AllowWorldWritableOpt,
    Command,
    DbOpt,
    DebugOpt,
    ExecChoice,
    ExecutionOpt,
    ExecutorOpt,
    RecipeArg,
    WorkersOpt,
    version_option,
)

EXIT_OK, EXIT_USAGE = 0, 2

typer_app = typer.Typer(pretty_exceptions_enable=False)


@typer_app.command(cls=Command, epilog="Example: tinyo-tui recipe.py --theme light\n\n"
                                 "Without a terminal (stdout or stdin not a TTY) it runs the headless engine, "
                                 "like `tinyo run`.")
def console(
    recipe: RecipeArg,
    theme: Annotated[Optional[str], typer.Option(
        "--theme", metavar="NAME", envvar="TINYO_THEME", show_envvar=True,
        help="dark (default), light, high-contrast, or any Textual theme name.")] = None,
    db: DbOpt = None,
    execution: ExecutionOpt = None,
    workers: WorkersOpt = None,
    grace: Annotated[float, typer.Option(
        "--grace", metavar="SECONDS", min=0,
        help="On quit, how long running ops get to finish before they are stopped (they run again on the "
             "next start).")] = 10.0,
    debug: DebugOpt = False,
    executor: ExecutorOpt = None,
    allow_world_writable: AllowWorldWritableOpt = False,
    attach: Annotated[bool, typer.Option(
        "--attach", help="Only attach to the engine running on the state file (exit 2 if none runs).")] = False,
    _version: Annotated[Optional[bool], version_option("tinyo-tui")] = None,
) -> None:
    """tinyo's operations console: live events, document DAG, workers, lanes and output.

    If an engine already runs on the recipe's state file (`tinyo start`, `tinyo run`), the console attaches
    to it, and quitting leaves it running; otherwise the console runs its own engine."""
    raise typer.Exit(run_console(recipe, theme=theme, db=db, execution=execution, workers=workers, grace=grace,
                                 debug=debug, executor=executor, allow_world_writable=allow_world_writable,
                                 attach=attach))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    typer_app(args=list(argv) if argv is not None else None, prog_name="tinyo-tui")


def run_console(recipe: Path, *, theme: str | None = None, db: str | None = None,
                execution: ExecChoice | None = None, workers: int | None = None, grace: float = 10.0,
                debug: bool = False,
                executor: str | None = None, allow_world_writable: bool = False, attach: bool = False) -> int:
    """Run the console (or the headless fallback); returns the exit status."""
    from tinyo.errors import TinyoError
    from tinyo.model import Execution

    chosen = Execution(execution.value) if execution else None
    if executor is not None:
        if execution is not None:
            print("tinyo-tui: error: --executor runs ops on Dask; it cannot be combined with --execution",
                  file=sys.stderr)
            return EXIT_USAGE
        chosen = Execution.DASK
    if (not sys.stdout.isatty() or not sys.stdin.isatty()) and attach:
        print("tinyo-tui: error: --attach needs a terminal (without one, `tinyo events RECIPE --follow` shows "
              "the running engine)", file=sys.stderr)
        return EXIT_USAGE
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        print(f"tinyo-tui: no terminal, running the headless engine (like `tinyo run {recipe}`)",
              file=sys.stderr)
        from tinyo.headless import run_headless

        return run_headless(recipe, db=db, execution=chosen, workers=workers, debug=debug,
                            allow_world_writable=allow_world_writable, executor_address=executor, grace=grace)

    from tinyo.engine import Engine

    from .theming import ThemeError, load_themes, resolve_theme

    try:
        resolve_theme(theme, [*load_themes(), *_textual_themes()])
    except ThemeError as exc:
        print(f"tinyo-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded, attached = _attach(recipe, db, allow_world_writable, attach)
        engine = attached if attached is not None else Engine(loaded, db=db, execution=chosen, max_workers=workers,
                                                              executor_address=executor)
    except TinyoError as exc:
        if debug:
            raise
        print(f"tinyo-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from tinyo.control.server import serve

    from .app import build_app

    # `tinyo events|inject|stop|...` reach an embedded engine as they reach `tinyo run`
    channel = serve(engine) if isinstance(engine, Engine) else None
    app = build_app(engine, theme=theme, grace=grace)
    # Signals are handled from now on: a hang-up while the engine starts still stops it gracefully.
    app.stopper.start()
    collect_less()  # before the engine starts: its generators and the app run with it
    try:
        if engine.execution in (Execution.PROCESSES, Execution.DASK):
            # Start the engine before Textual takes over the terminal: worker processes start from
            # a fork server, which needs the real stderr (inside the app sys.stderr is a capture
            # without a file descriptor). start() is idempotent, so the app's start is a no-op.
            # Thread and inline ops must start inside the app instead: their print() capture wraps
            # whatever sys.stdout is when the engine starts.
            engine.start()
        app.run()
    finally:
        # Whatever ended the app (q, SIGHUP, a lost terminal, a crash), the engine stops gracefully
        # and commits its state; stop() is idempotent, so a clean quit costs nothing here.
        engine.stop(timeout=grace)
        if channel is not None:
            channel.close()
    return app.return_code or EXIT_OK


GC_THRESHOLDS = (20_000, 50, 100)
"""The cyclic collector's thresholds in the console's process (Python's: 700, 10, 10)."""


def collect_less() -> None:
    """Run the cyclic garbage collector far less often in the console's process (``tinyo.heap.settle``).
    Under a flood it allocates tens of thousands of short-lived objects a second (facts, rows, strips),
    nearly none in cycles, and holds a large heap (the panes' rows, cached documents, Textual's widgets):
    with Python's thresholds the collector ran ~100 times a second and a full collection, several a minute,
    stopped the UI for up to ~250 ms (measured with ``gc.callbacks`` during ``bench_tui.py``'s flood)."""
    from tinyo.heap import settle

    settle(*GC_THRESHOLDS)


def _attach(recipe: Path, db: str | None, allow_world_writable: bool, only: bool):  # noqa: ANN202
    """The loaded recipe, and the engine running on its state file attached to (None when none runs: an
    error when ``only`` attaching)."""
    from tinyo.control.client import NotRunning
    from tinyo.control.handle import RemoteEngine
    from tinyo.errors import TinyoError
    from tinyo.recipe import load_recipe

    loaded = load_recipe(recipe, allow_world_writable=allow_world_writable)
    try:
        return loaded, RemoteEngine(loaded, db or loaded.config.sql_conn, reattach=True)
    except NotRunning as exc:
        if only:
            raise TinyoError(f"{exc}: nothing to attach to (start one with `tinyo start {recipe}`)") from None
        return loaded, None


def _textual_themes() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    return list(BUILTIN_THEMES)


if __name__ == "__main__":
    main()
