"""Provides the generator runner: feeds events to ``@meta_task`` generators off the engine loop.

Generators are user code: one that raises or returns the wrong shape gives an error and the others
go on; one that hangs past ``timeout`` is reported (naming the generator and the event) and
abandoned on its daemon thread, and a fresh thread takes over, so the engine keeps running.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import DES
from .recipe import MetaTask


@dataclass(slots=True)
class Emission:
    """What the generators made of one event."""

    event_id: int
    event: str
    des: list[tuple[str, str, DES]] = field(default_factory=list)
    """(generator name, the event or key it was given, DES)."""
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(generator name, event or key, message, traceback)."""


def _label(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def generate(roots: Sequence[MetaTask], event_id: int, event: str, progress: list[Any]) -> Emission:
    """Feed ``event`` to the roots and keys to their ``download`` generators, recursively."""
    out = Emission(event_id, event)
    frontier: list[tuple[MetaTask, Any]] = [(task, event) for task in roots]
    while frontier:
        task, given = frontier.pop(0)
        progress[:] = [task.name, _label(given)]
        try:
            result = task.fn(given)
        except Exception as exc:
            out.errors.append((task.name, _label(given), f"raised {type(exc).__name__}: {exc}{_where(task, exc)}",
                               "".join(traceback.format_exception(exc))))
            continue
        problem = _shape_problem(result)
        if problem:
            out.errors.append((task.name, _label(given), problem, ""))
            continue
        key, des_list = result
        for des in des_list:
            out.des.append((task.name, _label(given), des))
        if key is not None:
            frontier.extend((child, key) for child in task.download)
    progress[:] = []
    return out


def _where(task: MetaTask, exc: BaseException) -> str:
    """`` (at recipe.py:12)``: the deepest line of the generator's own file in the traceback."""
    code = getattr(task.fn, "__code__", None)
    if code is None:
        return ""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == code.co_filename:
            line = frame.lineno
    return f" (at {os.path.basename(code.co_filename)}:{line})" if line is not None else ""


def _shape_problem(result: Any) -> str | None:
    expected = "expected (key, [DES, ...]) or (None, [])"
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return f"returned {_short(result)}; {expected}"
    _, des_list = result
    if not isinstance(des_list, (list, tuple)):
        return f"returned a second item of type {type(des_list).__name__}; {expected}"
    for index, item in enumerate(des_list):
        if not isinstance(item, DES):
            return f"returned {_short(item)} at position {index} of its DES list; {expected}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class GeneratorRunner:
    """Runs batches of events through the generators on a worker thread, with a time bound."""

    def __init__(self, roots: Sequence[MetaTask], timeout: float) -> None:
        self.roots = list(roots)
        self.timeout = timeout
        self._thread: _Thread | None = None

    def run(self, events: list[tuple[int, str]]) -> tuple[list[Emission], tuple[int, str, str] | None]:
        """Process events in order. Returns (emissions, hung) where ``hung`` is (event_id, generator,
        event) if a generator did not return within the bound; events after it are not processed."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = _Thread(self.roots)
            self._thread.start()
        thread = self._thread
        done = thread.submit(events)
        if done.wait(self.timeout if self.timeout > 0 else None):
            return thread.results, None
        # hung: keep what finished, abandon the thread
        self._thread = None
        finished = list(thread.results)
        index = len(finished)
        event_id = events[index][0] if index < len(events) else -1
        name, given = (thread.progress + ["?", "?"])[:2]
        thread.abandon()
        return finished, (event_id, name, given)


class _Thread(threading.Thread):
    def __init__(self, roots: list[MetaTask]) -> None:
        super().__init__(name="tinyo-generators", daemon=True)
        self.roots = roots
        self._cond = threading.Condition()
        self._batch: list[tuple[int, str]] | None = None
        self._done = threading.Event()
        self.results: list[Emission] = []
        self.progress: list[Any] = []
        self._abandoned = False

    def submit(self, events: list[tuple[int, str]]) -> threading.Event:
        with self._cond:
            self.results = []
            self._done = threading.Event()
            self._batch = events
            self._cond.notify()
            return self._done

    def abandon(self) -> None:
        self._abandoned = True

    def run(self) -> None:
        while not self._abandoned:
            with self._cond:
                while self._batch is None:
                    self._cond.wait()
                batch, self._batch = self._batch, None
                done = self._done
            for event_id, event in batch:
                self.results.append(generate(self.roots, event_id, event, self.progress))
                if self._abandoned:
                    return
            done.set()
