"""Provides ``WorkTracker``, the top layer of the console's state: runs, workers, flow lanes and the engine.

It follows ops as they start and end (the workers table, the recent runs, the run history), the
lanes of recent flow runs, and the engine's own state; when the engine stops or goes away it marks
what was running as interrupted (``lose_running``). It builds on ``DocumentCache`` because a run's
end changes its DES and, through it, its documents.
"""

from __future__ import annotations

from collections import OrderedDict

from tinyo import events as ev

from .run_history import RunHistory
from .runlog import RunLog
from .state_documents import DocumentCache
from .state_rows import MAX_CACHED, MAX_EVENT_ROWS, MAX_FLOW_RUNS, MAX_OUTPUT_ROWS, Changes, OutputRow, WorkerRow


class WorkTracker(DocumentCache):
    """Workers, runs, flow lanes and the engine's state. UI thread only."""

    def __init__(self, *, max_events: int = MAX_EVENT_ROWS, max_output: int = MAX_OUTPUT_ROWS,
                 max_cached: int = MAX_CACHED) -> None:
        super().__init__(max_events=max_events, max_output=max_output, max_cached=max_cached)
        self.workers: dict[str, WorkerRow] = {}
        self.flows: OrderedDict[str, dict[tuple[str, int], ev.FlowMetrics]] = OrderedDict()
        self.engine_state: str = "starting"
        self.engine_detail: str = ""
        self.buffered = 0
        self.started_at: float | None = None
        self.history = RunHistory()
        """Runs per worker over the last minutes, rates per second, durations per op (bounded)."""
        self.runs = RunLog()
        """The recent runs (worker details list them)."""
        self.stop_deadline: float | None = None
        """While the console stops the engine: when running ops stop being waited for (clock time)."""
        self.unsure_runs: dict[int, str] = {}
        """Runs (id -> DES) shown interrupted because their engine went away, not because it said so:
        asked about again when an engine is attached (bounded: the runs running at one time)."""

    # ------------------------------------------------------------------ handlers
    def _on_op_started(self, e: ev.OpStarted, ch: Changes) -> None:
        before, after, reason = ev.RUN_MOVES[ev.OpStarted]
        self.move_des(e.des_id, after, reason, before, e.targs, e.ts, ch)
        node = self.des.get(e.des_id)
        if node is not None:
            node.runs += 1
            node.run_id, node.worker, node.started = e.run_id, e.worker, e.ts
            ch.changed_des.add(e.des_id)
        row = self.workers.get(e.worker) or WorkerRow(e.worker)
        row.state, row.run_id, row.des_id, row.op = "busy", e.run_id, e.des_id, e.op
        row.targs, row.since = e.targs, e.ts
        self.workers[e.worker] = row
        self.runs.started(e.run_id, e.des_id, e.op, e.worker, e.ts)
        ch.workers = True

    def _finish_worker(self, worker: str, run_id: int, ts: float, ch: Changes) -> frozenset[str]:
        """The run's worker is idle; returns the run's targets as its start said (empty if not seen)."""
        row = self.workers.get(worker)
        if row is None or row.run_id != run_id:
            return frozenset()
        targs = row.targs
        row.state, row.run_id, row.des_id, row.op = "idle", None, None, ""
        row.targs, row.since = frozenset(), ts
        ch.workers = True
        return targs

    def _on_op_finished(self, e: ev.OpFinished, ch: Changes) -> None:
        self.runs.ended(e.run_id, "ok", e.ts)
        targs = self._finish_worker(e.worker, e.run_id, e.ts, ch)
        before, after, reason = ev.RUN_MOVES[ev.OpFinished]
        self.move_des(e.des_id, after, reason, before, targs, e.ts, ch)
        for name, version in zip(e.made, e.versions):  # its targets' new versions, told by it
            self.put_version(name, version, e.des_id, ch)

    def _on_op_failed(self, e: ev.OpFailed, ch: Changes) -> None:
        node = self.des.get(e.des_id)
        if node is not None:
            node.error = e.error
            ch.changed_des.add(e.des_id)
        retry = f" (retry in {e.retry_in:.0f}s)" if e.retry_in is not None else ""
        self._append_output(OutputRow(next(self._seq), e.ts, "error", f"failed: {e.error}{retry}",
                                      e.op, e.worker, e.des_id, e.run_id))
        ch.new_output += 1
        self.runs.ended(e.run_id, "failed", e.ts, e.error)
        self._finish_worker(e.worker, e.run_id, e.ts, ch)

    def _on_op_cancelled(self, e: ev.OpCancelled, ch: Changes) -> None:
        self._append_output(OutputRow(next(self._seq), e.ts, "info", "cancelled", e.op, e.worker,
                                      e.des_id, e.run_id))
        ch.new_output += 1
        self.runs.ended(e.run_id, "cancelled", e.ts)
        self._finish_worker(e.worker, e.run_id, e.ts, ch)

    def _on_worker(self, e: ev.WorkerChanged, ch: Changes) -> None:
        row = self.workers.get(e.worker) or WorkerRow(e.worker)
        row.pid = e.pid if e.pid is not None else row.pid
        row.detail = e.detail
        if e.state != "busy" or row.run_id is not None:
            row.state = e.state
        if e.state in ("idle", "dead", "stopped"):
            row.run_id, row.des_id, row.op, row.targs = None, None, "", frozenset()
            row.since = e.ts
        self.workers[e.worker] = row
        ch.workers = True

    def _on_flow(self, e: ev.FlowMetrics, ch: Changes) -> None:
        lanes = self.flows.get(e.flow_run)
        if lanes is None:
            lanes = self.flows[e.flow_run] = {}
            while len(self.flows) > MAX_FLOW_RUNS:
                self.flows.popitem(last=False)
        else:
            self.flows.move_to_end(e.flow_run)
        lanes[(e.step, e.instance)] = e
        ch.lanes = True

    def _on_engine(self, e: ev.EngineState, ch: Changes) -> None:
        if e.state == "running" and self.started_at is None:
            self.started_at = e.ts
        self.engine_state, self.engine_detail, self.buffered = e.state, e.detail, e.buffered
        ch.header = True
        if e.state == "stopped":
            self.lose_running(e.ts, ch)
            self.forget_line_numbers()

    def lose_running(self, ts: float, ch: Changes) -> None:
        """The engine stopped or died: nothing it ran runs any more. What was last known running shows
        interrupted (its worker: unknown) until an engine says otherwise (a re-attach asks it)."""
        for row in self.workers.values():
            if row.state in ("busy", "starting"):
                row.detail = f"the engine went away while it ran {row.op}" if row.op else "the engine went away"
                row.state, row.run_id, row.des_id, row.op, row.targs, row.since = \
                    "unknown", None, None, "", frozenset(), ts
                ch.workers = True
        for record in self.runs:
            if record.status == "running":
                record.status, record.end = "interrupted", ts
                if len(self.unsure_runs) < MAX_CACHED:
                    self.unsure_runs[record.run_id] = record.des_id
        for run in list(self.history.running()):
            self.history.close(run.run_id, "interrupted", ts, "the engine went away while it ran")
            ch.runs = True
        for node in self.des.values():
            if node.state == "running":
                node.state, node.reason = "interrupted", "the engine went away while it ran"
                ch.changed_des.add(node.des_id)
                for name in node.targs:
                    doc = self.docs.get(name)
                    if doc is not None:
                        self._set_doc_state(doc, "interrupted", node.reason, ch)
        if self.des_states["running"]:
            self.des_states["running"] = 0
            ch.header = True
