"""Provides what every ``tinyo`` command shares: exit codes, the ``--debug`` flag, clean errors,
loading the recipe and finding its state file, and adding a command with its example."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, NoReturn

import typer

from .cli_options import Command
from .errors import TinyoError
from .headless import EXIT_OK, EXIT_OP_FAILED, EXIT_USAGE

__all__ = ["EXIT_OK", "EXIT_OP_FAILED", "EXIT_USAGE", "add_command", "db_for", "debugging", "fail", "guard", "load",
           "set_debug"]

# Set once by the root callback (``tinyo --debug ...``), read by every command: typer gives the
# flag to the root only, and the commands live in several modules.
_debug = False


def set_debug(on: bool) -> None:
    """Remember ``--debug`` for the command about to run (errors then raise with their traceback)."""
    global _debug
    _debug = _debug or on


def debugging() -> bool:
    """Whether ``--debug`` was given."""
    return _debug


def add_command(app: typer.Typer, fn: Callable[..., Any], example: str) -> None:
    """Register ``fn`` as a command whose help ends with an example."""
    app.command(cls=Command, epilog=f"Example: {example}")(fn)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``message`` as tinyo's error and exit with ``code``."""
    typer.echo(f"tinyo: error: {message}", err=True)
    raise typer.Exit(code)


def load(recipe: Path):  # noqa: ANN201 - returns a Recipe
    """Load the recipe (its errors name the file)."""
    from .recipe import load_recipe

    return load_recipe(recipe)


def db_for(recipe: Path, db: str | None) -> str:
    """The state file: ``--db`` if given, else the recipe's own."""
    return db or load(recipe).config.sql_conn


def guard(fn):  # noqa: ANN001, ANN201 - decorator keeping typer's signature
    """Turn a ``TinyoError`` into a one-line error and the usage exit code (unless ``--debug``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TinyoError as exc:
            if _debug:
                raise
            fail(str(exc))

    return wrapper
