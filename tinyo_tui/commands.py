"""Provides Commands: the console's engine commands, each echoed as the equivalent ``tinyo`` CLI call."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import Any

from tinyo.errors import TinyoError

Note = Callable[[str, str], None]


def recipe_arg(path: object) -> str:
    """The recipe path as a user would type it (relative to the working directory when shorter)."""
    text = str(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive on Windows
        return text
    return rel if len(rel) < len(text) else text


class Commands:
    """Calls the engine's thread-safe, non-blocking commands and notes the CLI equivalent."""

    def __init__(self, engine: Any, note: Note) -> None:
        self._engine = engine
        self._note = note
        self.recipe = recipe_arg(engine.recipe.path)

    def _cli(self, *args: str) -> str:
        return "tinyo " + " ".join(shlex.quote(a) for a in args)

    def _run(self, call: Callable[[], object], cli: str) -> bool:
        self._note(cli, "cmd")
        try:
            call()
        except TinyoError as exc:
            self._note(f"error: {exc}", "error")
            return False
        except (KeyError, ValueError) as exc:
            self._note(f"error: {exc}", "error")
            return False
        return True

    def rerun(self, des_id: str, downstream: bool = False) -> bool:
        """Force a DES to run again (and everything downstream)."""
        extra = ("--downstream",) if downstream else ()
        return self._run(lambda: self._engine.rerun(des_id, downstream=downstream),
                         self._cli("rerun", self.recipe, des_id, *extra))

    def rerun_document(self, name: str, downstream: bool = False) -> bool:
        """Force the DES that produces ``name`` to run again."""
        extra = ("--downstream",) if downstream else ()
        return self._run(lambda: self._engine.rerun_document(name, downstream=downstream),
                         self._cli("rerun", self.recipe, name, *extra))

    def inject(self, event: str) -> bool:
        """Inject an event string."""
        return self._run(lambda: self._engine.inject(event), self._cli("inject", self.recipe, event))

    def fire(self, timer: str) -> bool:
        """Fire a timer now."""
        return self._run(lambda: self._engine.fire_timer(timer), self._cli("fire", self.recipe, timer))

    def pause(self) -> bool:
        """Pause intake (events are stored and queued)."""
        return self._run(self._engine.pause, self._cli("pause", self.recipe))

    def resume(self) -> bool:
        """Resume intake."""
        return self._run(self._engine.resume, self._cli("resume", self.recipe))

    def cancel(self, run_id: int) -> bool:
        """Cancel a running op."""
        return self._run(lambda: self._engine.cancel(run_id), self._cli("cancel", self.recipe, str(run_id)))
