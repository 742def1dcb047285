"""Provides the process-pool executor: its own pool, so a worker that dies fails only its op.

concurrent.futures.ProcessPoolExecutor marks the whole pool broken when one worker dies and cannot
stop a running call, so tinyo keeps its own workers: each has a task pipe and a result pipe; the result
pipes are read by the engine's loop thread while it waits (:meth:`ProcessExecutor.attach`; otherwise by the
pool's reader thread), end of file there means the worker died, and the reader thread replaces it.
Workers are fresh interpreters (``python -m tinyo._worker_main``) in a session of their own: nothing
is inherited from the orchestrator (not even its ``__main__`` script, which multiprocessing's spawn
and fork-server methods would re-run), Ctrl-C or a hang-up sent to the terminal's process group does
not reach them (the orchestrator decides what happens to running ops), and they exit when the
orchestrator is gone (their task pipe closes). They import the recipe by path and resolve ops by
qualified name. What they write straight to file descriptors 1 and 2 (subprocesses, C libraries)
is read back and attributed to the run in progress.

Short ops are prefetched (:mod:`.prefetch`). Each task goes to a least-loaded worker, the first
of equals: tasks sent one at a time (a chain's links) all run on the worker the last one left warm. A task
carries its ops only when they differ from the last task sent to that worker (``worker_process`` keeps them).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from .. import pipe
from ..children import wait_exit
from ..messages import Requeue, WorkerLost, WorkerReports, WorkerState
from ..waker import Waker
from ..worker import Task
from ..worker_launch import Worker as _Worker
from ..worker_launch import dismiss_workers
from ..worker_launch import popen_worker as _popen
from .base import Sink, WorkerInfo
from .prefetch import reports_due, stall_limit, tasks_held

RESPAWN_FIRST = 2.0
RESPAWN_MAX = 60.0
"""Back-off (seconds, doubling) before restarting a worker that died before it could take work."""


class ProcessExecutor:
    """Ops in worker processes."""

    name = "processes"

    def __init__(self, recipe_path: str, max_workers: int, sink: Sink, clock: Callable[[], float],
                 launched: list[_Worker] | None = None) -> None:
        self.recipe_path = recipe_path
        self._launched = launched or []
        """Workers :func:`launch_workers` started earlier for this recipe: taken at :meth:`start`."""
        self.max_workers = max_workers
        self.sink = sink
        self.clock = clock
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._pipes_changed = True
        """A worker's pipe opened or closed: the reader thread rebuilds what it waits on."""
        self._reader_unbounded = False
        """The reader thread waits with no time limit (under ``_lock``): nothing waits behind a running op."""
        self._reader: threading.Thread | None = None
        self._waker: Waker | None = None
        """The loop's wake-up, when the loop reads the report pipes while it waits (:meth:`attach`)."""
        self._deaths: list[_Worker] = []
        """Workers whose report pipe the loop found at its end: the reader thread reaps and replaces them."""
        self._mean = 1.0

    # ------------------------------------------------------------ lifecycle
    def attach(self, waker: Waker) -> None:
        """Have the thread that waits on ``waker`` (the loop's) read the workers' reports, before
        :meth:`start`: a report then reaches the loop with one wake-up, not a hand-over from the reader
        thread (which still reads the workers' output, replaces the dead, and looks for stalls)."""
        self._waker = waker
        waker.linger = lambda: reports_due(self._workers, self._mean, self._lock)

    def start(self) -> None:
        early = {w.name: w for w in self._launched}
        self._launched = []
        for index in range(self.max_workers):
            worker = early.pop(f"w{index + 1}", None)
            if worker is None:
                worker = _Worker(f"w{index + 1}")
                _popen(worker, self.recipe_path)
            self._workers.append(worker)
            self._watch(worker)
            self.sink(WorkerState(worker.name, worker.pid, "idle", "started"))
        dismiss_workers(list(early.values()))  # more were started than the engine runs: none is left behind
        self._reader = threading.Thread(target=self._read_loop, name="tinyo-pool-reader", daemon=True)
        self._reader.start()

    def _spawn(self, worker: _Worker) -> None:
        _popen(worker, self.recipe_path)
        self._pipes_changed = True
        self._watch(worker)
        self.sink(WorkerState(worker.name, worker.pid, "idle", "started"))

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # closed during shutdown; nobody is waiting any more

    # ------------------------------------------------------------ dispatch
    def _limit(self) -> int:
        return tasks_held(self._mean)

    def free_slots(self) -> int:
        limit = self._limit()
        with self._lock:
            return sum(max(0, limit - len(w.inflight)) for w in self._workers if not w.dead)

    def submit(self, tasks: list[Task]) -> None:
        with self._lock:
            live = [w for w in self._workers if not w.dead]
            if any(w.started_mono for w in live):  # an op runs: none to a worker whose op stalls, if others flow
                now = time.monotonic()
                live = [w for w in live if not self._stalled(w, now)] or live
            if not live and tasks:
                raise RuntimeError("no live worker to run tasks on")
            # each task to a least-loaded worker, a ready one before one still starting, the first of equals: a
            # chain's links, one at a time, all go to the worker the last link left warm in the CPU's caches
            keys = [2 * len(w.inflight) + (not w.ready) for w in live]
            wires: list[list[tuple[Any, ...]]] = [[] for _ in live]
            sent = [w.sent_ops for w in live]
            for task in tasks:
                index = keys.index(min(keys))
                keys[index] += 2
                live[index].inflight[task.run_id] = task
                # the ops go only when they differ from the last task's this worker was sent: a burst's or a
                # chain's tasks all share them (registration shares equal ops), and their Configs cost most of a
                # task's pickle (the worker imported the recipe from its command line: the recipe path is the pool's)
                ops = task.ops
                if ops is sent[index] or ops == sent[index]:
                    ops = None
                else:
                    sent[index] = ops
                wires[index].append((task.run_id, task.des_id, task.attempt, task.deps, task.targs, ops))
            sends = []
            for worker, ops, its_wires in zip(live, sent, wires):
                worker.sent_ops = ops
                if its_wires:
                    sends.append((worker.task_conn, its_wires))
            # tasks now wait behind others: the reader thread, if it waits for nothing but a pipe, must look
            # for stalls (no report wakes it: the loop reads them)
            wake = self._reader_unbounded and any(key > 3 for key in keys)  # a worker holds two tasks or more
        if wake:
            self._wake()
        # sent outside the lock (a full pipe waits for the worker, whose reports the reader thread must take);
        # only the loop thread submits, so each worker's tasks reach its pipe in the order their ops assume
        for conn, its_wires in sends:
            try:
                conn.send(("run", its_wires))
            except (OSError, ValueError):
                pass  # the worker died meanwhile (its pipe closed); its death handler requeues these tasks

    def _stalled(self, worker: _Worker, now: float) -> bool:
        """True when the op running on ``worker`` has taken far longer than ops have lately."""
        if not worker.started_mono:
            return False
        first = next(iter(worker.started_mono.values()))
        return now - first > stall_limit(self._mean)

    def _rebalance(self) -> None:
        """An idle worker beside one whose op stalls: take back the tasks waiting behind that op."""
        now = time.monotonic()
        sends: list[tuple[_Worker, list[int]]] = []
        with self._lock:
            live = [w for w in self._workers if not w.dead]
            if not any(w.ready and not w.inflight for w in live):
                return
            for w in live:
                if len(w.inflight) > 1 and self._stalled(w, now):
                    waiting = [rid for rid in list(w.inflight)[1:] if rid not in w.withdrawing]
                    if waiting:
                        w.withdrawing.update(waiting)
                        sends.append((w, waiting))
        for w, ids in sends:
            try:
                w.task_conn.send(("withdraw", ids))
            except (OSError, ValueError):
                pass  # the worker died meanwhile: its death handler requeues these tasks

    def cancel(self, run_id: int, cause: Literal["cancel", "timeout"] = "cancel") -> bool:
        with self._lock:
            for worker in self._workers:
                if run_id not in worker.inflight:
                    continue
                first = next(iter(worker.inflight))
                if first == run_id:
                    worker.kill_cause[run_id] = cause
                    if worker.pid:
                        try:
                            os.kill(worker.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass  # already gone; its closed result pipe reports it
                else:
                    try:
                        worker.task_conn.send(("cancel", run_id))
                    except (OSError, ValueError):
                        pass  # the worker died; its death handler requeues or fails the run
                return True
        return False

    def running(self) -> dict[int, float]:
        with self._lock:
            out: dict[int, float] = {}
            for worker in self._workers:
                out.update(worker.started)
            return out

    def workers(self) -> list[WorkerInfo]:
        infos = []
        with self._lock:
            for w in self._workers:
                if w.dead:
                    infos.append(WorkerInfo(w.name, w.pid, "dead", None, None, None, None))
                    continue
                if w.started:
                    run_id = next(iter(w.started))
                    task = w.inflight.get(run_id)
                    infos.append(WorkerInfo(w.name, w.pid, "busy", run_id, task.des_id if task else None,
                                            task.op_label if task else None, w.started[run_id]))
                else:
                    infos.append(WorkerInfo(w.name, w.pid, "idle" if w.ready else "starting", None, None, None, None))
        return infos

    # ------------------------------------------------------------ results
    def _watch(self, worker: _Worker) -> None:
        if self._waker is not None:
            conn = worker.result_conn
            fd = conn.fileno()
            self._waker.watch(fd, lambda: self._on_results(worker, conn, fd))

    def _on_results(self, worker: _Worker, conn: Any, fd: int) -> None:
        """A worker's report pipe can be read (on the thread waiting on the loop's waker)."""
        if conn is not worker.result_conn or worker.eof:
            return  # a pipe of a process since replaced
        self._receive(worker)
        if worker.eof and self._waker is not None:
            self._waker.unwatch(fd)
            with self._lock:
                self._deaths.append(worker)
            self._wake()  # the reader thread reaps and replaces it (it may take seconds)

    def _read_loop(self) -> None:
        # what it waits on is rebuilt only when a pipe opens or closes (this thread's doing): a report's way
        # from the pipe to the loop, and back to the wait, is the shortest this thread can make it, for the
        # loop thread that is woken wants the interpreter this thread holds until it waits again
        pipes: dict[int, tuple[str, _Worker | None]] = {}
        poller = select.poll()
        while not self._closing:
            if self._pipes_changed:
                self._pipes_changed = False
                poller, pipes = select.poll(), {self._wake_r: ("wake", None)}
                with self._lock:
                    for w in self._workers:
                        if w.dead:
                            continue
                        if self._waker is None:
                            pipes[w.result_conn.fileno()] = ("results", w)
                        if w.stdio is not None:
                            pipes[w.stdio] = ("stdio", w)
                for fd in pipes:
                    poller.register(fd, select.POLLIN)
            try:
                ready = poller.poll(self._wait_ms())
            except OSError:
                if self._closing:
                    return
                continue
            results: list[_Worker] = []
            for fd, _ in ready:
                kind, worker = pipes.get(fd, ("gone", None))
                if kind == "results":
                    results.append(worker)  # type: ignore[arg-type]
                elif kind == "stdio":
                    self._forward_stdio(worker)  # type: ignore[arg-type]
                elif kind == "wake":
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        return
            for worker in results:
                self._receive(worker)
                if worker.eof and not self._closing:
                    self._on_death(worker)
            if self._deaths:
                with self._lock:
                    deaths, self._deaths = self._deaths, []
                for worker in deaths:
                    if not self._closing:
                        self._on_death(worker)
            self._respawn_due()
            self._rebalance()

    def _wait_ms(self) -> int:
        """How long the reader may wait for a pipe (-1: until one is ready), in milliseconds."""
        with self._lock:
            waiting = any(len(w.inflight) > 1 for w in self._workers if not w.dead)
            respawns = [w.respawn_at for w in self._workers if w.dead and w.respawn_at is not None]
            self._reader_unbounded = not waiting and not respawns
        timeout = 0.05 if waiting else None  # look for a stalled op with tasks behind it
        if respawns:
            until = max(0.0, min(respawns) - time.monotonic())
            timeout = until if timeout is None else min(timeout, until)
        return -1 if timeout is None else int(timeout * 1000 + 0.999)

    def _forward_stdio(self, worker: _Worker) -> None:
        """Lines a worker wrote to its file descriptors 1/2 go to the run in progress there."""
        try:
            data = os.read(worker.stdio, 65536)
        except BlockingIOError:
            return  # nothing more now (a child of the op may still hold the pipe open)
        except OSError:
            data = b""
        if not data:
            os.close(worker.stdio)
            worker.stdio = None
            self._pipes_changed = True
            data, worker.partial = worker.partial + b"\n", b""
            if data == b"\n":
                return
        buf = worker.partial + data
        *lines, worker.partial = buf.split(b"\n")
        if not lines:
            return
        with self._lock:
            run_id = next(iter(worker.started), 0)
        self.sink(WorkerReports(worker.name, [("out", run_id, ("stderr", line.decode("utf-8", "replace"))) for line in lines]))

    def _receive(self, worker: _Worker) -> None:
        """What the worker reported (every message its pipe holds, in one read and one message to the loop)."""
        try:
            messages = worker.result_conn.recv_all()
        except (EOFError, OSError):
            worker.eof = True
            return
        batch = messages[0] if len(messages) == 1 else [report for message in messages for report in message]
        self._account(worker, batch)
        self.sink(WorkerReports(worker.name, batch))

    def _account(self, worker: _Worker, batch: list[tuple[str, int, Any]]) -> None:
        returned: list[Task] = []
        with self._lock:
            inflight, mean = worker.inflight, self._mean
            for kind, run_id, payload in batch:
                if kind == "ran":  # a fast op's start and outcome: it was never seen running (most reports)
                    inflight.pop(run_id, None)
                    mean = mean * 0.7 + float(payload[6]) * 0.3
                elif kind == "start":
                    worker.started[run_id] = payload[1]
                    worker.started_mono[run_id] = time.monotonic()
                elif kind == "done":
                    inflight.pop(run_id, None)
                    worker.started.pop(run_id, None)
                    worker.started_mono.pop(run_id, None)
                    mean = mean * 0.7 + float(payload[4]) * 0.3
                elif kind == "withdrawn":
                    worker.withdrawing.discard(run_id)
                    task = inflight.pop(run_id, None)
                    if task is not None:
                        returned.append(task)
                elif kind == "ready":
                    worker.ready = True
                    worker.failed_starts = 0
            self._mean = mean
        if returned:
            self.sink(Requeue(worker.name, returned))

    def _on_death(self, worker: _Worker) -> None:
        try:
            code = worker.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            code = worker.process.wait(timeout=2)
        for _ in range(64):  # what the worker wrote last (bounded: a grandchild may keep the pipe open)
            if worker.stdio is None:
                break
            before = worker.partial
            self._forward_stdio(worker)
            if worker.stdio is not None and worker.partial == before:
                break
        if worker.stdio is not None:
            os.close(worker.stdio)
            worker.stdio = None
        with self._lock:
            pending = list(worker.inflight.values())
            running = pending[0] if pending else None
            cause = worker.kill_cause.get(running.run_id) if running else None
            worker.dead = True
        reason = _death_reason(worker.name, worker.pid, code)
        self.sink(WorkerLost(worker.name, worker.pid, reason, running.run_id if running else None, cause, pending[1:]))
        for conn in (worker.task_conn, worker.result_conn):
            conn.close()
        self._pipes_changed = True
        if self._closing:
            return
        if worker.ready:
            self._spawn(worker)
            return
        # it died before it could take work (e.g. it cannot import the recipe): back off, do not spin
        worker.failed_starts += 1
        delay = min(RESPAWN_MAX, RESPAWN_FIRST * 2 ** (worker.failed_starts - 1))
        worker.respawn_at = time.monotonic() + delay

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.dead and worker.respawn_at is not None and worker.respawn_at <= now and not self._closing:
                failed = worker.failed_starts
                self._spawn(worker)
                worker.failed_starts = failed

    # ------------------------------------------------------------ shutdown
    def _read_reports(self, timeout: float) -> None:
        """While stopping, on the loop's thread: the reports it would read while waiting on its waker (within
        ``timeout`` seconds; 0: what is there, to the end of each pipe)."""
        if self._waker is None:
            time.sleep(timeout)  # the reader thread reads them
            return
        for _ in range(1000 if not timeout else 1):  # bounded: a worker's child may hold its pipe open
            with self._lock:
                conns = {w.result_conn: w for w in self._workers if not w.dead and not w.eof}
            ready = pipe.wait(conns, timeout) if conns else []
            for conn in ready:
                self._on_results(conns[conn], conn, conn.fileno())
            if not ready:
                return

    def shutdown(self, grace: float) -> list[int]:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                busy = any(w.started for w in self._workers if not w.dead)
            if not busy:
                break
            self._read_reports(0.02)
        self._closing = True
        with self._lock:
            unfinished = [rid for w in self._workers for rid in w.inflight]
            workers = list(self._workers)
        for w in workers:
            if w.dead:
                continue
            if w.inflight:
                w.process.kill()
            else:
                try:
                    w.task_conn.send(("stop",))
                except (OSError, ValueError):
                    w.process.kill()
        for w in workers:
            if wait_exit(w.process, 2) is None:
                w.process.kill()
                w.process.wait(timeout=2)
        self._wake()
        if self._reader is not None:
            self._reader.join(timeout=2)
        self._read_reports(0)  # what the workers said before they stopped
        for w in workers:
            if self._waker is not None and not w.eof and not w.dead:
                self._waker.unwatch(w.result_conn.fileno())  # closed below: never polled again
            for conn in (w.task_conn, w.result_conn):
                try:
                    conn.close()
                except OSError:
                    pass  # already closed by the death handler
            if w.stdio is not None:
                os.close(w.stdio)
                w.stdio = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass  # already closed
        return unfinished


def _death_reason(name: str, pid: int | None, code: int | None) -> str:
    if code is None:
        return f"worker {name} (pid {pid}) stopped responding"
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = f"signal {-code}"
        what = {"SIGSEGV": "crashed (segmentation fault, SIGSEGV)", "SIGKILL": "was killed (SIGKILL)",
                "SIGABRT": "aborted (SIGABRT)", "SIGTERM": "was terminated (SIGTERM)"}.get(sig, f"died of {sig}")
        return f"worker {name} (pid {pid}) {what}"
    return f"worker {name} (pid {pid}) exited with status {code}"
