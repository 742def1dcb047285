"""Provides RunLog (the recent runs, for worker details) and ``seed``: the console's start from the state file.

A console that opens an existing state file starts where the engine is, not empty: the last events
(with when they happened and how many DES each made), the last runs and the lines they printed come
from ``Engine.history()`` (bounded), and the header's totals from ``Engine.stats()``. Rows from the
state file go before anything this session already showed, with negative sequence numbers, so
every pane's order (and its cursor) stays by sequence; a row this session already has is not added twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinyo.history import History

    from .state import Changes, ConsoleState, EventRow, OutputRow

MAX_RUNS = 1000
"""Runs kept in memory (worker details list a worker's among them); older ones are in the store."""


@dataclass(slots=True)
class RunRecord:
    """One run: what ran where, when, and how it ended (the store's status: ``running``, ``ok``,
    ``failed``, ``cancelled``, ``interrupted``)."""

    run_id: int
    des_id: str
    op: str
    worker: str
    start: float | None
    end: float | None = None
    status: str = "running"
    error: str = ""


class RunLog:
    """The newest ``MAX_RUNS`` runs, by run id (UI thread only)."""

    def __init__(self, limit: int = MAX_RUNS) -> None:
        self._runs: dict[int, RunRecord] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(sorted(self._runs.values(), key=lambda run: run.run_id))

    def get(self, run_id: int) -> RunRecord | None:
        """The run with this id, if still kept."""
        return self._runs.get(run_id)

    def of_worker(self, worker: str, limit: int = 50) -> list[RunRecord]:
        """The worker's newest ``limit`` runs, oldest first."""
        mine = [run for run in self if run.worker == worker]
        return mine[-limit:]

    def started(self, run_id: int, des_id: str, op: str, worker: str, ts: float) -> None:
        """A run started (or started again on another worker)."""
        run = self._runs.get(run_id)
        if run is None:
            self.add(RunRecord(run_id, des_id, op, worker, ts))
        else:
            run.worker, run.start, run.status = worker, ts, "running"

    def ended(self, run_id: int, status: str, ts: float, error: str = "") -> None:
        """A run finished (``ok``), failed or was cancelled."""
        run = self._runs.get(run_id)
        if run is not None:
            run.status, run.end, run.error = status, ts, error

    def add(self, run: RunRecord) -> None:
        """Keep ``run`` (dropping the oldest kept beyond the limit)."""
        self._runs[run.run_id] = run
        while len(self._runs) > self._limit:
            del self._runs[next(iter(self._runs))]  # the first kept (runs arrive in id order)


def seed(state: ConsoleState, history: History, stats: Any, ch: Changes) -> None:
    """Put the recent past before what this session already shows (see the module doc)."""
    from .state import EventRow, OutputRow  # noqa: PLC0415 (state imports this module)

    known_events = {row.event_id for row in state.events if row.event_id is not None}
    events: list[EventRow] = []
    for past in history.events:
        if past.event_id in known_events:
            continue
        kind = "timer" if past.source == "timer" else "event"
        events.append(EventRow(0, past.ts, kind, past.source, past.name, event_id=past.event_id,  # type: ignore[arg-type]
                               des_count=past.des_count))
    known_runs = {row.run_id for row in state.output if row.run_id is not None}
    output: list[OutputRow] = []
    for run in history.runs:
        if state.runs.get(run.run_id) is None:
            state.runs.add(RunRecord(run.run_id, run.des_id, run.op, run.worker, run.start, run.end,
                                      run.status, run.error))
        if run.run_id in known_runs:
            continue
        ts = run.end or run.start or 0.0
        for line in run.output:
            stream = "stderr" if line.startswith("[stderr] ") else "stdout"
            output.append(OutputRow(0, ts, stream, line.removeprefix("[stderr] "), run.op, run.worker,  # type: ignore[arg-type]
                                    run.des_id, run.run_id))
        if run.status == "failed" and run.error:
            output.append(OutputRow(0, ts, "error", f"failed: {run.error}", run.op, run.worker, run.des_id,
                                    run.run_id))
    state.prepend(events, output)
    ch.reloaded = ch.header = ch.workers = True
    if stats is not None:
        state.events_total = max(state.events_total, stats.events_total)
        state.des_states["failed"] = max(state.des_states["failed"], stats.failed)
