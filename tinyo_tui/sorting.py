"""Provides the sort orders of the Workers pane and of a document group's members (``s`` cycles them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from .run_history import RunHistory
from .state import DocNode, WorkerRow

SortMode = Literal["name", "state", "duration"]
SORT_MODES: tuple[SortMode, ...] = ("name", "state", "duration")
"""In the order ``s`` cycles through them."""

WORKER_STATE_ORDER = ("busy", "dead", "idle", "stopped")
"""Sorting by state puts busy workers first, then dead ones (they need attention)."""
DOC_STATE_ORDER = ("failed", "running", "queued", "waiting", "stale", "cancelled", "never built",
                   "missing", "up to date", "source")
"""Documents by state: failures first, then work in progress (also the order of a group's counts)."""


def next_mode(mode: SortMode) -> SortMode:
    """The sort order after ``mode``."""
    return SORT_MODES[(SORT_MODES.index(mode) + 1) % len(SORT_MODES)]


def _rank(order: tuple[str, ...], state: str) -> int:
    return order.index(state) if state in order else len(order)


def worker_key(mode: SortMode, now: float) -> Callable[[WorkerRow], tuple[object, ...]]:
    """Sort key of a worker row: by name; by state (busy first); by duration (longest busy first)."""
    if mode == "state":
        return lambda row: (_rank(WORKER_STATE_ORDER, row.state), row.name)
    if mode == "duration":
        def busy_for(row: WorkerRow) -> tuple[object, ...]:
            took = now - row.since if row.state == "busy" and row.since is not None else -1.0
            return (-took, row.name)
        return busy_for
    return lambda row: (row.name,)


def doc_key(mode: SortMode, history: RunHistory) -> Callable[[DocNode], tuple[object, ...]]:
    """Sort key of a document: by name; by state (failures first); by how long its producer's last run
    took (longest first; documents with no run in the console's memory last)."""
    if mode == "state":
        return lambda doc: (_rank(DOC_STATE_ORDER, doc.state), doc.name)
    if mode == "duration":
        took: dict[str, float] = {}
        for record in history.runs:
            if record.end is not None:
                took[record.des_id] = record.end - record.start
        return lambda doc: (-took.get(doc.producer or "", -1.0), doc.name)
    return lambda doc: (doc.name,)
