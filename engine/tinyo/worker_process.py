"""Provides a process worker's life: one thread reads a task, runs it and writes the report; a watch thread
steps in only around an op that runs long.

A burst's or a chain's ops take microseconds, and every hand-over between threads costs a wake-up and the
interpreter lock, twice per task when a receiver thread and a sender thread stand on either side of the op.
So the thread that runs ops also reads the task pipe (only between ops, and without waiting while it holds
tasks) and writes the reports (when it runs out of work, or when the oldest has waited ``SEND_AFTER``). The
watch thread keeps what the other threads were for, for an op that runs longer than ``WATCH_AFTER``:

- the op's start and the lines it prints reach the engine while it runs (the engine's stall detection, its
  timeouts and the console read them);
- the task pipe is read while it runs: a cancel of a task queued behind it, a withdraw (the engine takes
  back the tasks queued behind an op that stalls, for an idle worker), and the end of the pipe (the
  orchestrator is gone: the worker exits at once);
- reports other threads put while the worker waits for work are sent.

It looks every few milliseconds while the worker is busy or was lately, and otherwise waits until an op
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

from .worker import Task, install_routers, run_task

SEND_AFTER = 0.002
"""Seconds a report may wait before it is sent while the worker still holds tasks (the engine refills a
worker as it learns of outcomes; the pool counts ops under 2 ms as fast: their start and outcome go
together)."""
WATCH_AFTER = 0.005
"""Seconds after which a running op is watched: its start and output sent, its task pipe read."""
PARK_AFTER = 1.0
"""Seconds without an op after which the watch thread stops looking every few milliseconds."""


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
    time, in order; ``cond`` is the worker's one condition (the watch thread waits on it too)."""

    MAX = 20_000
    """Reports waiting at most: a thread printing faster than the pipe drains waits (bounded memory)."""
    BATCH = 2000

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        """``cond``'s lock: taken directly where nothing waits or is notified (a put, twice per op), without the
        Python-level ``Condition.__enter__``."""
        self.cond = threading.Condition(self.lock)
        self.waiting: deque[tuple[str, int, Any]] = deque()
        self.since = 0.0
        """When the oldest waiting report was put (monotonic)."""
        self.send_lock = threading.Lock()
        self.blocked = 0
        """Threads waiting for room."""
        self.watch_parked = False
        """The watch thread waits on ``cond`` with no time limit: a first report wakes it."""

    def put(self, kind: str, run_id: int, payload: Any) -> None:
        with self.lock:
            while len(self.waiting) >= self.MAX:
                self.blocked += 1
                self.cond.wait()
                self.blocked -= 1
            if not self.waiting:
                self.since = time.monotonic()
                if self.watch_parked:
                    self.cond.notify_all()
            self.waiting.append((kind, run_id, payload))

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


class WorkerLoop:
    """The tasks a worker holds and the thread that runs them; see the module's docstring.

    The thread holding ``reading`` reads the task pipe and alone touches ``inbox``, ``skip`` and ``head``:
    the op thread between ops, the watch thread while an op runs long. ``cond`` guards the running op's
    mark (``op_since``, ``op_seq``), ``watching`` and the reports (the op thread takes its ``lock`` directly)."""

    def __init__(self, task_conn: Any, result_conn: Any, name: str) -> None:
        self.task_conn = task_conn
        self.name = name
        self.reports = Reports(result_conn)
        self.cond = self.reports.cond
        self.lock = self.reports.lock
        self.reading = threading.Lock()
        self.inbox: deque[Task | None] = deque()
        self.skip: set[int] = set()
        self.head: tuple[str, Any] = ("", ())
        """The recipe path and ops of the last task read: a task sent without them runs these."""
        self.op_since = 0.0
        """When the running op started (monotonic; 0: none runs)."""
        self.op_seq = 0
        self.watching = False
        """The watch thread reads the task pipe (an op runs long): the op's end wakes it through ``wake_w``."""
        self.wake_r, self.wake_w = os.pipe()
        self.tasks_ready = select.poll()
        self.tasks_ready.register(task_conn.fileno(), select.POLLIN)
        self.pipes_ready = select.poll()
        self.pipes_ready.register(task_conn.fileno(), select.POLLIN)
        self.pipes_ready.register(self.wake_r, select.POLLIN)

    # ------------------------------------------------------------ the op thread
    def serve(self, resolve: Any) -> None:
        """Run tasks until a stop; every report is sent before it returns."""
        emit, reports, lock = self.reports.put, self.reports, self.lock
        threading.Thread(target=self.watch, name="tinyo-watch", daemon=True).start()
        while True:
            task = self._next()
            if task is None:
                break
            with lock:
                self.op_since = time.monotonic()
                if reports.watch_parked:
                    self.cond.notify_all()
            try:
                run_task(task, resolve, emit, self.name)
            except BaseException as exc:  # run_task reports op errors itself; this is a worker bug
                emit("done", task.run_id, (False, f"worker error: {exc!r}", traceback.format_exc(), None, 0.0))
            with lock:
                self.op_since = 0.0
                self.op_seq += 1
                if self.watching:
                    os.write(self.wake_w, b".")
            if reports.due(time.monotonic()):
                reports.flush()
        reports.flush()

    def _next(self) -> Task | None:
        """The next task to run (None: stop). Holding tasks, it looks at the pipe first (a cancel may wait
        there); holding none, it sends what the last ops said (in one message) and waits for work: one read
        takes all that waits (a chain's link costs the worker that read and the report's write)."""
        with self.reading:
            while True:
                if self.inbox:
                    if self.tasks_ready.poll(0):
                        self._take_in()
                    task = self.inbox.popleft()
                    if task is None or task.run_id not in self.skip:
                        return task
                    self.skip.discard(task.run_id)
                    self.reports.put("done", task.run_id, (False, "cancelled before it started", None, None, 0.0))
                    continue
                self.reports.flush()  # about to wait for work: what the last ops said goes now, in one message
                self._take_in()

    def _take_in(self) -> None:
        """Every message waiting in the task pipe (at least one: it waits for it)."""
        try:
            messages = self.task_conn.recv_all()
        except (EOFError, OSError):
            os._exit(1)  # the orchestrator is gone: stop at once (its store marks the run interrupted)
        for msg in messages:
            self._handle(msg)

    def _handle(self, msg: tuple[Any, ...]) -> None:
        """One message of the task pipe (the thread holding ``reading``)."""
        kind = msg[0]
        if kind == "run":
            self.inbox.extend(self._task(wire) for wire in msg[1])
        elif kind == "cancel":
            if any(t is not None and t.run_id == msg[1] for t in self.inbox):
                self.skip.add(msg[1])
        elif kind == "withdraw":
            # hand back tasks that have not started (the running op may be stuck: the watch thread does it)
            wanted = set(msg[1])
            for task in [t for t in self.inbox if t is not None and t.run_id in wanted]:
                self.inbox.remove(task)
                self.reports.put("withdrawn", task.run_id, None)
            self.reports.flush()  # the engine waits for them to hand them to an idle worker
        elif kind == "stop":
            self.inbox.append(None)

    def _task(self, wire: tuple[Any, ...]) -> Task:
        run_id, des_id, attempt, deps, targs, head = wire
        if head is None:
            head = self.head
        else:
            self.head = head
        return Task(run_id, des_id, attempt, head[0], head[1], deps, targs)

    # ------------------------------------------------------------ the watch thread
    def watch(self) -> None:
        reports = self.reports
        quiet_since = time.monotonic()
        while True:
            long_op = None
            with self.cond:
                now = time.monotonic()
                since = self.op_since
                if since:
                    quiet_since = now
                    if now - since >= WATCH_AFTER:
                        long_op = self.op_seq
                    else:
                        self.cond.wait(since + WATCH_AFTER - now)
                elif not reports.waiting and now - quiet_since >= PARK_AFTER:
                    reports.watch_parked = True
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
        """While op ``seq`` runs: send what it reports, read the task pipe."""
        self.reports.flush()  # its start (and what it printed): the engine times it from there
        if not self.reading.acquire(blocking=False):
            return  # it has ended: the op thread reads the pipe again
        try:
            with self.cond:
                if self.op_seq != seq:
                    return
                self.watching = True
            while True:
                for fd, _ in self.pipes_ready.poll(int(SEND_AFTER * 1000)):
                    if fd == self.wake_r:
                        os.read(self.wake_r, 512)
                    else:
                        self._take_in()
                if self.reports.due(time.monotonic()):
                    self.reports.flush()
                with self.cond:
                    if self.op_seq != seq:
                        self.watching = False
                        return
        finally:
            self.reading.release()
