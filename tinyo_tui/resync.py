"""Provides the console's resynchronisation: what the panes show, asked of the engine again.

Facts can be lost on their way to the console: an attached console that read too slowly is told the
engine's facts it missed (a ``FactsMissed`` on its bus, where the gap is), and the console's own
bounded buffer drops the oldest when the screen falls far behind. After a gap, or after re-attaching
to a restarted engine, the console asks the engine for what the facts would have said: the group
counts, the documents and DES it has cached (what the tree shows), the workers and what they run,
the header's counters, how the runs it last saw running ended, the recent events and runs, and the
engine's recent output lines (those it missed go in among those it shows, once each).

Order matters. The facts before the gap are applied first, then the answers, then the facts that
came after the gap (held meanwhile): one of those that is older than the answers only says again
what the answers say, and the newest fact about each thing is applied last, as it should be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinyo import events as ev
from tinyo.engine_state import DESInfo, DocInfo, EngineStats, RunInfo
from tinyo.executors.base import WorkerInfo
from tinyo.groups import GroupSummary
from tinyo.history import History

from .messages import QueryResult
from .runlog import RunRecord
from .state import COUNTED, Changes, ConsoleState, EventRow, WorkerRow

LOOKUPS_MAX = 100
"""The most DES whose runs are looked up one by one (each a query): the runs last seen running."""
PAST_MAX = 1000
"""The most recent events, runs and output lines asked for (what a gap left out of the last ones shown)."""
NAMES_MAX = 5000
"""The most cached documents (and DES) asked about at once (the protocol's list bound)."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the console holds and must ask about (taken on the UI thread)."""

    docs: tuple[str, ...]
    des: tuple[str, ...]
    runs: dict[int, str]
    """Runs last seen running (or shown interrupted because the engine went away) -> their DES."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The engine's answers, read off the UI thread."""

    stats: EngineStats
    groups: list[GroupSummary]
    workers: list[WorkerInfo]
    docs: list[DocInfo]
    des: list[DESInfo]
    runs: dict[int, RunInfo]
    past: History | None
    """The engine's recent events and runs (None: an engine that keeps no record)."""
    output: list[ev.OpOutput]
    """The engine's recent output lines, numbered."""


def wanted(state: ConsoleState) -> Wanted:
    """What to ask about (UI thread)."""
    runs = dict(state.unsure_runs)
    for record in state.runs:
        if record.status == "running":
            runs[record.run_id] = record.des_id
    for record in state.history.running():
        runs.setdefault(record.run_id, record.des_id)
    return Wanted(tuple(list(state.docs)[-NAMES_MAX:]), tuple(list(state.des)[-NAMES_MAX:]), runs)


def read(engine: Any, want: Wanted) -> Snapshot:
    """Ask the engine (any thread but the UI's: every call is a query, over the socket when attached)."""
    stats = engine.stats()
    groups = engine.groups_summary()
    workers = engine.workers()
    running_des = [w.des_id for w in workers if w.des_id]
    docs = engine.doc_infos(want.docs) if want.docs else []
    des_ids = list(dict.fromkeys([*want.des, *running_des]))[-NAMES_MAX:]
    des = engine.des_infos(des_ids) if des_ids else []
    runs: dict[int, RunInfo] = {}
    by_des: dict[str, list[int]] = {}
    for run_id, des_id in sorted(want.runs.items(), reverse=True):  # the newest runs first
        by_des.setdefault(des_id, []).append(run_id)
    for des_id in list(by_des)[:LOOKUPS_MAX]:
        details = engine.des_details(des_id)
        if details is None:
            continue
        asked = set(by_des[des_id])
        runs.update((run.run_id, run) for run in details.runs if run.run_id in asked)
    past = engine.history(events=PAST_MAX, runs=PAST_MAX, lines=0)
    output = engine.recent_output(PAST_MAX)
    return Snapshot(stats, groups, workers, docs, des, runs, past, output)


def apply(state: ConsoleState, snap: Snapshot, now: float) -> Changes:
    """Put the engine's answers in place of what the console had (UI thread)."""
    ch = Changes(header=True, workers=True)
    state.set_groups(snap.groups, ch)
    for info in snap.docs:
        state.put_doc_info(info)
        ch.changed_docs.add(info.name)
    for des in snap.des:
        state.put_des_info(des)
        ch.changed_des.add(des.des_id)
    stats = snap.stats
    for name in COUNTED:
        state.des_states[name] = getattr(stats, name)
    state.counted_until = stats.started_at + stats.uptime  # the engine's clock when it counted
    state.engine_state, state.buffered = stats.state, stats.buffered
    state.events_total = max(state.events_total, stats.events_total)
    if stats.started_at:
        state.started_at = stats.started_at
    _workers(state, snap.workers, now)
    for run_id, run in snap.runs.items():
        state.unsure_runs.pop(run_id, None)
        if run.status in ("running", "queued"):
            continue  # still running: its end comes as a fact
        end = run.end if run.end is not None else now
        state.runs.ended(run_id, run.status, end, run.error or "")
        status = run.status if run.status in ("ok", "failed", "cancelled", "interrupted") else "interrupted"
        if state.history.close(run_id, status, end, run.error or ""):  # type: ignore[arg-type]
            ch.runs = True
    ch.runs = True
    if snap.past is not None:
        _past(state, snap.past, ch)
    state.merge_output(snap.output, ch)
    return ch


def _past(state: ConsoleState, past: History, ch: Changes) -> None:
    """The events and runs the console missed, from the engine's record, among those it shows."""
    rows = [EventRow(0, e.ts, "timer" if e.source == "timer" else "event", e.source,  # type: ignore[arg-type]
                     e.name, event_id=e.event_id, des_count=e.des_count) for e in past.events]
    state.merge_events(rows, ch)
    for run in past.runs:
        if state.runs.get(run.run_id) is None:
            state.runs.add(RunRecord(run.run_id, run.des_id, run.op, run.worker, run.start, run.end, run.status,
                                     run.error))


def _workers(state: ConsoleState, workers: list[WorkerInfo], now: float) -> None:
    """The workers the engine has, as it says (a worker it no longer has is dropped)."""
    old = state.workers
    rows: dict[str, WorkerRow] = {}
    for info in workers:
        row = old.get(info.name) or WorkerRow(info.name)
        targs = row.targs if row.run_id == info.run_id else frozenset()
        row.pid, row.state, row.run_id, row.des_id = info.pid, info.state, info.run_id, info.des_id
        row.op, row.since, row.targs = info.op or "", info.since, targs
        if info.state != "dead":
            row.detail = ""
        if info.run_id is not None and info.des_id and state.runs.get(info.run_id) is None:
            state.runs.started(info.run_id, info.des_id, info.op or "", info.name, info.since or now)
        rows[info.name] = row
    state.workers.clear()
    state.workers.update(rows)


class Resync:
    """The console's side of asking again: where a gap is in what it drains, and holding what comes
    after it until the answers are in (UI thread; the asking runs in a thread worker)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.busy = False
        self._dropped_seen = 0

    def split(self, batch: list[Any]) -> tuple[list[Any], list[Any], int]:
        """(what goes in before the answers, what waits for them, how many facts were missed): the batch
        cut at its first ``FactsMissed``, plus the facts the console's own buffer dropped."""
        missed, after = 0, []
        for index, event in enumerate(batch):
            if type(event) is ev.FactsMissed:
                batch, after, missed = batch[:index], batch[index + 1:], event.count
                break
        dropped = self.app.bridge.dropped_facts
        if dropped != self._dropped_seen:  # the console's own buffer overflowed
            missed += dropped - self._dropped_seen
            self._dropped_seen = dropped
        return batch, after, missed

    def begin(self, why: str | None) -> None:
        """Ask the engine (off the UI thread); the facts that come meanwhile wait in the bridge."""
        if self.busy:
            return
        self.busy = True
        app, want = self.app, wanted(self.app.state)
        engine = app.engine

        def ask() -> None:
            try:
                snapshot = read(engine, want)
            except Exception as exc:  # the engine went away again: its handle says so; the facts go on
                app.post_message(QueryResult("resync", why, f"{type(exc).__name__}: {exc}"))
                return
            app.post_message(QueryResult("resync", (snapshot, why)))

        app.run_worker(ask, thread=True, group="resync")

    def done(self, message: QueryResult) -> None:
        """The answers are in: in place of what the console had, then the facts that waited."""
        app = self.app
        self.busy = False
        if message.error:
            app.note(f"could not ask the engine again: {message.error}", "error")
        else:
            snapshot, why = message.value
            app._publish(apply(app.state, snapshot, app.now()))
            if why:
                app.note(f"{why}: documents, workers, running ops, recent events and output asked of the engine again",
                         "info")
        app._schedule_drain(0.0)
