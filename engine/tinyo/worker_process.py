"""Provides a process worker's life: one thread reads a task, runs it and writes the report; a watch thread
steps in only around an op that runs long.

A burst's or a chain's ops take microseconds, and every hand-over between threads costs a wake-up and the
interpreter lock, twice per task when a receiver thread and a sender thread stand on either side of the op.
So the thread that runs ops also reads the task pipe (only between ops, and without waiting while it holds
tasks) and writes the reports (when it runs out of work, or when the oldest has waited ``SEND_AFTER``). An
op's start and outcome go in one report (``ran``) when it ends before its start was sent. The watch thread
keeps what the other threads were for, for an op that runs longer than ``WATCH_AFTER``:

- the op's start and the lines it prints reach the engine while it runs (the engine's stall detection, its
  timeouts and the console read them; a line printed sends the start before it, at once);
- the task pipe is read while it runs: a cancel of a task queued behind it, a withdraw (the engine takes
  back the tasks queued behind an op that stalls, for an idle worker), and the end of the pipe (the
  orchestrator is gone: the worker exits at once);
- reports other threads put while the worker waits for work are sent.

It looks every ``WATCH_AFTER`` while the worker is busy or was lately, and otherwise waits until an op
starts or a report is put (``PARK_AFTER``): an idle worker costs nothing, and a chain's links do not wake it
each. (While the recipe is being imported, nothing reads the task pipe: a worker whose orchestrator is gone
exits once it has imported it and finds its pipes closed.)
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

from .worker import LineRouter, describe, install_routers, run_ops

SEND_AFTER = 0.002
"""Seconds a report may wait before it is sent while the worker still holds tasks (the engine refills a
worker as it learns of outcomes; the pool counts ops under 2 ms as fast: their start and outcome go
together)."""
WATCH_AFTER = 0.02
"""Seconds after which a running op is watched: its start and output sent, its task pipe read. The watch
thread looks this often while the worker is busy, and no more: each look takes the interpreter from the
thread running ops, and the engine's stall detection (50 ms at least) and timeouts need no finer grain."""
LOOK_EVERY = 0.001
"""Seconds between the op thread's looks at the task pipe while it holds tasks: a cancel of a task queued
behind fast ops is read before that task starts if it came this long before, and an op of a few microseconds
(a burst's) does not pay a system call each; one queued behind an op that runs long is read by the watch
thread."""
PARK_AFTER = 1.0
"""Seconds without an op after which the watch thread stops looking every ``WATCH_AFTER``."""


def process_main(task_conn: Any, result_conn: Any, name: str, recipe_path: str, sys_path: list[str], cwd: str) -> None:
    """Entry point of a worker process: import the recipe, say so, run tasks until a stop."""
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

    worker = WorkerLoop(task_conn, result_conn, name)
    reports = worker.reports
    try:
        resolver = OpResolver(import_recipe_module(recipe_path), None)
    except Exception as exc:
        reports.put("fatal", 0, f"worker {name} cannot import the recipe {recipe_path}: {exc}")
        reports.flush()
        time.sleep(0.5)
        os._exit(3)
    reports.put("ready", 0, os.getpid())
    reports.flush()
    worker.serve(resolver.resolve)


class Reports:
    """A worker's reports on their way to the engine, bounded; several go in one pipe write. One send at a
    time, in order; ``cond`` is the worker's one condition (the watch thread waits on it too).

    It also holds the running op's mark, so that its start is sent once and first: alone, before a line the
    op prints (or a metric), or once it has run ``WATCH_AFTER`` (the watch thread's ``send_start``), else with
    its outcome (``ran``: ``WorkerLoop.serve``)."""

    MAX = 20_000
    """Reports waiting at most: a thread printing faster than the pipe drains waits (bounded memory)."""
    BATCH = 2000

    def __init__(self, conn: Any, worker: str) -> None:
        self.conn = conn
        self.worker = worker
        self.lock = threading.Lock()
        """``cond``'s lock: taken directly where nothing waits or is notified (a put, an op's end), without the
        Python-level ``Condition.__enter__``."""
        self.cond = threading.Condition(self.lock)
        self.waiting: deque[tuple[str, int, Any]] = deque()
        self.since = 0.0
        """When the oldest waiting report was put (monotonic)."""
        self.send_lock = threading.Lock()
        self.blocked = 0
        """Threads waiting for room."""
        self.watch_parked = False
        """The watch thread waits on ``cond`` with no time limit: a first report, or an op's start, wakes it."""
        self.watch_wake = -1
        """While the watch thread reads the task pipe during an op that runs long (``WorkerLoop._watch_op``): the
        write end of the pipe that wakes it from that wait (a first report put, the op's end); else -1. Set
        under the lock."""
        self.op: tuple[int, float, float] | None = None
        """The running op: (run id, start on the wall clock (the engine's facts), start on the monotonic clock);
        None between ops. The op thread sets it in one store, and clears it under the lock with the outcome."""
        self.op_seq = 0
        """Ops ended: tells the watch thread whether the op it saw running is still the one running."""
        self.sent_seq = -1
        """The ``op_seq`` of the op whose start was put alone: its outcome then goes as ``done``, not ``ran``."""

    def put(self, kind: str, run_id: int, payload: Any) -> None:
        with self.lock:
            waiting = self.waiting
            while len(waiting) >= self.MAX:
                self.blocked += 1
                self.cond.wait()
                self.blocked -= 1
            if not waiting:
                self.since = time.monotonic()
                if self.watch_parked:
                    self.unpark()
                elif self.watch_wake >= 0:
                    poke(self.watch_wake)  # it waits up to ``WATCH_AFTER``: it sends this ``SEND_AFTER`` from now
            op = self.op
            if op is not None and op[0] == run_id and self.sent_seq != self.op_seq:
                waiting.append(self.start_of(op))
                self.sent_seq = self.op_seq
            waiting.append((kind, run_id, payload))

    def start_of(self, op: tuple[int, float, float]) -> tuple[str, int, Any]:
        """The running op's ``start`` report, sent alone (``ran`` carries the same fields, its outcome after)."""
        return ("start", op[0], (self.worker, op[1]))

    def send_start(self, seq: int) -> bool:
        """The watch thread saw op ``seq`` run long: its start is put (once); False if it has ended."""
        with self.lock:
            op = self.op
            if self.op_seq != seq or op is None:
                return False
            if self.sent_seq != seq:
                if not self.waiting:
                    self.since = time.monotonic()
                self.waiting.append(self.start_of(op))
                self.sent_seq = seq
            return True

    def unpark(self) -> None:
        """Wake the parked watch thread (under the lock); the flag cleared here, so that the ops that start
        before it runs again do not each notify."""
        self.watch_parked = False
        self.cond.notify_all()

    def due(self, now: float) -> bool:
        """True when reports wait and the oldest has waited ``SEND_AFTER``, or a batch is full."""
        waiting = self.waiting
        return bool(waiting) and (now - self.since >= SEND_AFTER or len(waiting) >= self.BATCH)

    def flush(self) -> None:
        """Send every waiting report (in batches), on the calling thread."""
        with self.send_lock:
            while True:
                with self.lock:  # ``cond``'s own lock, without the Python-level ``Condition.__enter__``
                    waiting = self.waiting
                    if not waiting:
                        return
                    if len(waiting) <= self.BATCH:
                        batch = list(waiting)
                        waiting.clear()
                    else:
                        batch = [waiting.popleft() for _ in range(self.BATCH)]
                        self.since = time.monotonic()
                    if self.blocked:
                        self.cond.notify_all()  # room for a waiting put
                try:
                    self.conn.send(batch)
                except (OSError, EOFError):
                    os._exit(1)  # the orchestrator is gone


Wire = tuple[int, str, int, frozenset, frozenset, Any]
"""A task as the pool sends it: (run id, DES id, attempt, deps, targs, ops); ops None: the last task's
(``executors.process.submit``)."""


class WorkerLoop:
    """The tasks a worker holds and the thread that runs them; see the module's docstring.

    ``inbox``, ``skip`` and ``carry`` (and the task pipe) are the op thread's between ops, and the watch
    thread's while it reads the pipe during an op that runs long (``Reports.watch_wake``, set under ``cond``
    only while that op runs; the op thread, seeing it set as the op ends, waits on ``reading`` for the watch
    thread to let go). ``cond`` guards it and the reports (the op thread takes its ``lock`` directly)."""

    def __init__(self, task_conn: Any, result_conn: Any, name: str) -> None:
        self.task_conn = task_conn
        self.name = name
        self.reports = Reports(result_conn, name)
        self.cond = self.reports.cond
        self.reading = threading.Lock()
        """Held by the watch thread while it reads the pipe."""
        self.inbox: deque[Wire | None] = deque()
        """Tasks as they came (their ops given only when they change), None for a stop."""
        self.skip: set[int] = set()
        self.carry: Any = None
        """The ops a withdrawn task carried that no task left behind it could take: the next task received
        runs them if it comes without ops (the pool sent them once, to the task it took back)."""
        self.wake_r, self.wake_w = os.pipe()
        """Wakes the watch thread while it reads the task pipe (``Reports.watch_wake``)."""
        os.set_blocking(self.wake_w, False)  # a full pipe wakes it already
        self.tasks_ready = select.poll()
        self.tasks_ready.register(task_conn.fileno(), select.POLLIN)
        self.pipes_ready = select.poll()
        self.pipes_ready.register(task_conn.fileno(), select.POLLIN)
        self.pipes_ready.register(self.wake_r, select.POLLIN)

    # ------------------------------------------------------------ the op thread
    def serve(self, resolve: Any) -> None:
        """Run tasks until a stop; every report is sent before it returns."""
        threading.Thread(target=self.watch, name="tinyo-watch", daemon=True).start()
        reports, name, inbox, skip, lock, waiting = (self.reports, self.name, self.inbox, self.skip,
                                                     self.reports.lock, self.reports.waiting)
        emit, due, wall, mono, ready = reports.put, reports.due, time.time, time.monotonic, self.tasks_ready.poll
        ops: Any = ()
        now = looked = 0.0
        seq = 0
        while True:
            # holding none, it sends what the last ops said (in one message) and waits for work: one read takes
            # all that waits; holding tasks, it looks at the pipe every ``LOOK_EVERY`` (a cancel may wait there)
            if not inbox:
                reports.flush()
                self._take_in()
                looked = now
            elif now - looked >= LOOK_EVERY:
                looked = now
                if ready(0):
                    self._take_in()
            wire = inbox.popleft()
            if wire is None:
                break
            run_id, des_id, attempt, deps, targs, head = wire
            if head is not None:
                ops = head
            if skip and run_id in skip:
                skip.discard(run_id)
                emit("done", run_id, (False, "cancelled before it started", None, None, 0.0))
                continue
            if not isinstance(sys.stdout, LineRouter) or not isinstance(sys.stderr, LineRouter):
                install_routers()  # an op replaced sys.stdout and left it so
            # the op's mark and its outcome's report, written here rather than through methods of ``Reports``:
            # a burst runs thousands of ops a second
            reports.op = op = (run_id, wall(), mono())  # one store: the watch thread and ``put`` read it whole
            if reports.watch_parked:
                with lock:
                    reports.unpark()
            try:
                ok, error, tb, result, _ = run_ops(run_id, des_id, attempt, ops, deps, targs, resolve, emit, name)
            except BaseException as exc:  # run_ops reports an op's failure itself: this is the worker's own
                ok, error, tb, result = False, f"worker error: {describe(exc)}", traceback.format_exc(), None
            now = mono()
            with lock:
                if not waiting:
                    reports.since = now
                    if reports.watch_parked:
                        reports.unpark()
                if reports.sent_seq == seq:  # its start went alone
                    waiting.append(("done", run_id, (ok, error, tb, result, now - op[2])))
                else:  # ``start_of``'s payload, then the outcome's, as one tuple (one per op in a burst)
                    waiting.append(("ran", run_id, (name, op[1], ok, error, tb, result, now - op[2])))
                reports.op = None
                reports.op_seq = seq = seq + 1
                watched = reports.watch_wake >= 0
            if watched:  # the watch thread reads the pipe: it lets go of it (and of the inbox) first
                poke(self.wake_w)
                with self.reading:
                    pass
            if due(now):
                reports.flush()
        reports.flush()

    def _take_in(self) -> None:
        """Every message waiting in the task pipe (at least one: it waits for it)."""
        try:
            messages = self.task_conn.recv_all()
        except (EOFError, OSError):
            os._exit(1)  # the orchestrator is gone: stop at once (its store marks the run interrupted)
        for msg in messages:
            self._handle(msg)

    def _handle(self, msg: tuple[Any, ...]) -> None:
        """One message of the task pipe (the op thread between ops, the watch thread while it watches one)."""
        kind = msg[0]
        if kind == "run":
            wires = msg[1]
            if self.carry is not None:
                if wires[0][5] is None:
                    wires[0] = (*wires[0][:5], self.carry)
                self.carry = None
            self.inbox.extend(wires)
        elif kind == "cancel":
            if any(t is not None and t[0] == msg[1] for t in self.inbox):
                self.skip.add(msg[1])
        elif kind == "withdraw":
            self._withdraw(set(msg[1]))
            self.reports.flush()  # the engine waits for them to hand them to an idle worker
        elif kind == "stop":
            self.inbox.append(None)

    def _withdraw(self, wanted: set[int]) -> None:
        """Hand back the tasks in ``wanted`` that have not started (the running op may be stuck: the watch
        thread does it); ops one of them carried go to the next task left, which came without them."""
        inbox, kept, carry = self.inbox, [], None
        for wire in inbox:
            if wire is not None and wire[0] in wanted:
                self.reports.put("withdrawn", wire[0], None)
                if wire[5] is not None:
                    carry = wire[5]
                continue
            if carry is not None and wire is not None:
                if wire[5] is None:
                    wire = (*wire[:5], carry)
                carry = None
            kept.append(wire)
        inbox.clear()  # in place: the op thread holds it
        inbox.extend(kept)
        if carry is not None:
            self.carry = carry

    # ------------------------------------------------------------ the watch thread
    def watch(self) -> None:
        reports = self.reports
        quiet_since = time.monotonic()
        while True:
            long_op = None
            with self.cond:
                now = time.monotonic()
                op = reports.op
                if op is not None:
                    quiet_since = now
                    if now - op[2] >= WATCH_AFTER:
                        long_op = reports.op_seq
                    else:
                        self.cond.wait(op[2] + WATCH_AFTER - now)
                elif not reports.waiting and now - quiet_since >= PARK_AFTER:
                    reports.watch_parked = True
                    if reports.op is None:  # read after the flag: an op that starts now sees the flag
                        self.cond.wait()  # until an op starts or a report is put
                    reports.watch_parked = False
                    quiet_since = time.monotonic()
                elif not reports.due(now):
                    # reports to send soon, or an op that may start (seen at most this late)
                    self.cond.wait(SEND_AFTER if reports.waiting else WATCH_AFTER)
            if long_op is not None:
                self._watch_op(long_op)
            elif reports.due(time.monotonic()):
                reports.flush()

    def _watch_op(self, seq: int) -> None:
        """While op ``seq`` runs: send its start and what it reports, read the task pipe. It wakes every
        ``WATCH_AFTER`` while nothing waits to be sent (each wake-up takes the interpreter from the op), and
        ``SEND_AFTER`` after a first report is put (``Reports.put`` wakes it)."""
        reports = self.reports
        if not reports.send_start(seq):
            return  # it has ended
        reports.flush()  # its start (and what it printed): the engine times it from there
        if not self.reading.acquire(blocking=False):
            return  # (never held by another thread while an op runs)
        try:
            with self.cond:
                if reports.op_seq != seq:
                    return
                reports.watch_wake = self.wake_w
            while True:
                # a report put after this read of ``waiting`` finds ``watch_wake`` set: it wakes this poll
                wait = SEND_AFTER - (time.monotonic() - reports.since) if reports.waiting else WATCH_AFTER
                for fd, _ in self.pipes_ready.poll(max(0, int(wait * 1000 + 0.999))):
                    if fd == self.wake_r:
                        os.read(self.wake_r, 512)
                    else:
                        self._take_in()
                if reports.due(time.monotonic()):
                    reports.flush()
                with self.cond:
                    if reports.op_seq != seq:
                        reports.watch_wake = -1
                        return
        finally:
            self.reading.release()


def poke(fd: int) -> None:
    """Wake the thread polling the pipe ``fd`` writes to (non-blocking: a full pipe wakes it already)."""
    try:
        os.write(fd, b".")
    except BlockingIOError:
        pass
