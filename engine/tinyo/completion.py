"""Provides shell completion of values the shell cannot know: a recipe's timer names (``tinyo fire``) and the
document names in its state file (``tinyo why``, ``tinyo rerun``).

Completion runs on every Tab press, so it is bounded: the recipe is imported (nothing is started: no
engine, no watcher, no state file is made), and names come from one index range read of the state
file, at most ``LIMIT`` of them, whatever the store's size. A completer never prints or raises: a recipe
that does not load, or a state file not there yet, completes to nothing.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

from .errors import TinyoError

LIMIT = 200
"""Most names offered for one Tab press; a shell shows a few dozen anyway."""

# typer finds ``ctx`` and ``incomplete`` by parameter name.


def _recipe(ctx: Any) -> Any:
    """The recipe named on the command line so far, loaded quietly: what it prints while it loads would land
    in the shell's list of completions (stdout) or across the command line being typed (stderr)."""
    from .recipe import load_recipe

    path = ctx.params.get("recipe")
    if path is None:
        return None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return load_recipe(Path(path))


def complete_timers(ctx: Any, incomplete: str) -> list[str]:
    """The recipe's timers whose name starts with ``incomplete``."""
    try:
        recipe = _recipe(ctx)
    except TinyoError:
        return []
    if recipe is None:
        return []
    return [t.name for t in recipe.config.timer_specs if t.name.startswith(incomplete)][:LIMIT]


def complete_documents(ctx: Any, incomplete: str) -> list[str]:
    """Up to ``LIMIT`` document names from the state file (``--db``, else the recipe's) starting with ``incomplete``."""
    from .store import Store

    try:
        db = ctx.params.get("db")
        if db is None:
            recipe = _recipe(ctx)
            if recipe is None:
                return []
            db = recipe.config.sql_conn
        store = Store(db, read_only=True, lock=False)
    except (TinyoError, OSError, sqlite3.Error):
        return []
    try:
        return store.names_from(incomplete, LIMIT)
    except sqlite3.Error:
        return []
    finally:
        store.close()
