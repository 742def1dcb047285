"""Provides ``DocumentCache``, the middle layer of the console's state: documents, DES and groups.

The document DAG is not mirrored. The engine keeps the group counts the tree shows (they arrive as
``GroupsChanged``); documents and DES are cached only while they are on screen or recently heard of
(``trim`` bounds them), and the tree asks the engine for the rest as it expands (``put_doc_info``,
``put_des_info``). It also keeps the header's counts of DES queued, running and failed, which follow
the DES state changes (``DESStateChanged``, the moves a run's start and success tell: ``move_des``, and a new
DES's first state its ``DESRegistered`` tells). Document versions come as ``DocumentUpdated``, or told by
the fact of the event or run that gave them (``events.folded_versions``: ``put_version``).
It builds on ``EventStream`` because a new DES is noted on its event's row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from tinyo import events as ev
from tinyo.engine_state import DESInfo, DocInfo
from tinyo.groups import GroupSummary, group_key

from .state_rows import (
    COUNTED, DES_TO_DOC, MAX_CACHED, MAX_EVENT_ROWS, MAX_OUTPUT_ROWS, Changes, DesNode, DocNode, DocState,
)
from .state_stream import EventStream


class DocumentCache(EventStream):
    """The cached documents and DES, every group's counts, and the DES state counts. UI thread only."""

    def __init__(self, *, max_events: int = MAX_EVENT_ROWS, max_output: int = MAX_OUTPUT_ROWS,
                 max_cached: int = MAX_CACHED) -> None:
        super().__init__(max_events=max_events, max_output=max_output)
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
        self.des_states: Counter[str] = Counter()
        self.counted_until = float("-inf")
        """The engine's time when it last gave its counters (queued, running, failed): a state change
        published before it is in them already (a resync re-applies such facts after the answer)."""

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
        """Put the engine's group counts in place (start-up, a resync)."""
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

    # ------------------------------------------------------------------ handlers
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
        if e.state:  # its first state, told here (no state fact from "new" follows)
            self.move_des(e.des_id, e.state, e.reason, "new", e.targs, e.ts, ch)

    def _on_received_versioned(self, e: ev.EventReceived, ch: Changes) -> None:
        if e.version is not None:  # the event's document's new version, told before it as it was given
            self.put_version(e.name, e.version, "event", ch)
        self._on_received(e, ch)

    def _on_state(self, e: ev.DESStateChanged, ch: Changes) -> None:
        self.move_des(e.des_id, e.state, e.reason, e.previous, e.targs, e.ts, ch)

    def move_des(self, des_id: str, state: str, reason: str, previous: str, targs: Collection[str], ts: float,
                 ch: Changes) -> None:
        """A DES moved to ``state`` (a state fact, or a run fact that tells it: ``events.RUN_MOVES``)."""
        node = self.des.get(des_id)
        previous = previous or (node.state if node is not None else "")
        if previous != state and ts > self.counted_until:
            if previous in COUNTED and self.des_states[previous] > 0:
                self.des_states[previous] -= 1
            if state in COUNTED:
                self.des_states[state] += 1
            ch.header = True
        targs = targs or (node.targs if node is not None else ())
        if node is not None:
            node.state, node.reason = state, reason
            if state != "failed":
                node.error = ""
            ch.changed_des.add(des_id)
        doc_state: DocState = DES_TO_DOC.get(state, "never built")
        detail = reason if doc_state in ("waiting", "stale", "failed") else ""
        for name in targs:
            doc = self.docs.get(name)
            if doc is not None:
                doc.producer = doc.producer or des_id
                self._set_doc_state(doc, doc_state, detail, ch)

    def _on_document(self, e: ev.DocumentUpdated, ch: Changes) -> None:
        self.put_version(e.name, e.version, e.by, ch)

    def put_version(self, name: str, version: int, by: str, ch: Changes) -> None:
        """Document ``name`` has version ``version``, given by ``by`` (a DES id, "event" or "found"): a
        ``DocumentUpdated``, or a version its event's or run's fact tells."""
        doc, new = self._doc(name)
        if new:
            ch.new_docs.add(name)
        doc.version = version
        if by not in ("event", "found"):
            doc.producer = doc.producer or by
            # made by the DES ``by``, whose run just ended ok: up to date as of this fact. Its run's OpFinished
            # says so too, but only of a DES cached here: one registered in a gap (facts missed, the engine's
            # answers asked about what the console held) is heard of first here, as is a document trimmed
            # from the cache; what happens to it later comes as later facts
            self._set_doc_state(doc, "up to date", "", ch)
        elif doc.producer is None:
            self._set_doc_state(doc, "source", "", ch)
        ch.changed_docs.add(name)

    def _on_groups(self, e: ev.GroupsChanged, ch: Changes) -> None:
        for group in e.groups:
            self.groups[group.pattern] = group
            ch.groups.add(group.pattern)
