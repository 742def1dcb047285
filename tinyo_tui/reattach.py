"""Provides the console's side of re-attaching: when the engine it is attached to stops or dies, the
console says so in one line (the attached engine handle publishes it) and waits; when an engine starts
on the state file again, the handle re-attaches on its own thread and the console shows the new pid
and asks the new engine for what the panes show (``resync``): group counts, workers, how the runs it
last saw running ended. Events, output and runs arrive as on first attach, from the new
engine's history."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .messages import Reattached
from .widgets.status_header import StatusHeader


def follow_restarts(app: Any) -> None:
    """Have the attached engine handle tell ``app`` each time it re-attaches (any thread)."""
    if app.attached_to is not None and hasattr(app.engine, "on_attach"):
        app.engine.on_attach = lambda pid: app.post_message(Reattached(pid))


def reattached(app: Any, pid: int) -> None:
    """On the UI loop: the console is attached to engine ``pid`` now."""
    app.attached_to = pid
    app.recipe_name = f"{getattr(app.engine.recipe, 'name', 'recipe')} (attached to pid {pid})"
    for screen in app.screen_stack:
        for header in screen.query(StatusHeader):
            header.rename(app.recipe_name)
    app.state.started_at = None  # uptime counts from the new engine's start
    app.note(f"re-attached to the engine (pid {pid})", "info")
    app.resync(None)


def say_keys_detach(app: Any) -> None:
    """Attached, quitting only detaches: the footer, tooltips and help say so (S stops the engine)."""
    keys = app._bindings.key_to_bindings
    for key, description, tooltip in (
            ("q", "Detach", "Quit: detach; the engine goes on running (S stops it)"),
            ("ctrl+c", "Detach", "Detach at once; the engine goes on running (S stops it)")):
        keys[key] = [replace(binding, description=description, tooltip=tooltip) for binding in keys.get(key, [])]
