"""Provides what runs an op wherever it runs: output capture and the op call (a process worker's loop is
``worker_process``).

Kept free of heavy imports: worker processes import this module (and the recipe) and nothing else.
"""

from __future__ import annotations

import io
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import runtime
from .model import Config

MAX_LINE = 1 << 20
"""Longest output line carried whole; longer ones are cut with a note (bounded memory)."""


@dataclass(frozen=True, slots=True, init=False)
class Task:
    """One run of a DES's ops, as sent to a worker (picklable, no callables)."""

    run_id: int
    des_id: str
    attempt: int
    recipe_path: str
    ops: tuple[tuple[str, Config], ...]
    """(op reference ``module:qualname``, Config) pairs, run in order."""
    deps: frozenset[str]
    targs: frozenset[str]

    def __init__(self, run_id: int, des_id: str, attempt: int, recipe_path: str,
                 ops: tuple[tuple[str, Config], ...], deps: frozenset[str], targs: frozenset[str]) -> None:
        # each slot written through its own descriptor: the frozen dataclass's __init__ calls
        # ``object.__setattr__`` per field, which looks the name up first (a burst makes two Tasks per file:
        # the engine's dispatch, the worker's inbox), as ``events._quick_init`` does for the facts
        _s_run_id(self, run_id)
        _s_des_id(self, des_id)
        _s_attempt(self, attempt)
        _s_recipe_path(self, recipe_path)
        _s_ops(self, ops)
        _s_deps(self, deps)
        _s_targs(self, targs)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickled as a plain tuple of its fields (the dataclass default looks every field up by name)
        return (Task, self.wire())

    def wire(self) -> tuple[Any, ...]:
        """The task as a plain tuple (``Task(*wire)`` rebuilds it): a tuple pickles and unpickles several times
        faster than the dataclass. (The process pool sends a shorter form: ``executors.process.submit``.)"""
        return (self.run_id, self.des_id, self.attempt, self.recipe_path, self.ops, self.deps, self.targs)

    @property
    def op_label(self) -> str:
        """The op names, for display (``load`` or ``extract+load``)."""
        return "+".join(ref.partition(":")[2] for ref, _ in self.ops)


_s_run_id, _s_des_id, _s_attempt, _s_recipe_path, _s_ops, _s_deps, _s_targs = (
    getattr(Task, name).__set__ for name in Task.__slots__)


# ---------------------------------------------------------------- output capture

class _Sink(runtime.OpRun):
    """One op run as bound to the thread running it (``runtime.OpRun``: its RunContext made only if asked for)
    and where its printed lines go. Partial lines are buffered per (thread, stream), so threads an op starts
    (e.g. a data flow's steps) never splice their lines together."""

    __slots__ = ("buffers", "lock")

    def __init__(self, run_id: int, des_id: str, worker: str, emit: runtime.Emit) -> None:
        # OpRun's fields set here rather than through ``super().__init__``: one is made per op run
        self.run_id = run_id
        self.des_id = des_id
        self.worker = worker
        self.emit = emit
        self._context = None
        self.buffers: dict[tuple[int, str], str] = {}
        self.lock: threading.Lock | None = None
        """Guards ``buffers``: one per sink, as ops running side by side (the thread executor) print each on its
        own threads; made when the op first prints (most never do, and a burst runs thousands a second)."""

    def made_lock(self) -> threading.Lock:
        """``lock``, made once whichever of the op's threads prints first."""
        with _lock_making:
            if self.lock is None:
                self.lock = threading.Lock()
            return self.lock


_lock_making = threading.Lock()
"""Taken only to make a sink's lock: once per op that prints."""


class LineRouter(io.TextIOBase):
    """A sys.stdout/sys.stderr stand-in: lines written by a thread running an op go to that op's
    run, whole lines at a time; anything else goes to the original stream."""

    def __init__(self, stream_name: str, original: Any) -> None:
        self.stream_name = stream_name
        self.original = original

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self.original is not None:
            return self.original.fileno()
        raise io.UnsupportedOperation("fileno")

    def write(self, text: str) -> int:
        sink: _Sink | None = runtime.capture()
        if sink is None:
            if self.original is not None:
                return self.original.write(text)
            return len(text)
        key = (threading.get_ident(), self.stream_name)
        with sink.lock or sink.made_lock():
            buf = sink.buffers.get(key, "") + text
            lines: list[str] = []
            if "\n" in buf:
                *lines, buf = buf.split("\n")
            if len(buf) > MAX_LINE:
                lines.append(buf)
                buf = ""
            if buf:
                sink.buffers[key] = buf
            else:
                sink.buffers.pop(key, None)
        for line in lines:
            sink.emit("out", sink.run_id, (self.stream_name, _cut(line)))
        return len(text)

    def flush(self) -> None:
        if runtime.capture() is None and self.original is not None:
            self.original.flush()


def _cut(line: str) -> str:
    line = line.rstrip("\r")
    if len(line) > MAX_LINE:
        return line[:MAX_LINE] + f" … [{len(line) - MAX_LINE} more characters cut]"
    return line


_install_lock = threading.Lock()


def install_routers() -> None:
    """Replace sys.stdout/sys.stderr by routers (once per process)."""
    with _install_lock:
        if not isinstance(sys.stdout, LineRouter):
            sys.stdout = LineRouter("stdout", sys.stdout)
        if not isinstance(sys.stderr, LineRouter):
            sys.stderr = LineRouter("stderr", sys.stderr)


# ---------------------------------------------------------------- running a task


class CancelledRun(BaseException):
    """Raised inside a thread-run op when it is cancelled or timed out."""


Resolve = Callable[[str], Any]


def run_task(task: Task, resolve: Resolve, emit: runtime.Emit, worker: str, clock: Callable[[], float] = time.time) -> None:
    """Run every op of ``task`` in order; report start, output lines, and the outcome through ``emit``.

    Messages: ("start", run_id, (worker, ts)), ("out", run_id, (stream, line)),
    ("done", run_id, (ok, error, traceback, result_repr, duration)).
    """
    if not isinstance(sys.stdout, LineRouter) or not isinstance(sys.stderr, LineRouter):
        install_routers()  # something (e.g. a UI) replaced sys.stdout since the executor started
    emit("start", task.run_id, (worker, clock()))
    started = time.perf_counter()
    ok, error, tb, result, interrupt = run_ops(task.run_id, task.des_id, task.attempt, task.ops, task.deps,
                                               task.targs, resolve, emit, worker)
    emit("done", task.run_id, (ok, error, tb, result, time.perf_counter() - started))
    if interrupt is not None:
        raise interrupt


Outcome = tuple[bool, "str | None", "str | None", "str | None", "KeyboardInterrupt | None"]
"""(ok, error, traceback, result repr, the KeyboardInterrupt the op raised: its caller raises it again once it
has reported the run)."""

OK: Outcome = (True, None, None, None, None)


def run_ops(run_id: int, des_id: str, attempt: int, ops: tuple[tuple[str, Config], ...], deps: frozenset[str],
            targs: frozenset[str], resolve: Resolve, emit: runtime.Emit, worker: str) -> Outcome:
    """Run ``ops`` in order as run ``run_id``, its printed lines sent through ``emit``; its outcome, as a value
    (an op's failure: its message and traceback). Reports neither its start nor its outcome: its caller does,
    in its own messages (a process worker sends a fast op's start with its outcome)."""
    # bound and unbound by hand rather than with ``runtime.running``: a burst runs thousands a second
    sink = _Sink(run_id, des_id, worker, emit)
    previous = runtime.enter(sink, sink)
    ref = ""
    try:
        result = None
        for ref, cfg in ops:
            result = resolve(ref)({"deps": deps, "targs": targs, "config": cfg, "run_id": run_id,
                                   "attempt": attempt, "des_id": des_id, "worker": worker})
        if sink.buffers:
            _flush_partial(sink)
        return OK if result is None else (True, None, None, _result_repr(result), None)
    except CancelledRun as exc:
        _flush_partial(sink)
        return (False, f"cancelled: {exc}", None, None, None)
    except BaseException as exc:  # the op's failure travels back as a value (message + traceback)
        _flush_partial(sink)
        name = ref.partition(":")[2] or ref
        tb = "".join(traceback.format_exception(exc))
        return (False, f"op {name} raised {describe(exc)}", tb, None,
                exc if isinstance(exc, KeyboardInterrupt) else None)
    finally:
        runtime.leave(previous)


def describe(exc: BaseException) -> str:
    """``Type: message`` for an exception, that cannot raise itself: a recipe's exception may define a
    ``__str__`` (or a metaclass a ``__name__``) that raises, and its run must still be reported."""
    try:
        name = type(exc).__name__
        try:
            text = str(exc)
        except BaseException as failure:  # its text is unreadable: its type still names it
            return f"{name} (its str() raised {type(failure).__name__})"
        return f"{name}: {text}" if text else name
    except BaseException:  # (a name, or a text's formatting, that raises)
        return object.__repr__(exc)  # from the C type's name: cannot raise


def _flush_partial(sink: _Sink) -> None:
    if not sink.buffers:
        return  # nothing printed without its newline (the common case: no lock taken)
    with sink.lock or sink.made_lock():
        pending = list(sink.buffers.items())
        sink.buffers.clear()
    for (_, stream), buf in pending:
        sink.emit("out", sink.run_id, (stream, _cut(buf)))


def _result_repr(result: Any) -> str:
    text = repr(result)
    return text if len(text) <= 4000 else text[:4000] + " …"
