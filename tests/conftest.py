"""Provides shared fixtures: recipes written into temp folders and a harness around a real Engine."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tinyo import events as ev
from tinyo.engine import Engine

HEADER = """\
import os, re, sys, time
from datetime import datetime, timedelta
from pathlib import Path
from tinyo import DES, Config, Execution, TinyOConfig, meta_task
"""


def write_recipe(folder: Path, body: str, name: str = "recipe.py", **values: Any) -> Path:
    """Write a recipe file; ``{key}`` placeholders in ``body`` are filled from ``values``."""
    text = HEADER + textwrap.dedent(body)
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    path = folder / name
    path.write_text(text)
    return path


class Harness:
    """A real engine on a recipe, with every bus event recorded."""

    def __init__(self, recipe: Path, **kw: Any) -> None:
        self.engine = Engine.from_path(recipe, **kw)
        self.events: list[ev.BusEvent] = []
        self._lock = threading.Lock()
        self.engine.bus.subscribe(self._record)

    def _record(self, event: ev.BusEvent) -> None:
        with self._lock:
            self.events.append(event)

    def __enter__(self) -> Harness:
        self.engine.start()
        if self.engine.fatal is not None:
            raise self.engine.fatal
        return self

    def __exit__(self, *exc: Any) -> None:
        self.engine.stop(timeout=5)

    def of(self, kind: type) -> list[Any]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def told(self, kind: type) -> list[Any]:
        """The facts of ``kind``, those another fact tells in its place included (``events.unfold``)."""
        with self._lock:
            return [e for e in ev.unfold(self.events) if isinstance(e, kind)]

    def lines(self) -> list[str]:
        return [e.line for e in self.of(ev.OpOutput)]

    def wait_idle(self, timeout: float = 20.0, quiet: float = 0.3) -> None:
        """Wait until the engine has been idle for ``quiet`` seconds."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            since = self.engine.idle_since
            if since is not None and time.monotonic() - max(since, start) >= quiet:
                return
            time.sleep(0.02)
        raise AssertionError(f"engine not idle after {timeout}s; last events: {self.events[-5:]}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; last events: {self.events[-8:]}")


@pytest.fixture
def harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(recipe: Path, **kw: Any) -> Harness:
        h = Harness(recipe, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        if h.engine.state != "stopped":
            h.engine.stop(timeout=2)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def drop(folder: Path, name: str, content: str = "x") -> Path:
    """Write a file the way a producer would: open, write, close."""
    path = folder / name
    with open(path, "w") as fh:
        fh.write(content)
    return path


def helper_pids(module: bytes) -> list[int]:
    """Pids of this user's processes running ``python -m <module>`` (by their command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if module in fh.read() and os.stat(f"/proc/{entry}").st_uid == os.getuid():
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids
