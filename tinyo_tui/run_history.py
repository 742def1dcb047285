"""Provides RunHistory: the console's bounded memory of op runs and per-second rates; no Textual.

It is fed the same bus facts as the rest of the console model (``OpStarted``, ``OpFinished``,
``OpFailed``, ``OpCancelled``, ``EventReceived``), on the UI thread, and answers three questions:

- what each worker did second by second over the last minutes (the run timeline draws it);
- the most recent runs, one by one (the timeline's cursor selects them; ``enter`` opens their DES);
- events/s and runs/s per second (the header's sparklines) and durations per op (p50/p95).

Everything is bounded whatever the rate: per-second activity is kept for ``MAX_WINDOW`` seconds per
worker, at most ``MAX_RUNS`` runs are kept as records, ``MAX_DURATIONS`` durations per op name and
``MAX_OPS`` op names. Under a 2,000 runs/s flood the timeline still shows the whole window, because
it draws from the per-second activity, not from the run records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import ceil, floor
from typing import Any, Literal

from tinyo import events as ev

RunStatus = Literal["running", "ok", "failed", "cancelled", "interrupted"]

MAX_RUNS = 1000
"""Run records kept (the newest); older runs are only in the store."""
MAX_WINDOW = 900
"""Seconds of per-worker activity and of rates kept (the widest timeline window)."""
MAX_WORKERS = 64
"""Workers whose activity is kept (the least recently active ones are forgotten first)."""
MAX_DURATIONS = 500
"""Durations kept per op name (the newest), for p50/p95."""
MAX_OPS = 200
"""Op names whose durations are kept (the least recently run are forgotten first)."""
MAX_OPEN = 10_000
"""Runs started and not yet ended that are tracked (a lost end event cannot grow this)."""
EXACT_RUNS = 200
"""A worker's newest runs drawn from their records; older ones from the per-second activity."""
SLACK = 64
"""Seconds past ``MAX_WINDOW`` kept before old ones are pruned (pruning in bulk keeps adding cheap)."""

_SEVERITY: dict[str, int] = {"ok": 1, "cancelled": 2, "interrupted": 3, "running": 4, "failed": 5}
"""Which status a timeline cell shows when several runs share it: the most alarming one."""


@dataclass(slots=True)
class RunRecord:
    """One op run, as the console saw it."""

    run_id: int
    des_id: str
    op: str
    worker: str
    start: float
    end: float | None = None
    status: RunStatus = "running"
    error: str = ""

    def duration(self, now: float) -> float:
        """Seconds the run took (or has taken so far)."""
        return max(0.0, (self.end if self.end is not None else now) - self.start)


Second = list
"""One worker's activity in one wall-clock second: ``[busy, severity]``, the seconds of it spent
running ops and the ``_SEVERITY`` of the most alarming run in it (a list, not an object: a flood
touches one per run, and this is the console's hottest loop)."""
_STATUS_OF = {rank: status for status, rank in _SEVERITY.items()}


@dataclass(slots=True)
class Cell:
    """What one timeline cell (several seconds) shows for one worker."""

    busy: float = 0.0
    """Fraction of the cell's time spent running ops."""
    status: RunStatus | None = None
    """The most alarming status of the runs in the cell (``running`` for one still running)."""


@dataclass
class _Counts:
    """Per-second counters for a rate, kept for ``MAX_WINDOW`` seconds (plus ``SLACK``)."""

    seconds: dict[int, int] = field(default_factory=dict)

    def add(self, ts: float) -> None:
        seconds = self.seconds
        second = int(floor(ts))
        seconds[second] = seconds.get(second, 0) + 1
        if len(seconds) > MAX_WINDOW + SLACK:
            _prune(seconds)

    def series(self, now: float, length: int) -> list[int]:
        """Counts of the ``length`` whole seconds before ``now``'s second (oldest first)."""
        last = int(floor(now)) - 1
        return [self.seconds.get(s, 0) for s in range(last - length + 1, last + 1)]


_ENDS: dict[type, RunStatus] = {ev.OpFinished: "ok", ev.OpFailed: "failed", ev.OpCancelled: "cancelled"}


class RunHistory:
    """The console's memory of runs. Call ``apply`` on the UI thread only."""

    def __init__(self, *, max_runs: int = MAX_RUNS) -> None:
        self.runs: deque[RunRecord] = deque(maxlen=max_runs)
        """The newest runs, oldest first (running ones included)."""
        self._open: dict[int, RunRecord] = {}
        self._activity: dict[str, dict[int, Second]] = {}
        self._durations: dict[str, deque[float]] = {}
        self._op_used: dict[str, float] = {}
        """When each op last ended (the least recently used are forgotten past ``MAX_OPS``)."""
        self.events = _Counts()
        """Events received per second."""
        self.finished = _Counts()
        """Runs ended (ok, failed or cancelled) per second."""
        self._by_worker: dict[str, list[RunRecord]] | None = None
        """The kept runs grouped by worker, rebuilt on demand after runs moved."""

    # ------------------------------------------------------------------ feeding
    def apply(self, batch: Iterable[ev.BusEvent]) -> bool:
        """Fold the facts this history cares about; True when a run started or ended.

        One tight loop (a flood sends thousands of runs a second through it); the bounds are
        enforced once per batch."""
        moved = False
        runs, open_, activity = self.runs, self._open, self._activity
        durations, op_used = self._durations, self._op_used
        received, finished = self.events.seconds, self.finished.seconds
        ends, severity = _ENDS, _SEVERITY
        for event in batch:
            kind = type(event)
            if kind is ev.EventReceived:
                second = int(event.ts)
                received[second] = received.get(second, 0) + 1
            elif kind is ev.OpStarted:
                record = RunRecord(event.run_id, event.des_id, event.op, event.worker, event.ts)  # type: ignore[attr-defined]
                runs.append(record)
                open_[record.run_id] = record
                if record.worker not in activity:
                    activity[record.worker] = {}
                moved = True
            elif kind in ends:
                status = ends[kind]
                end = event.ts
                record = open_.pop(event.run_id, None)  # type: ignore[attr-defined]
                if record is None:  # started before the console watched: rebuilt from its duration
                    took = getattr(event, "duration", 0.0) or 0.0
                    record = RunRecord(event.run_id, event.des_id, event.op, event.worker, end - took)  # type: ignore[attr-defined]
                    runs.append(record)
                record.end, record.status = end, status
                if status == "failed":
                    record.error = event.error  # type: ignore[attr-defined]
                elif status == "cancelled":
                    record.error = "cancelled"
                second = int(end)
                finished[second] = finished.get(second, 0) + 1
                seconds = activity.get(record.worker)
                if seconds is None:
                    seconds = activity[record.worker] = {}
                start, rank = record.start, severity[status]
                first = int(start)
                if end < first + 1:  # the usual run: within one second
                    entry = seconds.get(first)
                    if entry is None:
                        seconds[first] = [end - start, rank]
                    else:
                        entry[0] += end - start
                        if rank > entry[1]:
                            entry[1] = rank
                else:
                    _mark(seconds, start, end, rank)
                if status != "cancelled":
                    kept = durations.get(record.op)
                    if kept is None:
                        kept = durations[record.op] = deque(maxlen=MAX_DURATIONS)
                    kept.append(end - start if end > start else 0.0)
                    op_used[record.op] = end
                moved = True
        if moved:
            self._by_worker = None
            self._bound()
        for counts in (received, finished):
            if len(counts) > MAX_WINDOW + SLACK:
                _prune(counts)
        return moved

    def close(self, run_id: int, status: RunStatus, end: float, error: str = "") -> bool:
        """End a run the console saw start but not end: its engine went away (``interrupted``), or the
        fact saying how it ended was missed and the engine was asked. False when it is not open."""
        record = self._open.pop(run_id, None)
        if record is None:
            return False
        end = max(end, record.start)
        record.end, record.status, record.error = end, status, error
        seconds = self._activity.setdefault(record.worker, {})
        _mark(seconds, record.start, max(end, record.start + 1e-6), _SEVERITY[status])
        self._by_worker = None
        return True

    def _bound(self) -> None:
        """Keep every buffer within its bound (after a batch)."""
        open_ = self._open
        if len(open_) > MAX_OPEN:
            for run_id in list(open_)[: len(open_) - MAX_OPEN]:
                del open_[run_id]
        activity = self._activity
        for seconds in activity.values():
            if len(seconds) > MAX_WINDOW + SLACK:
                _prune(seconds)
        if len(activity) > MAX_WORKERS:
            recent = sorted(activity, key=lambda name: max(activity[name], default=-1), reverse=True)
            for name in recent[MAX_WORKERS:]:
                del activity[name]
        if len(self._durations) > MAX_OPS:
            used = self._op_used
            for op in sorted(used, key=used.__getitem__)[: len(used) - MAX_OPS]:
                del used[op]
                self._durations.pop(op, None)

    # ------------------------------------------------------------------ queries
    @property
    def workers(self) -> list[str]:
        """Workers that ran something, by name."""
        return sorted(self._activity)

    def running(self) -> Iterator[RunRecord]:
        """Runs started and not ended."""
        return iter(self._open.values())

    def cells(self, worker: str, now: float, window: float, width: int) -> list[Cell]:
        """``worker``'s activity over the ``window`` seconds before ``now`` in ``width`` cells.

        Where the worker's newest ``EXACT_RUNS`` kept records reach, the cells come from the
        records, exactly; before that, from the per-second activity.
        """
        if width <= 0:
            return []
        step = window / width
        start = now - window
        cells = [Cell() for _ in range(width)]
        # The newest EXACT_RUNS runs are drawn exactly (a flood keeps the per-render cost flat).
        records = self.worker_runs(worker)[-EXACT_RUNS:]
        exact_from = records[0].start if records else now
        seconds = self._activity.get(worker)
        if seconds:
            for index, cell in enumerate(cells):
                lo, hi = start + index * step, start + (index + 1) * step
                if hi > exact_from:
                    break
                busy = 0.0
                for second in range(int(floor(lo)), int(ceil(hi))):
                    entry = seconds.get(second)
                    if entry is None:
                        continue
                    # the busy time of the second, pro rata to the part of it inside the cell
                    busy += entry[0] * max(0.0, min(hi, second + 1) - max(lo, second))
                    _worst(cell, _STATUS_OF[entry[1]])
                cell.busy = busy / step
        severity = _SEVERITY
        for record in records:
            end = record.end if record.end is not None else now
            if end < start:
                continue
            status, rank = record.status, severity[record.status]
            first = max(0, int((record.start - start) // step))
            for index in range(first, min(width - 1, int((end - start) // step)) + 1):
                lo = start + index * step
                overlap = min(lo + step, end) - max(lo, record.start)
                if overlap > 0 or (end == record.start and lo <= end):
                    cell = cells[index]
                    if overlap > 0:
                        cell.busy += overlap / step
                    if cell.status is None or severity[cell.status] < rank:
                        cell.status = status
        for record in self._open.values():  # a run started before the oldest kept record
            if record.worker == worker and record.start < exact_from:
                for index in range(max(0, int((record.start - start) // step)), width):
                    _worst(cells[index], "running")
                    cells[index].busy = 1.0
        for cell in cells:
            cell.busy = min(1.0, cell.busy)
        return cells

    def columns(self, record: RunRecord, now: float, window: float, width: int) -> range:
        """The cells a run covers in a timeline of ``width`` cells ending at ``now`` (maybe empty)."""
        step = window / width
        start = now - window
        first = int((record.start - start) // step)
        last = int(((record.end if record.end is not None else now) - start) // step)
        first, last = max(0, first), min(width - 1, last)
        return range(first, last + 1) if first <= last else range(0)

    def worker_runs(self, worker: str) -> list[RunRecord]:
        """The kept runs of one worker, oldest first."""
        if self._by_worker is None:
            grouped: dict[str, list[RunRecord]] = {}
            for record in self.runs:
                grouped.setdefault(record.worker, []).append(record)
            self._by_worker = grouped
        return self._by_worker.get(worker, [])

    def find(self, run_id: int) -> RunRecord | None:
        """A kept run by id."""
        for record in reversed(self.runs):
            if record.run_id == run_id:
                return record
        return None

    def percentiles(self, op: str) -> tuple[float, float, int] | None:
        """(p50, p95, how many runs) of ``op``'s recent durations, or None when none ended yet."""
        kept = self._durations.get(op)
        if not kept:
            return None
        ordered = sorted(kept)
        return _rank(ordered, 0.50), _rank(ordered, 0.95), len(ordered)


def _prune(seconds: dict[int, Any]) -> None:
    """Drop the seconds older than ``MAX_WINDOW`` before the newest (all at once: cheap per add)."""
    horizon = max(seconds) - MAX_WINDOW
    for second in [second for second in seconds if second < horizon]:
        del seconds[second]


def _mark(seconds: dict[int, Second], start: float, end: float, rank: int) -> None:
    """Add a run longer than a second to its worker's seconds (only the last ``MAX_WINDOW``)."""
    start = max(start, end - MAX_WINDOW)
    for second in range(int(floor(start)), int(ceil(end))):
        entry = seconds.get(second)
        busy = min(end, second + 1) - max(start, second)
        if entry is None:
            seconds[second] = [busy, rank]
        else:
            entry[0] += busy
            if rank > entry[1]:
                entry[1] = rank


def _worst(cell: Cell, status: RunStatus) -> None:
    if cell.status is None or _SEVERITY[status] > _SEVERITY[cell.status]:
        cell.status = status


def _rank(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of a sorted, non-empty list."""
    index = max(0, ceil(fraction * len(ordered)) - 1)
    return ordered[index]


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(series: list[int]) -> str:
    """One cell per value, scaled to the largest; zero is a blank-looking low bar."""
    top = max(series, default=0)
    if top <= 0:
        return SPARK[0] * len(series)
    return "".join(SPARK[0] if value <= 0 else SPARK[max(1, min(7, round(7 * value / top)))]
                   for value in series)
