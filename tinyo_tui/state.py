"""Provides the console's in-memory view of the engine, fed by bus events; pure Python, no Textual.

Everything here is bounded. The document DAG is not mirrored: the engine keeps the group counts the
tree shows (they arrive as ``GroupsChanged``), and documents and DES are cached only while they are
on screen or recently heard of; the rest is read from the engine when the tree expands. The bridge
hands batches of bus events to ``ConsoleState.apply``; it returns a ``Changes`` that says which
parts of the screen need repainting, so a pane repaints only what moved.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from itertools import count
from typing import Literal

from tinyo import events as ev
from tinyo.engine_state import DESInfo, DocInfo
from tinyo.groups import DES_TO_DOC as _ENGINE_DES_TO_DOC
from tinyo.groups import GroupSummary, group_key

from .runlog import RunLog
from .run_history import RunHistory

__all__ = ["ConsoleState", "group_key"]

DocState = Literal[
    "up to date", "stale", "waiting", "queued", "running", "failed", "cancelled", "never built",
    "source", "missing", "interrupted",
]
RowKind = Literal["event", "timer", "error", "notice", "rejected"]

DES_TO_DOC: dict[str, DocState] = {**_ENGINE_DES_TO_DOC, "registered": "never built",  # type: ignore[dict-item]
                                   "interrupted": "interrupted"}
"""How a producing DES's state reads on the documents it makes."""
COUNTED = ("queued", "running", "failed")
"""DES states the header counts (kept from the engine's transitions, with no per-DES memory)."""
MAX_CACHED = 2000
"""Documents (and DES) kept in memory beyond those on screen; the engine has them all."""

MAX_EVENT_ROWS = 5000
"""The event stream keeps the newest this many rows; older ones are only in the store."""
MAX_OUTPUT_ROWS = 5000
"""The output pane keeps the newest this many lines."""
MAX_FLOW_RUNS = 8
"""Lanes of this many recent flow runs are kept."""
_RATE_WINDOW = 5.0

@dataclass(slots=True)
class DesNode:
    """What the console knows about one DES."""

    des_id: str
    deps: tuple[str, ...]
    targs: tuple[str, ...]
    ops: tuple[str, ...]
    generator: str
    event: str
    state: str = "registered"
    reason: str = ""
    runs: int = 0
    run_id: int | None = None
    worker: str | None = None
    started: float | None = None
    error: str = ""

    @property
    def op_label(self) -> str:
        """The op names, joined."""
        return ", ".join(self.ops) or "(no ops)"


@dataclass(slots=True)
class DocNode:
    """What the console knows about one document."""

    name: str
    version: int | None = None
    producer: str | None = None
    consumers: tuple[str, ...] | set[str] | None = None
    """DES that read this document (None until one does; a small tuple, a set past 8 readers)."""
    reader_count: int = 0
    """How many DES read it, when the engine said so (it lists only the first ones)."""
    state: DocState = "missing"
    detail: str = ""
    group: str = ""
    """The name pattern of the document's group."""


@dataclass(slots=True)
class EventRow:
    """One line of the event stream."""

    seq: int
    ts: float
    kind: RowKind
    source: str
    name: str
    event_id: int | None = None
    des_count: int | None = None
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    des_ids: list[str] = field(default_factory=list)
    version: int = 0
    """Bumped whenever the row changes, so a cached rendering can be dropped."""


@dataclass(slots=True)
class OutputRow:
    """One line of the output pane: an op's output line, or a console note (``cmd``/``info``)."""

    seq: int
    ts: float
    kind: Literal["stdout", "stderr", "cmd", "info", "error"]
    line: str
    op: str = ""
    worker: str = ""
    des_id: str = ""
    run_id: int | None = None


@dataclass(slots=True)
class WorkerRow:
    """One worker and what it runs."""

    name: str
    pid: int | None = None
    state: str = "idle"
    detail: str = ""
    run_id: int | None = None
    des_id: str | None = None
    op: str = ""
    targs: frozenset[str] = frozenset()
    since: float | None = None


@dataclass
class Changes:
    """What one ``apply`` changed, for the panes to repaint just that."""

    new_events: int = 0
    updated_events: bool = False
    new_output: int = 0
    new_docs: set[str] = field(default_factory=set)
    changed_docs: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    """Patterns whose counts changed (or that are new)."""
    changed_des: set[str] = field(default_factory=set)
    workers: bool = False
    lanes: bool = False
    header: bool = False
    reloaded: bool = False
    """Rows were inserted before others (the start from the state file): panes rebuild their views."""
    runs: bool = False
    """A run started or ended (the run timeline repaints)."""
    notices: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.new_events or self.updated_events or self.new_output or self.new_docs or self.groups
            or self.changed_docs or self.changed_des or self.workers or self.lanes or self.header or self.reloaded
            or self.runs
        )


class ConsoleState:
    """The console's model of the engine. Call ``apply`` on the UI thread only."""

    def __init__(self, *, max_events: int = MAX_EVENT_ROWS, max_output: int = MAX_OUTPUT_ROWS,
                 max_cached: int = MAX_CACHED) -> None:
        self.events: deque[EventRow] = deque(maxlen=max_events)
        self.events_dropped = 0
        """Rows that fell off the top of the stream (still in the store)."""
        self._event_by_id: dict[int, EventRow] = {}
        self._event_by_name: dict[str, EventRow] = {}
        self.output: deque[OutputRow] = deque(maxlen=max_output)
        self.output_dropped = 0
        self.des: dict[str, DesNode] = {}
        """A cache: DES on screen, queued or running, and the most recently heard of."""
        self.docs: dict[str, DocNode] = {}
        """A cache: documents on screen and the most recently heard of."""
        self.guessed: set[str] = set()
        """Cached documents first heard of as a new DES's deps: their state ("missing") is a guess until the
        engine is asked (after a restart such a document may well be built and up to date)."""
        self.groups: dict[str, GroupSummary] = {}
        """Every document group, as the engine counts it."""
        self.max_cached = max_cached
        self.pinned_docs: Collection[str] = ()
        """Documents on screen (the tree's): never dropped from the cache."""
        self.pinned_des: Collection[str] = ()
        self.workers: dict[str, WorkerRow] = {}
        self.flows: OrderedDict[str, dict[tuple[str, int], ev.FlowMetrics]] = OrderedDict()
        self.des_states: Counter[str] = Counter()
        self.engine_state: str = "starting"
        self.engine_detail: str = ""
        self.buffered = 0
        self.started_at: float | None = None
        self.events_total = 0
        self._recent: deque[float] = deque(maxlen=20_000)
        self.history = RunHistory()
        """Runs per worker over the last minutes, rates per second, durations per op (bounded)."""
        self._seq = count()
        self.runs = RunLog()
        """The recent runs (worker details list them)."""
        self.stop_deadline: float | None = None
        """While the console stops the engine: when running ops stop being waited for (clock time)."""
        self.counted_until = float("-inf")
        """The engine's time when it last gave its counters (queued, running, failed): a state change
        published before it is in them already (a resync re-applies such facts after the answer)."""
        self.unsure_runs: dict[int, str] = {}
        """Runs (id -> DES) shown interrupted because their engine went away, not because it said so:
        asked about again when an engine is attached (bounded: the runs running at one time)."""

    # ------------------------------------------------------------------ queries
    @property
    def paused(self) -> bool:
        """True while intake is paused."""
        return self.engine_state == "paused"

    @property
    def queued(self) -> int:
        """DES waiting for a worker."""
        return self.des_states["queued"] + self.des_states["interrupted"]

    @property
    def running(self) -> int:
        """DES running now."""
        return self.des_states["running"]

    @property
    def failed(self) -> int:
        """DES whose last run failed."""
        return self.des_states["failed"]

    def events_per_s(self, now: float) -> float:
        """Events received per second over the last few seconds (by the engine clock)."""
        recent = self._recent
        while recent and recent[0] < now - _RATE_WINDOW:
            recent.popleft()
        return len(recent) / _RATE_WINDOW

    def uptime(self, now: float) -> float | None:
        """Seconds since the engine started running."""
        return None if self.started_at is None else max(0.0, now - self.started_at)

    # ------------------------------------------------------------------ updates
    def note(self, line: str, kind: Literal["cmd", "info", "error"], ts: float) -> OutputRow:
        """Add a console line (an echoed CLI command, an info or error note) to the output pane."""
        row = OutputRow(next(self._seq), ts, kind, line)
        self._append_output(row)
        return row

    def prepend(self, events: list[EventRow], output: list[OutputRow]) -> None:
        """Put rows from the state file before this session's (numbered below them: negative seqs)."""
        for rows, target in ((events, self.events), (output, self.output)):
            room = (target.maxlen or 0) - len(target)
            rows = rows[-room:] if room > 0 else []
            for offset, row in enumerate(rows):
                row.seq = offset - len(rows)
            target.extendleft(reversed(rows))  # type: ignore[arg-type]
        for row in events:
            if row.event_id is not None and row.seq < 0:
                self._event_by_id.setdefault(row.event_id, row)
                self._event_by_name.setdefault(row.name, row)

    def replace_events(self, rows: list[EventRow]) -> None:
        """Show ``rows`` (oldest first; the newest that fit) instead of the stream, renumbered after every row
        so far (a resync put missed events among them: the panes rebuild their views)."""
        kept = rows[-(self.events.maxlen or len(rows)):]
        self.events_dropped += len(rows) - len(kept)
        self.events.clear()
        self._event_by_id.clear()
        self._event_by_name.clear()
        for row in kept:
            row.seq, row.version = next(self._seq), row.version + 1
            self._append_event(row)

    def apply(self, batch: list[ev.BusEvent], changes: Changes | None = None) -> Changes:
        """Fold a batch of bus events (in publish order) into the model."""
        ch = changes if changes is not None else Changes()
        for event in batch:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event, ch)
        if self.history.apply(batch):
            ch.runs = True
        self.trim()
        return ch

    def trim(self) -> None:
        """Drop cached documents and DES beyond ``max_cached`` (oldest first), except those on screen
        and the DES queued or running (the header, workers and cancel need those)."""
        limit = self.max_cached
        if len(self.docs) > limit:
            pinned = self.pinned_docs
            drop = [n for n in self.docs if n not in pinned][: len(self.docs) - limit // 2]
            for name in drop:
                del self.docs[name]
                self.guessed.discard(name)
        if len(self.des) > limit:
            pinned = self.pinned_des
            drop = [i for i, d in self.des.items() if i not in pinned and d.state not in ("queued", "running")]
            for des_id in drop[: len(self.des) - limit // 2]:
                del self.des[des_id]

    def set_groups(self, groups: list[GroupSummary], ch: Changes) -> None:
        """Seed the group counts (start-up)."""
        for group in groups:
            self.groups[group.pattern] = group
            ch.groups.add(group.pattern)

    def put_doc_info(self, info: DocInfo) -> DocNode:
        """Cache what the engine said about a document (the tree asked for it)."""
        doc = self.docs.get(info.name)
        if doc is None:
            doc = self.docs[info.name] = DocNode(info.name, group=group_key(info.name))
        self.guessed.discard(info.name)
        doc.version, doc.producer = info.version, info.producer
        doc.state, doc.detail = info.state, info.detail  # type: ignore[assignment]
        doc.consumers = info.readers
        doc.reader_count = info.reader_count
        return doc

    def put_des_info(self, info: DESInfo) -> DesNode:
        """Cache what the engine said about a DES (the tree asked for it)."""
        node = self.des.get(info.des_id)
        if node is None:
            node = self.des[info.des_id] = DesNode(info.des_id, info.deps, info.targs, info.ops, info.generator,
                                                   info.event)
        node.state, node.reason, node.error = info.state, info.reason, info.error
        if info.run_id is not None:
            node.run_id, node.worker = info.run_id, info.worker
        return node

    def _doc(self, name: str) -> tuple[DocNode, bool]:
        doc = self.docs.get(name)
        if doc is not None:
            return doc, False
        doc = self.docs[name] = DocNode(name, group=group_key(name))
        return doc, True

    def _set_doc_state(self, doc: DocNode, state: DocState, detail: str, ch: Changes) -> None:
        if state != doc.state or detail != doc.detail:
            doc.state, doc.detail = state, detail
            ch.changed_docs.add(doc.name)

    def _append_output(self, row: OutputRow) -> None:
        if len(self.output) == self.output.maxlen:
            self.output_dropped += 1
        self.output.append(row)

    def _append_event(self, row: EventRow) -> None:
        if len(self.events) == self.events.maxlen:
            old = self.events[0]
            self.events_dropped += 1
            if old.event_id is not None and self._event_by_id.get(old.event_id) is old:
                del self._event_by_id[old.event_id]
            if self._event_by_name.get(old.name) is old:
                del self._event_by_name[old.name]
        self.events.append(row)
        if row.event_id is not None:
            self._event_by_id[row.event_id] = row
        if row.kind in ("event", "timer"):
            self._event_by_name[row.name] = row

    # ------------------------------------------------------------------ handlers
    def _on_received(self, e: ev.EventReceived, ch: Changes) -> None:
        self.events_total += 1
        self._recent.append(e.ts)
        kind: RowKind = "timer" if e.source == "timer" else "event"
        # the time shown is when the event happened (was taken in), not when the generators saw it
        happened = e.taken if e.taken is not None else e.ts
        self._append_event(EventRow(next(self._seq), happened, kind, e.source, e.name, event_id=e.event_id))
        ch.new_events += 1
        ch.header = True

    def _on_processed(self, e: ev.EventProcessed, ch: Changes) -> None:
        row = self._event_by_id.get(e.event_id)
        if row is not None:
            row.des_count = e.des_count
            row.version += 1
            ch.updated_events = True

    def _on_generator_error(self, e: ev.GeneratorError, ch: Changes) -> None:
        row = self._event_by_name.get(e.event)
        if row is not None:
            row.errors.append((e.generator, e.error, e.traceback))
            row.version += 1
            ch.updated_events = True
        else:
            self._append_event(EventRow(next(self._seq), e.ts, "error", e.generator, e.event,
                                        errors=[(e.generator, e.error, e.traceback)]))
            ch.new_events += 1

    def _on_rejected(self, e: ev.DESRejectedEvent, ch: Changes) -> None:
        row = EventRow(next(self._seq), e.ts, "rejected", e.generator, e.event,
                       errors=[(e.generator, f"DES {e.des_id[:8]} rejected: {e.reason}", "")])
        self._append_event(row)
        ch.new_events += 1

    def _on_notice(self, e: ev.EngineNotice, ch: Changes) -> None:
        self._append_event(EventRow(next(self._seq), e.ts, "notice", e.level, e.message))
        ch.new_events += 1
        ch.notices.append((e.level, e.message))

    def _on_timer(self, e: ev.TimerFired, ch: Changes) -> None:
        # The timer's event arrives as its own EventReceived(source="timer"); nothing to add here.
        return None

    def _on_registered(self, e: ev.DESRegistered, ch: Changes) -> None:
        node = self.des.get(e.des_id)
        if node is None:
            node = self.des[e.des_id] = DesNode(e.des_id, tuple(sorted(e.deps)), tuple(sorted(e.targs)), e.ops,
                                                e.generator, e.event)
        ch.changed_des.add(e.des_id)
        row = self._event_by_name.get(e.event)
        if row is not None and e.des_id not in row.des_ids and len(row.des_ids) < 100:
            row.des_ids.append(e.des_id)
        for name in e.deps:
            doc, new = self._doc(name)
            readers = doc.consumers
            if readers is None:
                doc.consumers = (e.des_id,)  # most documents have one reader: a 1-tuple, not a 216-byte set
            elif isinstance(readers, tuple):
                if e.des_id not in readers:
                    doc.consumers = readers + (e.des_id,) if len(readers) < 8 else {*readers, e.des_id}
            else:
                readers.add(e.des_id)
            if doc.reader_count:
                doc.reader_count = max(doc.reader_count, len(doc.consumers or ()))
            if new:
                ch.new_docs.add(name)
                if doc.version is None:
                    doc.state, doc.detail = "missing", "no version yet"
                    if len(self.guessed) < self.max_cached:
                        self.guessed.add(name)
            ch.changed_docs.add(name)
        for name in e.targs:
            doc, new = self._doc(name)
            doc.producer = e.des_id
            if new:
                ch.new_docs.add(name)
            self._set_doc_state(doc, DES_TO_DOC.get(node.state, "never built"), "", ch)
            ch.changed_docs.add(name)

    def _on_state(self, e: ev.DESStateChanged, ch: Changes) -> None:
        node = self.des.get(e.des_id)
        previous = e.previous or (node.state if node is not None else "")
        if previous != e.state and e.ts > self.counted_until:
            if previous in COUNTED and self.des_states[previous] > 0:
                self.des_states[previous] -= 1
            if e.state in COUNTED:
                self.des_states[e.state] += 1
            ch.header = True
        targs = e.targs or (node.targs if node is not None else ())
        if node is not None:
            node.state, node.reason = e.state, e.reason
            if e.state != "failed":
                node.error = ""
            ch.changed_des.add(e.des_id)
        doc_state: DocState = DES_TO_DOC.get(e.state, "never built")
        detail = e.reason if doc_state in ("waiting", "stale", "failed") else ""
        for name in targs:
            doc = self.docs.get(name)
            if doc is not None:
                doc.producer = doc.producer or e.des_id
                self._set_doc_state(doc, doc_state, detail, ch)

    def _on_op_started(self, e: ev.OpStarted, ch: Changes) -> None:
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

    def _finish_worker(self, worker: str, run_id: int, ts: float, ch: Changes) -> None:
        row = self.workers.get(worker)
        if row is not None and row.run_id == run_id:
            row.state, row.run_id, row.des_id, row.op = "idle", None, None, ""
            row.targs, row.since = frozenset(), ts
            ch.workers = True

    def _on_op_finished(self, e: ev.OpFinished, ch: Changes) -> None:
        node = self.des.get(e.des_id)
        if node is not None:
            node.error = ""
        self.runs.ended(e.run_id, "ok", e.ts)
        self._finish_worker(e.worker, e.run_id, e.ts, ch)

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

    def _on_output(self, e: ev.OpOutput, ch: Changes) -> None:
        self._append_output(OutputRow(next(self._seq), e.ts, e.stream, e.line, e.op, e.worker,
                                      e.des_id, e.run_id))
        ch.new_output += 1

    def _on_document(self, e: ev.DocumentUpdated, ch: Changes) -> None:
        doc, new = self._doc(e.name)
        if new:
            ch.new_docs.add(e.name)
        doc.version = e.version
        if e.by not in ("event", "found"):
            doc.producer = doc.producer or e.by  # made by the DES ``by``: its state change follows
        elif doc.producer is None:
            self._set_doc_state(doc, "source", "", ch)
        ch.changed_docs.add(e.name)

    def _on_groups(self, e: ev.GroupsChanged, ch: Changes) -> None:
        for group in e.groups:
            self.groups[group.pattern] = group
            ch.groups.add(group.pattern)

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


_HANDLERS = {
    ev.EventReceived: ConsoleState._on_received,
    ev.EventProcessed: ConsoleState._on_processed,
    ev.GeneratorError: ConsoleState._on_generator_error,
    ev.DESRejectedEvent: ConsoleState._on_rejected,
    ev.EngineNotice: ConsoleState._on_notice,
    ev.TimerFired: ConsoleState._on_timer,
    ev.DESRegistered: ConsoleState._on_registered,
    ev.DESStateChanged: ConsoleState._on_state,
    ev.OpStarted: ConsoleState._on_op_started,
    ev.OpFinished: ConsoleState._on_op_finished,
    ev.OpFailed: ConsoleState._on_op_failed,
    ev.OpCancelled: ConsoleState._on_op_cancelled,
    ev.OpOutput: ConsoleState._on_output,
    ev.DocumentUpdated: ConsoleState._on_document,
    ev.GroupsChanged: ConsoleState._on_groups,
    ev.WorkerChanged: ConsoleState._on_worker,
    ev.FlowMetrics: ConsoleState._on_flow,
    ev.EngineState: ConsoleState._on_engine,
}
