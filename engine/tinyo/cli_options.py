"""Provides what ``tinyo`` and ``tinyo-tui`` share on the command line: the options they both take (same
names, same help), ``--version``, and help that shows flags without a type tag."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup


def _untyped_flags(params: list[Any]) -> list[Any]:
    """Flags take no value, so their help row shows no type (typer would print ``<bool>``)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A typer command whose help shows flags without ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A typer command group whose help shows flags without ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


def distribution_version() -> str:
    """The installed distribution's version (package metadata), or a note when tinyo is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tinyo")
    except PackageNotFoundError:
        return "unknown (not installed; pip install . sets it)"


def version_option(prog: str) -> Any:
    """An eager ``--version`` option printing ``PROG VERSION`` and exiting."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {distribution_version()}")
            raise typer.Exit()

    return typer.Option("--version", callback=show, is_eager=True, help="Show the version and exit.")


class ExecChoice(str, Enum):
    """Where ops run (``--execution``)."""

    processes = "processes"
    threads = "threads"
    inline = "inline"


# Help texts are Rich markup: a literal "[" is written "\[".
RecipeArg = Annotated[Path, typer.Argument(
    metavar="RECIPE", help="The recipe file (a Python file defining `config` and generators).")]
DbOpt = Annotated[Optional[str], typer.Option(
    "--db", metavar="PATH", help="State file to use instead of the recipe's sql_conn.")]
ExecutionOpt = Annotated[Optional[ExecChoice], typer.Option(
    "--execution", metavar="MODE",
    help="Where ops run: processes, threads or inline (instead of the recipe's execution).")]
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", min=1, metavar="N", help="How many ops run at once, instead of the recipe's max_workers.")]
ExecutorOpt = Annotated[Optional[str], typer.Option(
    "--executor", metavar="ADDRESS",
    help="Run ops on a Dask cluster: the scheduler's address (tcp://host:8786), or local-dask to start "
         "a local cluster (needs pip install \"tinyo\\[dask]\").")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
AllowWorldWritableOpt = Annotated[bool, typer.Option(
    "--allow-world-writable", help="Load the recipe even if any user of the machine may write it.")]
