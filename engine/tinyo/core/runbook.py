"""Provides the run book: the runs that are queued or running, what their workers report, their
outcomes (ok, failed, cancelled, interrupted), retries with back-off, timeouts and cancelling."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..clock import Clock
from ..dag import Graph, Node
from ..engine_state import OpenRun
from ..intake import stat_file
from ..messages import WorkerLost
from ..store_rows import jmap
from ..worker import Task

if TYPE_CHECKING:
    from ..executors import Executor
    from ..model import TinyOConfig
    from ..store import Store
    from .documents import Documents
    from .outbox import Outbox
    from .registration import Registration


RECENT_OUTPUT = 1000
"""Output lines kept in memory for a console that missed some."""


_SETTLED_HERE = frozenset({"running", "ok"})
"""The states a run's DES may be settled in by the run book as its run starts or ends (``Graph.settle_leaves_in``):
any other (stale again, waiting, failed) is dispatch's to settle (it queues, and counts the failed)."""


_STARTED_LEAVES, _STARTED_IS, _ = ev.RUN_MOVES[ev.OpStarted]
_FINISHED_LEAVES, _FINISHED_IS, _ = ev.RUN_MOVES[ev.OpFinished]
"""The DES moves ``OpStarted`` and ``OpFinished`` tell (``events.RUN_MOVES``): where the DES was last told in another
state than the one its run fact says it leaves (a run adopted from the last engine was told running), a state fact
says that one first, so that every reader derives the same state from the facts."""


def retry_delay(attempt: int, first: float, most: float) -> float:
    """Seconds to wait before running again a run that failed at ``attempt`` (1 = the first run): the
    first delay doubled per attempt, never more than ``most``."""
    return min(most, first * (2 ** (attempt - 1)))


class RunBook:
    """Open runs and their outcomes. Loop thread only."""

    def __init__(self, graph: Graph, store: Store, documents: Documents, registration: Registration,
                 outbox: Outbox, clock: Clock, config: TinyOConfig, touched: list[str]) -> None:
        self.graph = graph
        self.store = store
        self.documents = documents
        self.registration = registration
        self.outbox = outbox
        self.clock = clock
        self.config = config
        self.touched = touched
        self.executor: Executor | None = None
        """Set by the loop once the executor has started."""
        self.stopping = False
        """Set by the loop when a stop begins: a worker lost then is not a failure of its run."""
        self.open: dict[int, OpenRun] = {}
        """Runs queued or running, by run id."""
        self.attempts: dict[str, int] = {}
        """The attempt the next run of a DES will be (absent: 1)."""
        self.retries: list[tuple[float, str]] = []
        """(monotonic time due, DES id): a heap of DES waiting out their back-off."""
        self.requeue: deque[OpenRun] = deque()
        """Runs a worker gave back unstarted: submitted again before new ones."""
        self.failures = 0
        """Runs that failed for good in this engine's lifetime (for the exit status)."""
        self.told: dict[str, str] = {}
        """DES whose new state a run fact of this cycle told (OpStarted: running, OpFinished: ok): dispatch
        tells no state fact beside it, unless the DES ends the cycle in another state (it takes them)."""
        self.recent_output: deque[ev.OpOutput] = deque(maxlen=RECENT_OUTPUT)
        """The last output lines printed (what a console that missed some asks for again)."""
        self.lines_printed = 0
        """Output lines printed in this engine's lifetime (each line's ``line_no``)."""
        self._cancel_intent: dict[int, str] = {}
        self._failing_workers: set[str] = set()
        self._rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None
        """While a batch of reports is taken in: its finished-run rows, DES updates and rows of runs ended ok,
        written at its end."""
        self._settling: dict[str, Node] | None = None
        """While a batch of reports is taken in: the DES whose runs started or ended in it, settled at its end."""

    # ------------------------------------------------------------ reports from the executor
    def on_reports(self, worker: str, messages: list[tuple[str, int, Any]]) -> None:
        """One worker's messages, in the order it sent them (the executor hands them over in batches), in one
        pass: the rows of the runs that end among them are written together, and the DES whose runs start or
        end among them are settled once, at its end: here, in place, those nothing reads and that end running
        or up to date (``Graph.settle_leaves_in``, their groups moved together), the rest by dispatch."""
        self._rows = finished, updated, finished_ok = [], [], []
        self._settling = settling = {}
        documents = self.documents
        documents.begin_batch()
        try:
            open_runs, on_message, ran, done, started = self.open, self.on_message, self._ran, self._done, self._started
            finish_ok = self.finish_ok
            now, mono = self.clock.time(), self.clock.monotonic()  # one read each per batch: its facts, rows share it
            for kind, run_id, payload in messages:
                run = open_runs.get(run_id)
                if run is None:
                    on_message(worker, kind, run_id, payload)
                elif kind == "ran":
                    ran(worker, run, payload, now, mono)
                elif kind == "done":
                    if payload[0]:  # ok: ``_done``'s first branch
                        run.worker = run.worker or worker
                        finish_ok(run, payload[3], payload[4], now)
                    else:
                        done(worker, run, payload, now)
                elif kind == "start":
                    started(worker, run, payload, now, mono)
                else:
                    on_message(worker, kind, run_id, payload)
        finally:
            self._rows = self._settling = None
            if finished_ok:
                self.store.runs_ok(finished_ok)
            if finished:
                self.store.finish_runs(finished)
            if updated:
                self.store.update_des(updated)
            if settling:
                self._settle_leaves(settling, now)
            documents.end_batch()

    def _settle_leaves(self, settling: dict[str, Node], now: float) -> None:
        """The batch's DES settled as dispatch's ``settle`` would (and the same facts told), where that takes
        no walk and no queue; the others are left to it."""
        changed, undecided = self.graph.settle_leaves_in(settling.values(), _SETTLED_HERE)
        if undecided:
            self.touched.extend([node.id for node in undecided])
        told, emit = self.told, self.outbox.emit
        moves = []
        for node in changed:
            state = node.state
            moves.append((node.targs, node.was, state))
            said = told.pop(node.id, None)
            if said != state:
                emit(ev.DESStateChanged(now, node.id, state, node.reason, said or node.was, node.targs))
        if moves:
            self.documents.des_moved(moves)

    def _write(self, finished: tuple[Any, ...] | None, updated: tuple[Any, ...] | None,
               finished_ok: tuple[Any, ...] | None = None) -> None:
        """A run's final row (``finished``, or ``finished_ok`` as ``Store.runs_ok`` takes it) and its DES's new
        state: now, or with the rest of the batch of reports."""
        rows = self._rows
        if rows is not None:
            if finished_ok is not None:
                rows[2].append(finished_ok)
            else:
                rows[0].append(finished)
            if updated is not None:
                rows[1].append(updated)
            return
        if finished_ok is not None:
            self.store.runs_ok([finished_ok])
        else:
            self.store.finish_runs([finished])
        if updated is not None:
            self.store.update_des([updated])

    def on_message(self, worker: str, kind: str, run_id: int, payload: Any) -> None:
        """One message of the worker protocol (see ``messages.WorkerMessage``)."""
        run = self.open.get(run_id)
        if kind == "ran":
            if run is not None:
                self._ran(worker, run, payload, self.clock.time(), self.clock.monotonic())
        elif kind == "done":
            if run is not None:
                self._done(worker, run, payload, self.clock.time())
        elif kind == "start":
            if run is not None:
                self._started(worker, run, payload, self.clock.time(), self.clock.monotonic())
        elif kind == "out":
            stream, line = payload
            if run is not None:
                run.add_output(line if stream == "stdout" else f"[stderr] {line}")
            self.lines_printed += 1
            output = ev.OpOutput(self.clock.time(), run_id, run.des_id if run else "", run.op if run else "", worker,
                                 stream, line, self.lines_printed)
            self.recent_output.append(output)
            self.outbox.emit(output)
        elif kind == "metric":
            fields = dict(payload)
            fields.pop("run_id", None)
            self.outbox.emit(ev.FlowMetrics(self.clock.time(), run_id, **fields))
        elif kind == "fatal":
            if worker not in self._failing_workers:  # once per streak of failed starts, not per respawn
                self._failing_workers.add(worker)
                self.outbox.notice("error", f"{payload}; retrying with back-off")
        elif kind == "ready":
            self._failing_workers.discard(worker)

    def _done(self, worker: str, run: OpenRun, payload: Any, now: float) -> None:
        ok, error, tb, result, duration = payload
        run.worker = run.worker or worker
        if ok:
            self.finish_ok(run, result, duration, now)
        else:
            cause = self._cancel_intent.pop(run.run_id, None)
            if error and error.startswith("cancelled") and cause is None:
                cause = "cancel"
            self.finish_failed(run, error or "failed", tb, duration, cause=cause)

    def _ran(self, worker: str, run: OpenRun, payload: Any, now: float, mono: float) -> None:
        """A start and its outcome in one message (``messages.WorkerMessage``): a start's payload, then a done's."""
        self._started(worker, run, payload, now, mono)
        if payload[2]:  # ok: ``_done``'s first branch, without the copy of the payload's tail
            self.finish_ok(run, payload[5], payload[6], now)  # (the start made ``run.worker`` this worker)
        else:
            self._done(worker, run, payload[2:], now)

    def _started(self, worker: str, run: OpenRun, payload: Any, now: float, mono: float) -> None:
        run.worker, run.start, run.start_mono = worker, payload[1], mono
        des_id, emit = run.des_id, self.outbox.emit
        node = self.graph.nodes.get(des_id)
        if node is not None:
            node.status = "running"
            told = self.told  # the move it tells (``_STARTED_LEAVES``); its DES settled at the batch's end
            said = told.get(des_id, node.state)
            if said != _STARTED_LEAVES:
                emit(ev.DESStateChanged(now, des_id, _STARTED_LEAVES, _STARTED_LEAVES, said, node.targs))
            told[des_id] = _STARTED_IS
            settling = self._settling
            if settling is None:
                self.touched.append(des_id)
            else:
                settling[des_id] = node
        emit(ev.OpStarted(now, run.run_id, des_id, run.op, worker, run.attempt, run.targs))

    def on_lost(self, lost: WorkerLost) -> None:
        """A worker died: its running run failed (or was cancelled or timed out); the rest go back."""
        now = self.clock.time()
        self.outbox.emit(ev.WorkerChanged(now, lost.worker, lost.pid, "dead", lost.reason))
        running_id = lost.running_run_id
        if running_id is not None and running_id in self.open and not self.stopping:
            run = self.open[running_id]
            run.worker = run.worker or lost.worker
            intent = self._cancel_intent.pop(running_id, None) or lost.kill_cause
            duration = self.clock.monotonic() - run.start_mono if run.start_mono else 0.0
            if intent == "timeout":
                stopped = lost.reason.replace("was killed (SIGKILL)", "was stopped")
                message = f"timed out after {self.config.op_timeout:g}s; {stopped}"
            elif intent == "cancel":
                message = "cancelled"
            else:
                message = f"{lost.reason} while running op {run.op}"
            self.finish_failed(run, message, None, duration, cause=intent if intent == "cancel" else None)
        self.give_back(lost.requeue)

    def give_back(self, tasks: list[Task]) -> None:
        """Tasks returned unstarted go to the front of dispatch."""
        for task in tasks:
            run = self.open.get(task.run_id)
            if run is not None:
                run.submitted = False
                self.requeue.append(run)

    # ------------------------------------------------------------ outcomes
    def finish_ok(self, run: OpenRun, result: str | None, duration: float, now: float) -> None:
        des_id = run.des_id
        node = self.graph.nodes.get(des_id)
        self.open.pop(run.run_id, None)
        if node is None:
            # its run's row is closed all the same: a run the run book no longer holds is not open in the file
            # (a start looks for open runs from the oldest one the book held, ``store_schema.OPEN_RUNS``)
            self._write(None, None, (now, run.output_text(), result, run.worker, run.start, run.run_id))
            return
        targs = node.targs if len(node.targs) == 1 else sorted(node.targs)
        made: dict[str, Any] | None = None  # file targets stat-ed: their new states are read from these, not again
        for targ in targs:
            if targ[:1] == "/":
                st = stat_file(targ)
                if st is None:
                    self.finish_failed(run, f"op {run.op} finished but did not create its target file {targ}", None,
                                       duration)
                    return
                if made is None:
                    made = {}
                made[targ] = st
        node.trace = run.dep_versions  # its own dict (``Graph.run_versions`` made it), never changed
        node.status = None
        node.forced = False
        node.failed_state = None
        node.failed_trace = None
        dep_text = run.dep_text
        if dep_text is None:  # a run adopted from the last engine
            dep_text = jmap(run.dep_versions)
        ended = (now, run.output_text() if run.output else "", result, run.worker, run.start, run.run_id)
        rows = self._rows
        if rows is None:  # (trace as text, id): up to date, as ``Store.update_des`` takes it
            self._write(None, (dep_text, des_id), ended)
        else:  # into the batch of reports' rows, as ``_write`` puts them (no call per run)
            rows[2].append(ended)
            rows[1].append((dep_text, des_id))
        if self.attempts:
            self.attempts.pop(des_id, None)
        self.registration.release(des_id)
        told, emit = self.told, self.outbox.emit  # the move it tells (``_FINISHED_LEAVES``)
        said = told.get(des_id, node.state)
        if said != _FINISHED_LEAVES:
            emit(ev.DESStateChanged(now, des_id, _FINISHED_LEAVES, _FINISHED_LEAVES, said, node.targs))
        told[des_id] = _FINISHED_IS
        documents = self.documents
        given: list[tuple[str, int]] = []  # the targets' new versions, told by the run's fact
        for targ in targs:
            if targ[:1] == "/":
                documents.refresh_file(targ, by=des_id, st=made[targ], source=False, into=given)  # type: ignore[index]
                self.graph.drifted.pop(targ, None)
            else:
                documents.bump(targ, by=des_id, source=False, into=given)
        if len(given) == 1:
            ((name, version),) = given
            emit(ev.OpFinished(now, run.run_id, des_id, run.op, run.worker or "", duration, result, (name,),
                               (version,)))
        else:
            emit(ev.OpFinished(now, run.run_id, des_id, run.op, run.worker or "", duration, result,
                               tuple(name for name, _ in given), tuple(version for _, version in given)))
        settling = self._settling
        if made:  # a file target built: dispatch's settle looks at it (``FileChecks.built_targets``)
            self.touched.append(des_id)
            if settling is not None:
                settling.pop(des_id, None)
        elif settling is None:  # settled at the end of the batch of reports, else by dispatch
            self.touched.append(des_id)
        else:
            settling[des_id] = node

    def finish_failed(self, run: OpenRun, error: str, tb: str | None, duration: float,
                      cause: str | None = None) -> None:
        node = self.graph.nodes.get(run.des_id)
        self.open.pop(run.run_id, None)
        now = self.clock.time()
        status = "cancelled" if cause == "cancel" else "failed"
        finished = self._finish_row(run, status, now, error, tb, None)
        if node is None:
            self._write(finished, None)
            return
        node.status = None
        retry_in: float | None = None
        config = self.config
        if status == "failed" and run.attempt <= config.retries:
            retry_in = retry_delay(run.attempt, config.retry_delay, config.retry_max_delay)
            self.attempts[node.id] = run.attempt + 1
            node.status = "retry"
            node.reason = f"retry {run.attempt + 1} of {config.retries + 1} in {retry_in:g}s after: {error}"
            heapq.heappush(self.retries, (self.clock.monotonic() + retry_in, node.id))
            self._write(finished, ("retry", node.trace, node.failed_trace, node.forced, run.attempt + 1, node.id))
        else:
            self.attempts.pop(node.id, None)
            node.failed_state = status  # type: ignore[assignment]
            node.failed_trace = dict(run.dep_versions)
            node.error = error
            node.forced = False
            self._write(finished, (status, node.trace, node.failed_trace, False, node.id))
            if status == "failed":
                self.failures += 1
        if status == "cancelled":
            self.outbox.emit(ev.OpCancelled(now, run.run_id, node.id, run.op, run.worker or ""))
        else:
            self.outbox.emit(ev.OpFailed(now, run.run_id, node.id, run.op, run.worker or "", duration, error, tb or "",
                                         retry_in))
        self.touched.append(node.id)

    def _finish_row(self, run: OpenRun, status: str, end: float, error: str | None, tb: str | None,
                    result: str | None) -> tuple[Any, ...]:
        """The run's row as it ends. Its start and worker are written here, with its end, not when it
        starts: an open run is dispatched again after a crash whether it had started or not, so a row
        per start would say nothing a restart needs."""
        return (status, end, error, tb, run.output_text(), result, run.worker, run.start, run.run_id)

    # ------------------------------------------------------------ retries, timeouts, cancelling
    def due_retries(self, mono: float) -> None:
        """DES whose back-off is over run again (even if their deps are as they were)."""
        while self.retries and self.retries[0][0] <= mono:
            _, des_id = heapq.heappop(self.retries)
            node = self.graph.nodes.get(des_id)
            if node is not None and node.status == "retry":
                node.status = None
                node.forced = True
                self.touched.append(des_id)

    def check_timeouts(self) -> None:
        """Runs past ``op_timeout`` are stopped (the executor reports them lost, cause "timeout")."""
        limit = self.config.op_timeout
        executor = self.executor
        if not limit or not self.open or executor is None:
            return
        now = self.clock.time()
        for run_id, started in executor.running().items():
            if now - started > limit and run_id not in self._cancel_intent and run_id in self.open:
                self._cancel_intent[run_id] = "timeout"
                executor.cancel(run_id, "timeout")

    def cancel(self, run_id: int) -> None:
        """Cancel a queued or running run."""
        run = self.open.get(run_id)
        if run is None:
            self.outbox.notice("error", f"cancel: run {run_id} is not queued or running")
            return
        self._cancel_intent[run_id] = "cancel"
        if run.submitted and self.executor is not None:
            self.executor.cancel(run_id, "cancel")
        else:
            self.finish_failed(run, "cancelled before it started", None, 0.0, cause="cancel")

    # ------------------------------------------------------------ start and stop
    def reconcile(self, executor: Executor, recipe_path: str) -> None:
        """Runs the store still has open from the last engine: an executor that runs apart from the
        orchestrator (a cluster) may still hold them (they are awaited, or their results collected);
        the others were interrupted and are dispatched again."""
        open_runs = self.store.open_runs_full()
        if not open_runs:
            return
        adopted: set[int] = set()
        reconcile: Callable[[list[Task]], list[int]] | None = getattr(executor, "reconcile", None)
        tasks: dict[int, Task] = {}
        if reconcile is not None:
            for run_id, des_id, attempt, _ in open_runs:
                node = self.graph.node(des_id)
                ops = self.registration.load_ops(des_id) if node is not None else None
                if node is None or ops is None:
                    continue
                tasks[run_id] = Task(run_id, des_id, attempt, recipe_path, ops, frozenset(node.deps),
                                     frozenset(node.targs))
            adopted = set(reconcile(list(tasks.values())))
        for run_id, des_id, attempt, dep_versions in open_runs:
            if run_id in adopted:
                task = tasks[run_id]
                self.open[run_id] = OpenRun(run_id, des_id, attempt, task, dep_versions, task.op_label, task.targs)
                node = self.graph.node(des_id)
                if node is not None:
                    node.status = "running"
        lost = [rid for rid, *_ in open_runs if rid not in adopted]
        if lost:
            self.store.finish_runs([("interrupted", self.clock.time(), "the engine stopped while this run was open; "
                                     "it is dispatched again", None, None, None, None, None, rid) for rid in lost])
            self.outbox.notice("warning", f"{len(lost)} run(s) were interrupted by the last stop; running them again")
        if adopted:
            self.outbox.notice("info", f"{len(adopted)} run(s) from the last engine are still held by the executor; "
                                       "awaiting them")

    def interrupt_open(self, detached: set[int]) -> int:
        """At the stop: runs still open (other than those left running apart) are recorded interrupted, to run
        again at the next start. Returns how many."""
        open_ids = [rid for rid in self.open if rid not in detached]
        if open_ids:
            self.store.finish_runs([("interrupted", self.clock.time(), "the engine stopped before this run "
                                     "finished; it runs again at the next start", None,
                                     self.open[r].output_text(), None, self.open[r].worker, self.open[r].start, r)
                                    for r in open_ids])
        return len(open_ids)

    def running_count(self) -> int:
        return sum(1 for r in self.open.values() if r.start is not None)

    def any_running(self) -> bool:
        return any(r.start is not None for r in self.open.values())
