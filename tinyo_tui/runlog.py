"""Provides RunLog: the recent runs the console keeps for worker details (older ones are in the store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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
