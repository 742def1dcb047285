"""Provides ``read_history`` and ``des_of_event``: the recent past from the state file (events, runs and their output), bounded.

A console that starts on an existing state file shows it from there: the last events with what the
generators made of them, the last runs (op, worker, outcome) and the last lines they printed. Reads
only; each part is one query with a LIMIT on an indexed order, so the cost does not grow with history.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .names import to_sql
from .store import Store

RECENT = 1000
"""Events, runs and output lines read by default."""

_DES_COUNT = re.compile(r"(\d+) DES")


@dataclass(frozen=True, slots=True)
class PastEvent:
    """An event as recorded: when it happened, where from, and how many DES it made (None: not yet processed)."""

    event_id: int
    ts: float
    source: str
    name: str
    status: str
    des_count: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class PastRun:
    """A run as recorded, with its op label and its printed lines (``[stderr] `` marks standard error)."""

    run_id: int
    des_id: str
    op: str
    worker: str
    start: float | None
    end: float | None
    status: str
    error: str
    output: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class History:
    """The recent past, oldest first."""

    events: list[PastEvent]
    runs: list[PastRun]


def read_history(store: Store, events: int = RECENT, runs: int = RECENT, lines: int = RECENT) -> History:
    """The last ``events`` events and ``runs`` runs, with at most ``lines`` output lines in all (the newest)."""
    store.flush()
    conn = store.conn
    past_events = [
        PastEvent(eid, ts, source, name, status, _des_count(status, detail), detail or "")
        for eid, ts, source, name, status, detail in store.recent_events(max(0, events))
    ]
    rows = conn.execute(
        "SELECT r.id, r.des_id, d.ops_desc, r.worker, r.start, r.end, r.status, r.error, r.output "
        "FROM runs r LEFT JOIN des d ON d.id = r.des_id ORDER BY r.id DESC LIMIT ?", (max(0, runs),)
    ).fetchall()
    past_runs: list[PastRun] = []
    budget = max(0, lines)
    for run_id, des_id, ops_desc, worker, start, end, status, error, output in rows:  # newest first
        printed: tuple[str, ...] = ()
        if output and budget:
            all_lines = output.splitlines()
            printed = tuple(all_lines[-budget:])
            budget -= len(printed)
        past_runs.append(PastRun(run_id, des_id, _op_label(ops_desc), worker or "", start, end, status,
                                 error or "", printed))
    past_runs.reverse()
    return History(past_events, past_runs)


def des_of_event(store: Store, event: str, limit: int = 100) -> list[str]:
    """The ids of the DES the generators made of ``event`` (oldest first, at most ``limit``).

    A scan of the DES table: it answers a key press, never a repaint."""
    store.flush()
    rows = store.conn.execute("SELECT id FROM des WHERE event = CAST(? AS TEXT) ORDER BY n LIMIT ?",
                              (to_sql(event), max(0, limit)))
    return [row[0] for row in rows.fetchall()]


def _des_count(status: str, detail: str | None) -> int | None:
    if status == "new":
        return None
    match = _DES_COUNT.match(detail or "")
    return int(match.group(1)) if match else 0


def _op_label(ops_desc: str | None) -> str:
    """The op label the engine shows for a DES (``a+b``), from the stored op description."""
    if not ops_desc:
        return ""
    try:
        names = json.loads(ops_desc)  # the store keeps it as a JSON list of op names
    except ValueError:
        return ops_desc
    return "+".join(str(name) for name in names) if isinstance(names, list) else str(names)
