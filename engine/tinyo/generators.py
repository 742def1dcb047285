"""Provides the generator runner: feeds events to ``@meta_task`` generators on the engine loop's thread.

Generators are user code: one that raises or returns the wrong shape gives an error and the others
go on; one that hangs past ``timeout`` is reported (naming the generator and the event) and left
running on the thread it hung, while the engine's loop goes on on a fresh thread.

They run on the loop's own thread, not handed to another one and waited for: under a flood that
hand-over cost two thread wake-ups per batch, and on a busy machine each one waits for a CPU (it
was about a third of the loop's time in a 10,000-file burst on 2 CPUs). A monitor thread keeps
the time bound instead; it wakes about once per ``timeout``, whether batches run or not: a batch
starting is not told to it (a burst starts hundreds a second, and each wake-up took the interpreter
from the loop), since a monitor that went to sleep before a batch began wakes before that batch's
deadline anyway.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
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
    frontier: list[tuple[MetaTask, Any]] = [(roots[0], event)] if len(roots) == 1 else [(task, event) for task in roots]
    at = 0
    while at < len(frontier):  # breadth first, in order (read by position: no pop from the front)
        task, given = frontier[at]
        at += 1
        label = given if given.__class__ is str else _label(given)
        name = task.name
        progress[:] = name, label
        try:
            result = task.fn(given)
        except BaseException as exc:  # SystemExit too: a generator must not stop the engine's loop
            out.errors.append((name, _label(given), f"raised {type(exc).__name__}: {exc}{_where(task, exc)}",
                               "".join(traceback.format_exception(exc))))
            continue
        # the shape most generators return, (key, [DES, ...]), is recognised without the checks that word a problem
        problem = None
        if result.__class__ is not tuple or len(result) != 2 or result[1].__class__ is not list:
            problem = _shape_problem(result)
        else:
            for des in result[1]:
                if des.__class__ is not DES:
                    problem = _shape_problem(result)
                    break
        if problem:
            out.errors.append((name, _label(given), problem, ""))
            continue
        key, des_list = result
        if given.__class__ is not str:
            label = _label(given)  # as it reads now (a generator may have changed what it was given)
        if len(des_list) == 1:  # one DES per event (most generators): no list made for it
            out.des.append((name, label, des_list[0]))
        else:
            out.des.extend([(name, label, des) for des in des_list])
        if key is not None and task.download:
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


class Abandoned(BaseException):
    """Raised on a thread whose generator call outlived the bound, once it returns: another thread took
    its work over, so it must touch nothing more (a BaseException: no ``except Exception`` keeps it)."""


Hung = tuple[int, str, str]
"""(event id, generator name, what it was given) of a generator that outlived the bound."""
OnHang = Callable[[list[Emission], Hung], None]


@dataclass(eq=False, slots=True)
class _Batch:
    deadline: float
    events: list[tuple[int, str]]
    on_hang: OnHang
    results: list[Emission] = field(default_factory=list)
    progress: list[Any] = field(default_factory=list)
    """[generator name, what it was given] while one runs."""
    abandoned: bool = False


class GeneratorRunner:
    """Runs batches of events through the generators on the calling thread, with a time bound per batch."""

    def __init__(self, roots: Sequence[MetaTask], timeout: float) -> None:
        self.roots = list(roots)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        """Guards ``_running`` and a batch's results and flags; the monitor waits on it."""
        self._running: _Batch | None = None
        self._monitor: threading.Thread | None = None
        self._closed = False

    def close(self) -> None:
        """Let the monitor thread end (the engine stopped)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def run(self, events: list[tuple[int, str]], on_hang: OnHang) -> list[Emission]:
        """What the generators made of each event, in order.

        If the batch outlives the bound, the monitor calls ``on_hang(finished, hung)`` on its own thread,
        with the emissions of the events before the one that hung (whose later events are not processed),
        and this call raises :class:`Abandoned` if that generator ever returns."""
        if self.timeout <= 0:
            progress: list[Any] = []
            return [generate(self.roots, event_id, event, progress) for event_id, event in events]
        batch = _Batch(time.monotonic() + self.timeout, events, on_hang)
        with self._cond:
            self._running = batch
            if self._monitor is None:
                self._monitor = threading.Thread(target=self._watch, name="tinyo-generator-bound", daemon=True)
                self._monitor.start()
        lock, roots, progress, results = self._lock, self.roots, batch.progress, batch.results
        for event_id, event in events:
            emission = generate(roots, event_id, event, progress)
            with lock:  # the condition's own lock, entered directly (per event)
                if batch.abandoned:
                    raise Abandoned
                results.append(emission)
        with self._cond:
            if batch.abandoned:
                raise Abandoned
            self._running = None
        return batch.results

    def _watch(self) -> None:
        """The monitor: gives up on a batch past its deadline (it does not wake per batch, only per bound)."""
        while True:
            with self._cond:
                if self._closed:
                    return
                batch = self._running
                if batch is None:
                    # no batch now: one that starts while this waits has its deadline after this wait ends
                    self._cond.wait(min(self.timeout, threading.TIMEOUT_MAX))
                    continue
                left = batch.deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(min(left, threading.TIMEOUT_MAX))  # an unbounded bound (inf) waits forever
                    continue
                batch.abandoned = True
                self._running = None
                finished = list(batch.results)
                name, given = (list(batch.progress) + ["?", "?"])[:2]
                event_id = batch.events[len(finished)][0] if len(finished) < len(batch.events) else -1
            batch.on_hang(finished, (event_id, name, given))
