"""Provides the commands that ask the engine to act: ``tinyo rerun``, ``inject``, ``fire`` (run the
engine now when none is running), and ``pause``, ``resume``, ``cancel`` (only a running engine).

A request goes over the control channel when the engine has one, else into its state file, which
a running engine reads within a second."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .cli_options import DbOpt, RecipeArg
from .headless import run_headless
from .cli_service import send_command
from .cli_support import add_command, db_for, debugging, fail, guard, load
from .completion import complete_documents, complete_timers
from .errors import StoreError
from .request_words import describe, took


def _send_request(path: str, kind: str, arg: str) -> bool:
    """Store a request for the engine on ``path``: True if an engine is running there (it picks the
    request up within a second), False if none is (the request waits for the next start)."""
    from .store import Store

    try:
        store = Store(path)
        running = False
    except StoreError as exc:
        if "another tinyo engine is running" not in str(exc):
            raise
        store = Store(path, lock=False)
        running = True
    try:
        store.add_request(time.time(), kind, arg)
    finally:
        store.close()
    return running


def _request(recipe: Path, db: str | None, kind: str, arg: str, what: str) -> None:
    """Hand a request to a running engine, or run the engine now until the work is done."""
    path = db_for(recipe, db)
    if send_command(path, kind, arg):
        typer.echo(took(what))
        return
    if _send_request(path, kind, arg):
        typer.echo(f"asked the running engine to {what}; it picks the request up within a second")
        return
    raise typer.Exit(run_headless(recipe, db=db, idle_exit=0.3, debug=debugging()))


@guard
def rerun(recipe: RecipeArg, target: Annotated[str, typer.Argument(
              metavar="TARGET", help="A document (its producing DES runs) or a DES id.",
              autocompletion=complete_documents)],
          downstream: Annotated[bool, typer.Option("--downstream", "-R", help="Also rerun everything downstream.")] = False,
          db: DbOpt = None) -> None:
    """Force a rerun of the DES producing TARGET, even if it is up to date."""
    _request(recipe, db, "rerun_down" if downstream else "rerun", target, describe("rerun", target))


@guard
def inject(recipe: RecipeArg, event: Annotated[str, typer.Argument(metavar="EVENT", help="The event string.")],
           db: DbOpt = None) -> None:
    """Take an event in by hand, as if it had happened."""
    from .names import name_problem

    problem = name_problem(event)
    if problem is not None:
        fail(f"the event {event!r} {problem}")
    _request(recipe, db, "inject", event, describe("inject", event))


@guard
def fire(recipe: RecipeArg, timer: Annotated[str, typer.Argument(
             metavar="TIMER", help="The timer's name.", autocompletion=complete_timers)],
         db: DbOpt = None) -> None:
    """Fire a timer now."""
    names = [t.name for t in load(recipe).config.timer_specs]
    if timer not in names:
        fail(f"no timer named {timer!r} in {recipe} (timers: {', '.join(names) or 'none'})")
    _request(recipe, db, "fire", timer, describe("fire", timer))


def _to_running_engine(path: str, kind: str, arg: str, what: str) -> None:
    """Hand a request to the engine running on state file ``path``; error if none is."""
    from .store import Store

    if send_command(path, kind, arg):
        typer.echo(took(what))
        return
    try:
        Store(path).close()  # took the lock: no engine is running
    except StoreError as exc:
        if "another tinyo engine is running" not in str(exc):
            raise
        _send_request(path, kind, arg)
        typer.echo(f"asked the running engine to {what}; it picks the request up within a second")
        return
    fail(f"no tinyo engine is running on {path}: nothing to {what}")


@guard
def pause(recipe: RecipeArg, db: DbOpt = None) -> None:
    """Pause intake of the running engine: events are still stored, in order, and processed on resume."""
    _to_running_engine(db_for(recipe, db), "pause", "", describe("pause", None))


@guard
def resume(recipe: RecipeArg, db: DbOpt = None) -> None:
    """Resume intake of the running engine."""
    _to_running_engine(db_for(recipe, db), "resume", "", describe("resume", None))


@guard
def cancel(recipe: RecipeArg, run_id: Annotated[int, typer.Argument(
               metavar="RUN_ID", help="The run to cancel (see `tinyo status`).")],
           db: DbOpt = None) -> None:
    """Cancel a queued or running run of the running engine."""
    from .control.server import cancel_problem
    from .store import Store

    path = db_for(recipe, db)
    if not send_command(path, "cancel", str(run_id)):  # no control channel: the state file says if the run is open
        store = Store(path, read_only=True, lock=False) if Path(path).exists() else None
        try:
            problem = cancel_problem(run_id, store.run_status(run_id) if store else None, path)
        finally:
            if store is not None:
                store.close()
        if problem is not None:
            fail(problem)
        _to_running_engine(path, "cancel", str(run_id), describe("cancel", str(run_id)))
        return
    typer.echo(took(describe("cancel", str(run_id))))


def register(app: typer.Typer) -> None:
    """Add the request commands to the command line."""
    add_command(app, rerun, "tinyo rerun recipe.py staging.csv --downstream")
    add_command(app, inject, "tinyo inject recipe.py /data/in/sales_20240101.csv")
    add_command(app, fire, "tinyo fire recipe.py hourly")
    add_command(app, pause, "tinyo pause recipe.py")
    add_command(app, resume, "tinyo resume recipe.py")
    add_command(app, cancel, "tinyo cancel recipe.py 42")
