"""Provides the headless command line ``tinyo`` (typer): init, run, validate, status, dag, why, rerun, inject,
fire, pause, resume, cancel, start, stop, events.

This module builds the command line and owns ``tinyo init``; the commands live by what they do:
``cli_run`` (``run``; ``run_headless``, from ``headless``, is re-exported here), ``cli_inspect`` (validate, status, dag,
why), ``cli_requests`` (rerun, inject, fire, pause, resume, cancel), ``cli_service`` (start, stop,
events). ``cli_support`` holds what they share. They are registered in this order, which is the
order ``tinyo --help`` lists them in.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import cli_inspect, cli_requests, cli_run, cli_service
from .cli_options import DebugOpt, Group, version_option
from .headless import run_headless
from .cli_support import add_command, fail, set_debug

__all__ = ["app", "main", "run_headless"]

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    help="tinyo: an event-driven orchestrator for data pipelines (headless). The console is `tinyo-tui`.",
    epilog="Start with: tinyo init my_pipeline",
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(debug: DebugOpt = False,
          _version: Annotated[Optional[bool], version_option("tinyo")] = None) -> None:
    set_debug(debug)


def init(folder: Annotated[Path, typer.Argument(
             metavar="FOLDER", help="Where to write recipe.py (made if missing).")] = Path(".")) -> None:
    """Write a small commented recipe to start from (a watched folder, a timer, a generator, an op)."""
    from .scaffold import RECIPE_NAME, write_recipe

    try:
        recipe = write_recipe(folder)
    except FileExistsError:
        fail(f"{folder / RECIPE_NAME}: already exists; tinyo init does not overwrite it (pick another FOLDER)")
    except OSError as exc:
        fail(f"{folder}: cannot write a recipe here: {exc.strerror or exc}")
    relative = os.path.relpath(recipe)
    shown = shlex.quote(str(recipe) if relative.startswith("..") else relative)
    inbox = shlex.quote(str(Path(shown).parent / "inbox"))
    typer.echo(f"wrote {shown} (it watches {inbox}). Run it with either of:")
    typer.echo(f"  tinyo run {shown}     # headless: a live log; Ctrl-C stops")
    typer.echo(f"  tinyo-tui {shown}     # the console")
    typer.echo(f"then drop a file into {inbox}.")


add_command(app, init, "tinyo init my_pipeline")
cli_run.register(app)
cli_inspect.register(app)
cli_requests.register(app)
cli_service.register(app)  # start, stop, events


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        from .children import exit_now

        exit_now(exc.code or 0)


if __name__ == "__main__":
    main()
