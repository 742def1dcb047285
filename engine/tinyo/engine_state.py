"""Provides the engine's query results (read-only snapshots) and its small bookkeeping records."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .worker import Task


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters for the console header and ``tinyo status``."""

    state: str
    started_at: float
    uptime: float
    events_total: int
    events_per_s: float
    queued: int
    running: int
    failed: int
    buffered: int
    des_total: int
    docs_total: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One recorded run of a DES."""

    run_id: int
    attempt: int
    worker: str | None
    start: float | None
    end: float | None
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class DESDetails:
    """Everything the details screen shows about a DES."""

    des_id: str
    deps: frozenset[str]
    targs: frozenset[str]
    ops: list[tuple[str, dict[str, Any]]]
    state: str
    reason: str
    generator: str
    event: str
    runs: list[RunInfo]
    last_traceback: str | None
    output: list[str]


@dataclass(frozen=True, slots=True)
class DocInfo:
    """A document, its state (that of the DES producing it, or source/missing) and who reads it."""

    name: str
    version: int | None
    producer: str | None
    state: str
    detail: str = ""
    """Why, when the state is waiting, stale or failed."""
    readers: tuple[str, ...] = ()
    """The first DES that read it (in id order)."""
    reader_count: int = 0


@dataclass(frozen=True)
class DESInfo:
    """What the console shows for a DES in the documents tree."""

    des_id: str
    deps: tuple[str, ...]
    targs: tuple[str, ...]
    ops: tuple[str, ...]
    generator: str
    event: str
    state: str
    reason: str
    error: str = ""
    run_id: int | None = None
    worker: str | None = None


OUTPUT_KEPT = 200
"""Output lines of an open run kept in memory (and stored with its outcome)."""


@dataclass(slots=True, eq=False)
class OpenRun:
    """A run that is queued or running (engine-thread bookkeeping)."""

    run_id: int
    des_id: str
    attempt: int
    task: Task
    dep_versions: dict[str, int]
    op: str
    targs: frozenset[str]
    worker: str | None = None
    start: float | None = None
    start_mono: float | None = None
    submitted: bool = True
    output: deque[str] | None = None
    """Its last OUTPUT_KEPT lines of output (made at the first line: most runs print nothing)."""
    dep_text: str | None = None
    """``dep_versions`` as its run's row holds them (``store_rows.jmap``): its DES's trace, if it ends ok."""

    def add_output(self, line: str) -> None:
        if self.output is None:
            self.output = deque(maxlen=OUTPUT_KEPT)
        self.output.append(line)

    def output_text(self) -> str:
        return "\n".join(self.output) if self.output else ""


class RateMeter:
    """Events per second over the last few seconds, in bounded memory (one bucket per second)."""

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque(maxlen=window + 1)

    def add(self, now: float, count: int) -> None:
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, float(count)])

    def rate(self, now: float) -> float:
        horizon = int(now) - self.window
        total = sum(c for s, c in self._buckets if s > horizon)
        return total / self.window
