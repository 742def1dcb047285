"""Provides the documents part: versions (in the graph), the file state behind each file document's
version, and the documents' groups as the console's tree counts them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import events as ev
from ..clock import Clock
from ..dag import Graph, Node
from ..filecheck import FileChecks
from ..groups import DES_TO_DOC, Groups
from ..intake import FileState, compare_file, stat_file

if TYPE_CHECKING:
    from ..model import TinyOConfig
    from ..store import Store
    from .inflow import Stored
    from .outbox import Outbox

FILE_CACHE_MAX = 4096
"""File states of documents cached in memory; the store has them all."""


class Documents:
    """Document versions, file states and groups. Loop thread only."""

    def __init__(self, graph: Graph, store: Store, config: TinyOConfig, clock: Clock, outbox: Outbox,
                 touched: list[str], mark_gone: Callable[[str], None]) -> None:
        self.graph = graph
        self.store = store
        self.config = config
        self.clock = clock
        self.outbox = outbox
        self.touched = touched
        """DES whose readiness must be settled this cycle (shared with dispatch, which drains it)."""
        self.groups = Groups()
        """Documents counted per name pattern and state (what the console's tree shows)."""
        self.total = 0
        """Documents known (named by a DES or versioned)."""
        self._files: dict[str, FileState] = {}
        self._none: set[str] = set()  # file documents the current batch's lookup found no state for
        self._doc_rows: list[tuple[str, int, str | None, int | None, int | None, float, str]] | None = None
        self._name_rows: list[tuple[str, str]] = []
        """While a batch is open (``begin_batch``): its document and name rows, handed to the store together."""
        self.joining: list[tuple[str, str]] = []
        """Documents new to the DAG, as (name, state), counted in their groups together (``flush_joins``): a
        batch's fast paths append here; anything else that reads or moves the counts flushes it first."""
        self.event_versions: dict[int, int] = {}
        """Versions the current batch's events gave their documents (event id -> version), told by their
        ``EventReceived`` (the loop takes them as it makes those), not by a ``DocumentUpdated`` each."""
        self._mark_gone = mark_gone
        """Intake's record of a file seen gone (so the file coming back is a new event)."""
        self.checks = FileChecks(graph, self.file_state, config.hash_files)
        """Files against their recorded state: targets that drifted, deps that are gone."""

    # ------------------------------------------------------------ versions
    def from_event(self, name: str, state: FileState | None, into: list[tuple[str, int]] | None = None) -> None:
        """An event names ``name``: a file document gets a new version if its content changed, any other
        document gets one at once (``into``: as for ``bump``)."""
        if name[:1] == "/":
            st = stat_file(name)
            if self._file_event(name, state, st):
                self.refresh_file(name, by="event", hint=state, st=st, source=True, into=into)
        else:
            self.bump(name, by="event", into=into)

    def from_events(self, batch: list[Stored]) -> None:
        """A batch's events, in order, as ``from_event`` gives each: one lookup of what the store knows of
        their files, and a file seen for the first time (most of a burst) taken in on a short path. Such a
        file has no version, producer or reader, is not gone, and its state as intake read it agrees with
        its stat now: it gets version 1 and joins its group as a source (groups counted per batch). The
        versions the events give are kept in ``event_versions`` for their ``EventReceived`` to tell."""
        self.prefetch_files([name for _, _, name, *_ in batch if name[:1] == "/"])
        told = self.event_versions
        told.clear()
        graph = self.graph
        # the graph's maps as ``graph.unnamed`` reads them (nothing here looks up or evicts: they stay bound)
        versions, producer, consumers, gone = graph.versions, graph.producer, graph.consumers, graph.gone
        files, present, joining = self._files, self.checks.present, self.joining
        use_hash = self.config.hash_files
        rows = self._doc_rows  # a batch is open (``begin_batch``): its rows are appended to, not handed over
        put = self._put if rows is None else rows.append
        intern = sys.intern
        now = self.clock.time()
        for event_id, _, name, state, _ in batch:
            if name[:1] != "/":
                self.flush_joins()
                given: list[tuple[str, int]] = []
                self.bump(name, by="event", into=given)
                told[event_id] = given[0][1]
                now = self.clock.time()
                continue
            st = stat_file(name)
            if (st is not None and versions.get(name) == 0 and producer.get(name, True) is None
                    and not consumers.get(name, True) and name not in files and name not in gone):
                if not use_hash:
                    new = FileState(st.st_mtime_ns, st.st_size, None)
                elif (state is not None and state.digest and state.mtime_ns == st.st_mtime_ns
                      and state.size == st.st_size):
                    new = state  # as the watcher (or intake) hashed it, and still so: not read again
                else:
                    new = None
                if new is not None:
                    present.add(name)
                    joining.append((name, "source"))
                    versions[intern(name)] = 1
                    told[event_id] = 1
                    files[name] = new
                    put((name, 1, new.digest, new.mtime_ns, new.size, now, "event"))
                    continue
            self.flush_joins()
            if self._file_event(name, state, st):
                given = []
                self.refresh_file(name, by="event", hint=state, st=st, source=True, into=given)
                if given:
                    told[event_id] = given[0][1]
            now = self.clock.time()
        self.flush_joins()

    def tell_untold(self, batch: list[Stored]) -> None:
        """Tell by a ``DocumentUpdated`` each the versions kept in ``event_versions`` (and not taken by their
        ``EventReceived``) of ``batch``'s events: those put back after a generator hung are not given a version
        again when they come back."""
        told = self.event_versions
        if told:
            now = self.clock.time()
            for event_id, _, name, *_ in batch:
                version = told.pop(event_id, None)
                if version is not None:
                    self.outbox.emit(ev.DocumentUpdated(now, name, version, "event"))
            told.clear()

    def flush_joins(self) -> None:
        """Count the documents waiting in ``joining`` in their groups (one move per group and state)."""
        joining = self.joining
        if not joining:
            return
        patterns = self.groups.join_many(joining)
        rows = list(zip([name for name, _ in joining], patterns))
        if self._doc_rows is None:
            self.store.add_names(rows)
        else:
            self._name_rows.extend(rows)
        self.total += len(rows)
        joining.clear()

    def _file_event(self, path: str, state: FileState | None, st: os.stat_result | None) -> bool:
        """Whether a file event gives its document a version: not when the file is gone by now (``st``: its
        stat just taken; its readers wait for it), nor when a DES produces it (a change by hand makes that
        DES stale: it is built again)."""
        graph = self.graph
        owner = graph.producer_of(path)
        if owner is not None:
            node = graph.node(owner)
            if node is not None and node.status is None and path not in graph.drifted:
                what = self.checks.drift(path, st=st, hint=state)
                if what is not None:
                    graph.drifted[path] = what
                    self.touched.append(owner)
            return False
        if st is None:
            self.file_gone(path)
            return False
        self.checks.present.add(path)  # seen there this cycle: its readers dispatched in this cycle need no stat
        if path in graph.gone:
            graph.gone.discard(path)
            self.touched.extend(graph.readers(path))
        return True

    def file_gone(self, path: str) -> None:
        """``path``'s readers wait for it; the file coming back, even as it was, is a new event."""
        self.checks.present.discard(path)
        if path not in self.graph.gone:
            self.graph.gone.add(path)
            self.touched.extend(self.graph.readers(path))
        self._mark_gone(path)

    def bump(self, name: str, by: str, source: bool | None = None, into: list[tuple[str, int]] | None = None) -> None:
        """Give a non-file document its next version. ``source``: whether no DES produces it, when the
        caller knows (it is not looked up again). ``into``: (document, version) goes there, for the caller's
        own fact to tell (``EventReceived.version``, ``OpFinished.versions``), not in a ``DocumentUpdated``."""
        graph = self.graph
        old = graph.versions.get(name)
        if old is None:
            old = graph.version(name)
        elif not old:  # known to have none (a new target): no look-up
            old = None
        version = (old or 0) + 1
        readers = graph.advance(name, version)
        if readers:
            self.touched.extend(readers)
        if old is None and source is not False:
            self._first_version(name, source)
        now = self.clock.time()
        row = (name, version, None, None, None, now, by)
        rows = self._doc_rows
        if rows is None:
            self.store.put_documents([row])
        else:
            rows.append(row)  # ``_put``, without its call: a target's new version per run done
        if into is None:
            self.outbox.emit(ev.DocumentUpdated(now, name, version, by))
        else:
            into.append((name, version))

    def refresh_file(self, path: str, by: str, hint: FileState | None = None, st: os.stat_result | None = None,
                     source: bool | None = None, into: list[tuple[str, int]] | None = None) -> bool:
        """Give a file document a new version if its content changed; False if the file is missing.
        ``hint``: the file's state as intake read it moments ago (it is not read again); ``st``: its stat
        just taken (it is not taken again); ``source`` and ``into``: as for ``bump``."""
        known = self._files.get(path)
        if known is None:
            known = self.file_state(path)
        changed, state = compare_file(path, known, self.config.hash_files, st=st, hint=hint)
        if state is None:
            return False
        graph = self.graph
        version = graph.versions.get(path) or graph.version(path)
        now = self.clock.time()
        if changed or version is None:
            if version is None and source is not False:
                self._first_version(path, source)
            version = (version or 0) + 1
            self.touched.extend(graph.advance(path, version))
            if into is None:
                self.outbox.emit(ev.DocumentUpdated(now, path, version, by))
            else:
                into.append((path, version))
        if changed or state != known or known is None:
            self._files[path] = state
            self._put((path, version, state.digest, state.mtime_ns, state.size, now, by))
        return True

    def file_state(self, path: str) -> FileState | None:
        """The file state behind a document's current version (memory, else the store)."""
        known = self._files.get(path)
        if known is None and path not in self._none:
            row = self.store.doc_files_many([path]).get(path)
            if row is not None and row[2] is not None and row[3] is not None:
                known = self._files[path] = FileState(row[2], row[3], row[1])
        return known

    def prefetch_files(self, paths: list[str]) -> None:
        """What the store knows of a batch's file documents, in a few lookups instead of a few per file (none
        past the one for their names when the files are new)."""
        self.graph.prefetch(paths)
        want = [p for p in paths if p not in self._files]
        if want:
            versioned = [p for p in want if self.graph.versions.get(p)]
            rows = self.store.doc_files_many(versioned) if versioned else {}
            for path in want:
                row = rows.get(path)
                if row is None:
                    self._none.add(path)
                elif row[1] is not None and row[2] is not None:
                    self._files[path] = FileState(row[2], row[3], row[1])

    def _put(self, row: tuple[str, int, str | None, int | None, int | None, float, str]) -> None:
        rows = self._doc_rows
        if rows is None:
            self.store.put_documents([row])
        else:
            rows.append(row)

    def begin_batch(self) -> None:
        """From now until ``end_batch``, document and name rows go to the store together (``write_batch``)."""
        if self._doc_rows is None:
            self._doc_rows = []

    def write_batch(self) -> None:
        """Hand the open batch's rows to the store (before any commit: the rows of what memory holds are in it)."""
        if self._doc_rows:
            rows, self._doc_rows = self._doc_rows, []
            self.store.put_documents(rows)
        if self._name_rows:
            names, self._name_rows = self._name_rows, []
            self.store.add_names(names)

    def end_batch(self) -> None:
        """Close the batch (its rows to the store). Its "no state in the store" answers hold for that batch
        only (the cache may be trimmed)."""
        self.write_batch()
        self._doc_rows = None
        self._none = set()

    def trim(self) -> None:
        """After a commit: drop cached file states past the bound (the store has them), and the cycle's
        record of files seen present (the next cycle looks again)."""
        self.checks.present.clear()
        if len(self._files) > FILE_CACHE_MAX:
            self._files.clear()

    # ------------------------------------------------------------ groups
    def state_of(self, doc: str) -> str | None:
        """A document's state as its group counts it (None: not in the DAG yet)."""
        owner = self.graph.producer_of(doc)
        if owner is not None:
            node = self.graph.nodes.get(owner)
            return DES_TO_DOC[node.state] if node is not None else "up to date"
        if self.graph.version(doc) is not None:
            return "source"
        return "missing" if self.graph.readers(doc) else None

    def join(self, doc: str, state: str) -> None:
        """A document enters the DAG in ``state``."""
        if self.joining:
            self.flush_joins()
        pattern = self.groups.join(doc, state)
        if self._doc_rows is None:
            self.store.add_names([(doc, pattern)])
        else:
            self._name_rows.append((doc, pattern))
        self.total += 1

    def targets_registered(self, node: Node) -> None:
        """A new DES names its documents: its targets are now "never built", its unknown deps "missing"."""
        graph = self.graph
        versions, producer = graph.versions, graph.producer
        for targ in node.targs:
            if graph.unnamed(targ):
                self.join(targ, "never built")  # known to be new (a new DES's target mostly is)
                continue
            before = self.state_of(targ)
            if before is None:
                self.join(targ, "never built")
            else:
                self.groups.move(targ, before, "never built")
        for dep in node.deps:
            if versions.get(dep) or producer.get(dep):
                continue  # versioned or produced: counted already (a dep of a new DES mostly is)
            if self.state_of(dep) is None:
                self.join(dep, "missing")

    def des_moved(self, moves: list[tuple[tuple[str, ...] | frozenset[str], str, str]]) -> None:
        """DES changed state, as (targets, old state, new state): their targets move between their groups'
        counts (the moves of one settle, together)."""
        self.groups.move_many(moves, DES_TO_DOC)

    def load_groups(self, hot: Callable[[str], Node | None]) -> None:
        """Count every stored document in its group (at start-up; ``hot``: the DES in memory)."""
        for name, pattern, version, producer in self.store.all_names():
            if producer is not None:
                node = hot(producer)
                state = DES_TO_DOC[node.state] if node is not None else "up to date"
            else:
                state = "source" if version else "missing"
            self.groups.join(name, state, pattern)
        self.groups.touched.clear()
        self.total = self.store.count("names")

    def _first_version(self, doc: str, source: bool | None = None) -> None:
        """``doc`` is about to get its first version: an input turns from missing to source. ``source``:
        whether no DES produces it, when the caller knows."""
        if source is False or (source is None and self.graph.producer_of(doc) is not None):
            return
        if self.graph.readers(doc):
            self.groups.move(doc, "missing", "source")
        else:
            self.join(doc, "source")
