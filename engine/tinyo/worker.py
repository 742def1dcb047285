"""Provides what runs an op wherever it runs: output capture, the op call, and the process worker.

Kept free of heavy imports: worker processes import this module (and the recipe) and nothing else.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import runtime
from .model import Config

MAX_LINE = 1 << 20
"""Longest output line carried whole; longer ones are cut with a note (bounded memory)."""


@dataclass(frozen=True, slots=True)
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

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickled as a plain tuple of its fields (the dataclass default looks every field up by name)
        return (Task, self.wire())

    def wire(self) -> tuple[Any, ...]:
        """The task as a plain tuple for a worker's pipe (``Task(*wire)`` rebuilds it): a tuple pickles and
        unpickles several times faster than the dataclass, and a burst sends thousands a second."""
        return (self.run_id, self.des_id, self.attempt, self.recipe_path, self.ops, self.deps, self.targs)

    @property
    def op_label(self) -> str:
        """The op names, for display (``load`` or ``extract+load``)."""
        return "+".join(ref.partition(":")[2] for ref, _ in self.ops)


# ---------------------------------------------------------------- output capture

class _Sink:
    """Where one run's printed lines go. Partial lines are buffered per (thread, stream), so threads
    an op starts (e.g. a data flow's steps) never splice their lines together."""

    __slots__ = ("run_id", "emit", "buffers", "lock")

    def __init__(self, run_id: int, emit: runtime.Emit) -> None:
        self.run_id = run_id
        self.emit = emit
        self.buffers: dict[tuple[int, str], str] = {}
        self.lock = threading.Lock()


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
        with sink.lock:
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
    sink = _Sink(task.run_id, emit)
    previous = runtime.capture()
    runtime.bind_capture(sink)
    started = time.perf_counter()
    ctx = runtime.RunContext(task.run_id, task.des_id, worker, emit)
    current_ref = ""
    try:
        with runtime.running(ctx):
            result = None
            for ref, cfg in task.ops:
                current_ref = ref
                fn = resolve(ref)
                result = fn({
                    "deps": task.deps,
                    "targs": task.targs,
                    "config": cfg,
                    "run_id": task.run_id,
                    "attempt": task.attempt,
                    "des_id": task.des_id,
                    "worker": worker,
                })
        _flush_partial(sink)
        emit("done", task.run_id, (True, None, None, _result_repr(result), time.perf_counter() - started))
    except CancelledRun as exc:
        _flush_partial(sink)
        emit("done", task.run_id, (False, f"cancelled: {exc}", None, None, time.perf_counter() - started))
    except BaseException as exc:  # the op's failure travels back as a value (message + traceback)
        _flush_partial(sink)
        name = current_ref.partition(":")[2] or current_ref
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        tb = "".join(traceback.format_exception(exc))
        emit("done", task.run_id, (False, f"op {name} raised {message}", tb, None, time.perf_counter() - started))
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, SystemExit):
            raise
    finally:
        runtime.bind_capture(previous)


def _flush_partial(sink: _Sink) -> None:
    with sink.lock:
        pending = list(sink.buffers.items())
        sink.buffers.clear()
    for (_, stream), buf in pending:
        sink.emit("out", sink.run_id, (stream, _cut(buf)))


def _result_repr(result: Any) -> str | None:
    if result is None:
        return None
    text = repr(result)
    return text if len(text) <= 4000 else text[:4000] + " …"


# ---------------------------------------------------------------- process worker


def process_main(task_conn: Any, result_conn: Any, name: str, recipe_path: str, sys_path: list[str], cwd: str) -> None:
    """Entry point of a worker process: receive task batches, run them, stream results back."""
    # Ctrl-C, a terminal hang-up or a TERM sent to the whole process group reach the workers too;
    # the orchestrator decides what happens to running ops (it stops workers with SIGKILL if it must)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.chdir(cwd)
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    install_routers()
    import multiprocessing

    multiprocessing.current_process().name = f"tinyo-{name}"  # recipes may tell a worker apart by it
    os.environ["TINYO_WORKER"] = name
    from .recipe import OpResolver, import_recipe_module

    reports = _Reports(result_conn)
    emit = reports.put
    inbox: deque[Task | None] = deque()
    ready = threading.Condition()
    skip: set[int] = set()

    def receiver() -> None:
        while True:
            try:
                msg = task_conn.recv()
            except (EOFError, OSError):
                os._exit(1)  # the orchestrator is gone: stop at once (its store marks the run interrupted)
            kind = msg[0]
            with ready:
                if kind == "cancel":
                    skip.add(msg[1])
                elif kind == "withdraw":
                    # hand back tasks that have not started (the running op may be stuck: do it here)
                    wanted = set(msg[1])
                    for task in [t for t in inbox if t is not None and t.run_id in wanted]:
                        inbox.remove(task)
                        emit("withdrawn", task.run_id, None)
                elif kind == "stop":
                    inbox.append(None)
                else:
                    inbox.extend(Task(*wire) for wire in msg[1])
                ready.notify()
            if kind == "withdraw":
                reports.flush()  # the engine waits for them to hand them to an idle worker

    threading.Thread(target=reports.sender, name="tinyo-sender", daemon=True).start()
    threading.Thread(target=receiver, name="tinyo-receiver", daemon=True).start()
    try:
        resolver = OpResolver(import_recipe_module(recipe_path), None)
    except Exception as exc:
        emit("fatal", 0, f"worker {name} cannot import the recipe {recipe_path}: {exc}")
        reports.flush()
        time.sleep(0.5)
        os._exit(3)
    emit("ready", 0, os.getpid())
    reports.flush()
    while True:
        with ready:
            if not inbox:
                ready.release()
                try:
                    reports.flush()  # about to wait for work: what the last ops said goes now, in one message
                finally:
                    ready.acquire()
            while not inbox:
                ready.wait()
            task = inbox.popleft()
            if task is None:
                break
            skipped = task.run_id in skip
            skip.discard(task.run_id)
        if skipped:
            emit("done", task.run_id, (False, "cancelled before it started", None, None, 0.0))
            continue
        try:
            run_task(task, resolver.resolve, emit, name)
        except BaseException as exc:  # run_task reports op errors itself; this is a worker bug
            emit("done", task.run_id, (False, f"worker error: {exc!r}", traceback.format_exc(), None, 0.0))
    reports.flush()  # everything reported is sent before the worker exits


class _Reports:
    """A worker's reports on their way to the engine, bounded. The thread running ops sends them itself
    when it runs out of work (a short op's start and outcome go in one message, with no hand-over to
    another thread on the way); the sender thread sends what has waited longer than ``HOLD`` (the start
    and output of a long op, reports from other threads). One send at a time, in order."""

    HOLD = 0.002
    """Seconds a report may wait for the op thread to send it before the sender thread does (the pool
    counts ops under 2 ms as fast: their start and outcome go together)."""
    MAX = 20_000
    """Reports waiting at most: a thread printing faster than the pipe drains waits (bounded memory)."""
    BATCH = 2000

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.waiting: deque[tuple[str, int, Any]] = deque()
        self.since = 0.0
        """When the oldest waiting report was put (monotonic)."""
        self.cond = threading.Condition()
        self.send_lock = threading.Lock()
        self.blocked = 0
        """Threads waiting for room."""

    def put(self, kind: str, run_id: int, payload: Any) -> None:
        with self.cond:
            while len(self.waiting) >= self.MAX:
                self.blocked += 1
                self.cond.wait()
                self.blocked -= 1
            if not self.waiting:
                self.since = time.monotonic()
                self.cond.notify_all()
            self.waiting.append((kind, run_id, payload))

    def flush(self) -> None:
        """Send every waiting report (in batches), on the calling thread."""
        with self.send_lock:
            while True:
                with self.cond:
                    if not self.waiting:
                        return
                    waiting = self.waiting
                    batch = [waiting.popleft() for _ in range(min(len(waiting), self.BATCH))]
                    if waiting:
                        self.since = time.monotonic()
                    if self.blocked:
                        self.cond.notify_all()  # room for a waiting put (the sender's own wait ends by itself)
                try:
                    self.conn.send(batch)
                except (OSError, EOFError):
                    os._exit(1)  # the orchestrator is gone

    def sender(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self.waiting:
                        wait = self.since + self.HOLD - time.monotonic()
                        if wait <= 0:
                            break
                        self.cond.wait(wait)  # the op thread may send them itself meanwhile
                    else:
                        self.cond.wait()
            self.flush()
