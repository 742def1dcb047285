"""Provides ``seed``: the console's start from the state file.

A console that opens an existing state file starts where the engine is, not empty: the last events
(with when they happened and how many DES each made), the last runs and the lines they printed come
from ``Engine.history()`` (bounded), and the header's totals from ``Engine.stats()``. Rows from the
state file go before anything this session already showed, with negative sequence numbers, so
every pane's order (and its cursor) stays by sequence; a row this session already has is not added twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runlog import RunRecord
from .state import Changes, ConsoleState, EventRow, OutputRow

if TYPE_CHECKING:
    from tinyo.history import History


def seed(state: ConsoleState, history: History, stats: Any, ch: Changes) -> None:
    """Put the recent past before what this session already shows (see the module doc)."""
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
