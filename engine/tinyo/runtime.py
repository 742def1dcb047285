"""Provides what runs inside an op: the current run's identity and a channel back to the engine bus.

An op (a function or a data flow) calls ``current_run()`` to learn its run id and worker, and
``emit_metrics(...)`` to publish live data-flow metrics. The same calls work whether the op runs in
a worker process, a worker thread, inline in the orchestrator, or on a distributed worker: the
executor installs the channel before the op starts. Outside any op they are harmless no-ops
(``current_run()`` returns None), unless a fallback sink was installed with ``metrics_sink``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Emit = Callable[[str, int, Any], None]
"""``emit(kind, run_id, payload)``: how an executor carries a message back to the engine."""


@dataclass(frozen=True, init=False)
class RunContext:
    """The run an op is executing in."""

    run_id: int
    """The engine's run id (unique per store)."""
    des_id: str
    """The DES whose ops are running."""
    worker: str
    """The worker's name (``w1``, ``t2``, ``inline``, or a distributed worker address)."""
    emit: Emit
    """Send a message to the engine (used by ``emit_metrics``)."""

    def __init__(self, run_id: int, des_id: str, worker: str, emit: Emit) -> None:
        # one is made per op run (a burst runs thousands a second): the fields go in with one call, where the
        # frozen dataclass's own __init__ makes one ``object.__setattr__`` call per field
        self.__dict__.update(run_id=run_id, des_id=des_id, worker=worker, emit=emit)


class OpRun:
    """A run as an executor binds it to the thread running its op: the :class:`RunContext` is made from it
    only when something asks for it (``current_run``), for most ops never do and a burst runs thousands a
    second. A worker's output capture is one (``worker._Sink``): one object per op run, bound once."""

    __slots__ = ("run_id", "des_id", "worker", "emit", "_context")

    def __init__(self, run_id: int, des_id: str, worker: str, emit: Emit) -> None:
        self.run_id = run_id
        self.des_id = des_id
        self.worker = worker
        self.emit = emit
        self._context: RunContext | None = None

    def context(self) -> RunContext:
        """The run's context (the same object each time)."""
        context = self._context
        if context is None:
            context = self._context = RunContext(self.run_id, self.des_id, self.worker, self.emit)
        return context


Bound = tuple["RunContext | OpRun | None", "object | None"]
"""What a thread is bound to: its run, and its output capture (an opaque handle set by the worker)."""

_UNBOUND: Bound = (None, None)
_local = threading.local()
"""``bound``: the calling thread's ``Bound`` (one attribute: an op's binding is one set and one get)."""
_fallback_lock = threading.Lock()
_fallback_sinks: list[Callable[[dict[str, Any]], None]] = []


def current_run() -> RunContext | None:
    """The run the calling thread is executing, or None outside an op."""
    run = getattr(_local, "bound", _UNBOUND)[0]
    if isinstance(run, OpRun):
        return run.context()
    return run


@contextlib.contextmanager
def running(ctx: RunContext) -> Iterator[RunContext]:
    """Install ``ctx`` as the calling thread's current run for the duration of the block."""
    previous = getattr(_local, "bound", _UNBOUND)[0]
    bind(ctx)
    try:
        yield ctx
    finally:
        bind(previous)


def bind(ctx: RunContext | OpRun | None) -> None:
    """Make ``ctx`` the current run of the calling thread (for threads an op starts itself)."""
    _local.bound = (ctx, getattr(_local, "bound", _UNBOUND)[1])


def enter(ctx: RunContext | OpRun, handle: object) -> Bound:
    """Make ``ctx`` the calling thread's current run and ``handle`` its output capture (as ``bind`` and
    ``bind_capture``); returns what they were, for ``leave``. One call per op run instead of four."""
    previous = getattr(_local, "bound", _UNBOUND)
    _local.bound = (ctx, handle)
    return previous


def leave(previous: Bound) -> None:
    """Give the calling thread back the run and output capture ``enter`` returned."""
    _local.bound = previous


@dataclass(frozen=True)
class ThreadShare:
    """What a thread running an op shares with threads it starts: the run, and its output capture."""

    run: RunContext | None
    output: Any


def capture() -> object | None:
    """The calling thread's output capture (an opaque handle set by the worker), or None outside an op."""
    return getattr(_local, "bound", _UNBOUND)[1]


def bind_capture(handle: object | None) -> None:
    """Send what the calling thread prints to the run behind ``handle`` (from ``capture()``)."""
    _local.bound = (getattr(_local, "bound", _UNBOUND)[0], handle)


def share() -> ThreadShare:
    """Capture the calling thread's run and output capture, to ``adopt`` in other threads."""
    return ThreadShare(current_run(), capture())


def adopt(shared: ThreadShare) -> None:
    """Make the calling thread part of ``shared``'s run: its metrics and printed lines go there."""
    bind(shared.run)
    if shared.output is not None:
        bind_capture(shared.output)


def emit_metrics(**fields: Any) -> None:
    """Publish one data-flow metrics sample; the engine turns it into a ``FlowMetrics`` bus event.

    ``fields`` are FlowMetrics' fields other than ``ts`` and ``run_id`` (flow, flow_run, step,
    instance, instances, state, rows_in, rows_out, errors, rows_per_s, buffer_fill, buffer_size).
    """
    ctx = current_run()
    if ctx is not None:
        ctx.emit("metric", ctx.run_id, fields)
        return
    for sink in tuple(_fallback_sinks):
        sink(fields)


@contextlib.contextmanager
def metrics_sink(sink: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Receive metrics emitted outside any op (e.g. ``flow.run()`` called from a script or a test)."""
    with _fallback_lock:
        _fallback_sinks.append(sink)
    try:
        yield
    finally:
        with _fallback_lock:
            _fallback_sinks.remove(sink)
