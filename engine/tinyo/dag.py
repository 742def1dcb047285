"""Provides the document DAG and its readiness rule: pure logic, no processes, no I/O.

Documents are nodes; each DES is a hyper-edge from its deps to its targs. A DES is ready when every
dep has a version, no dep is produced by a DES that is itself pending (queued, running, stale, or
failed — transitively), and either it never succeeded or the dep versions recorded at its last
success (its *trace*) differ from the current ones (verifying traces, as in Shake).

Each node caches its evaluated state and whether it *blocks* its consumers. ``settle`` re-evaluates
only the DES it is handed (those an event or a run touched) and walks on to consumers only when a
node's state or blocking flag changes (a consumer's reason names the state of the DES it waits for), so
per-event work is proportional to what the event touches, never to the size of the DAG.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable

from .dag_cycles import reject_cycle
from .dag_nodes import UP_TO_DATE, Backing, Node, RunStatus, State, Verdict  # noqa: F401 (re-exported)
from .errors import DESRejected

EVICT_MIN = 4000
"""Entries (DES plus cached document facts) a backed graph holds before its first eviction."""

EVICT_GROWTH = 1.0
"""After an eviction, the next waits until memory grew by this fraction of what stayed (at least
EVICT_MIN entries): eviction costs O(what stays), so this keeps it O(1) per entry over time."""

_RUNNING = Verdict("running", True, "running")
_RERUN = Verdict("stale", True, "rerun requested")
_NEVER_BUILT = Verdict("stale", True, "never built")
_OK = Verdict("ok", False, UP_TO_DATE)

_UNKNOWN = object()

NO_READERS: frozenset[str] = frozenset()
"""Every reader-less document's entry in the reverse index: one shared empty set (``add`` makes a set)."""


class Graph:
    """The document DAG with a reverse index (document → dependent DES).

    Without a ``backing`` every DES and document lives in memory. With one, memory holds only the
    *hot* part: every DES that is not up to date (so ``nodes`` holds every blocking DES), plus caches
    of versions, producers and consumers; ``evict`` drops up-to-date DES and cached entries, and a
    lookup that misses asks the backing. An evicted DES is up to date by construction, so it never
    blocks anyone and re-enters memory only when something touches it.
    """

    def __init__(self, backing: Backing | None = None) -> None:
        self.backing = backing
        self.versions: dict[str, int] = {}
        """Document → current version (0: known to have none; a cache when there is a backing)."""
        self.producer: dict[str, str | None] = {}
        """Document → id of the DES that produces it (None: none; a cache when there is a backing)."""
        self.consumers: dict[str, set[str] | frozenset[str]] = {}
        """Document → ids of every DES that reads it (the reverse index; always complete; none: NO_READERS)."""
        self.nodes: dict[str, Node] = {}
        self.gone: set[str] = set()
        """File documents whose file is gone (removed or renamed away after its event): their readers wait
        for it instead of running on nothing."""
        self.drifted: dict[str, str] = {}
        """Produced file documents whose file is not what their producer wrote: name -> what became of it
        ('is missing', 'changed since it was built'); their producer is stale."""
        self._absent: set[str] = set()
        """DES ids the last ``prefetch`` found in neither memory nor the backing."""
        self._evict_at = EVICT_MIN
        self._settled = 0
        """DES that became up to date since the last eviction."""

    # ------------------------------------------------------------ lookups
    def version(self, doc: str) -> int | None:
        """The current version of ``doc`` (None: it has none)."""
        v = self.versions.get(doc)
        if v is None:
            if self.backing is None:
                return None
            v = self.backing.versions([doc]).get(doc) or 0
            self.versions[doc] = v
        return v or None

    def producer_of(self, doc: str) -> str | None:
        """The id of the DES that produces ``doc``."""
        p = self.producer.get(doc, _UNKNOWN)
        if p is _UNKNOWN:
            if self.backing is None:
                return None
            p = self.producer[doc] = self.backing.producers([doc]).get(doc)
        return p  # type: ignore[return-value]

    def readers(self, doc: str) -> set[str] | frozenset[str]:
        """The ids of the DES that read ``doc`` (the live set: do not change it)."""
        c = self.consumers.get(doc)
        if c is None and self.backing is not None:
            found = self.backing.consumers([doc]).get(doc)
            c = self.consumers[doc] = set(found) if found else NO_READERS
        return c if c is not None else NO_READERS

    def node(self, des_id: str) -> Node | None:
        """The DES ``des_id``, brought back into memory if it was evicted."""
        n = self.nodes.get(des_id)
        if n is None and self.backing is not None:
            n = self.backing.node(des_id)
            if n is not None:
                n.state, n.was, n.blocking, n.reason = "ok", "ok", False, UP_TO_DATE
                self.nodes[des_id] = n
        return n

    def has(self, des_id: str) -> bool:
        """Whether the DES is known (in memory or in the backing)."""
        if des_id in self.nodes:
            return True
        return (self.backing is not None and des_id not in self._absent
                and des_id in self.backing.existing_des([des_id]))

    def is_new(self, des_id: str) -> bool:
        """Known not to exist, without a lookup: not in memory, and absent by the last ``prefetch``."""
        return des_id in self._absent and des_id not in self.nodes

    def unnamed(self, doc: str) -> bool:
        """Known to be named by nothing yet, without a lookup: no version, no producer, no reader (all three
        found absent by the last ``prefetch``)."""
        return self.versions.get(doc) == 0 and self.producer.get(doc, True) is None and not self.consumers.get(doc, True)

    def prefetch(self, docs: Iterable[str], des_ids: Iterable[str] = (), targs: Iterable[Iterable[str]] = ()) -> None:
        """Fill the caches for ``docs`` (and learn which of ``des_ids`` exist) with a few batched lookups,
        instead of one lookup per miss: for a batch of new events, most of them are misses.

        One lookup first finds which of the documents the backing has ever named; the names it does not
        know need nothing more (a burst of new files costs one query, not four). ``targs``, one per DES
        id when given, lets a DES whose targets are all such names be known absent without a lookup
        (a DES in the backing has named its targets there)."""
        backing = self.backing
        if backing is None:
            return
        versions, producer, consumers = self.versions, self.producer, self.consumers
        unknown = [d for d in dict.fromkeys(docs) if d not in versions or d not in producer or d not in consumers]
        unnamed: set[str] = set()
        docs: list[str] = []
        if unknown:
            named = backing.known(unknown)
            unnamed = {d for d in unknown if d not in named}
            for d in unnamed:
                # what this cycle added is in memory already (setdefault keeps it); the backing has nothing
                versions.setdefault(d, 0)
                producer.setdefault(d, None)
                consumers.setdefault(d, NO_READERS)
            docs = [d for d in unknown if d in named]
        want = [d for d in docs if d not in versions]
        if want:
            found = backing.versions(want)
            for d in want:
                versions[d] = found.get(d) or 0
        want = [d for d in docs if d not in producer]
        if want:
            owners = backing.producers(want)
            for d in want:
                producer[d] = owners.get(d)
        want = [d for d in docs if d not in consumers]
        if want:
            readers = backing.consumers(want)
            for d in want:
                consumers[d] = set(readers[d]) if readers.get(d) else NO_READERS
        des_ids = list(des_ids)
        ids = [i for i in dict.fromkeys(des_ids) if i not in self.nodes]
        if ids:
            given = dict(zip(des_ids, targs))
            absent = {i for i in ids if i in given and unnamed.issuperset(given[i])}
            ask = [i for i in ids if i not in absent]
            present = backing.existing_des(ask) if ask else set()
            self._absent = {i for i in ids if i not in present}

    def run_versions(self, node: Node) -> dict[str, int] | None:
        """The dep versions a run of ``node`` starting now reads, or None if an upstream DES blocks it now
        (one pass over the deps; ``{}`` when a dep has no version: no trace to record)."""
        producer, versions, nodes = self.producer, self.versions, self.nodes
        out: dict[str, int] = {}
        complete = True
        for dep in node.deps:
            owner = producer.get(dep, _UNKNOWN)
            if owner is _UNKNOWN:
                owner = self.producer_of(dep)
            if owner is not None:
                up = nodes.get(owner)
                if up is not None and up.blocking:
                    return None
            version = versions.get(dep) or self.version(dep)
            if version is None:
                complete = False
            else:
                out[dep] = version
        return out if complete else {}

    # ------------------------------------------------------------ structure
    def check(self, des_id: str, deps: Iterable[str], targs: Iterable[str]) -> None:
        """Raise DESRejected if adding this DES would create a target conflict or a cycle."""
        # a DES's own sets are frozensets already: not copied (this runs once per new DES)
        dep_set = deps if isinstance(deps, frozenset) else frozenset(deps)
        targ_set = targs if isinstance(targs, frozenset) else frozenset(targs)
        producer_of = self.producer_of
        for targ in (targ_set if len(targ_set) == 1 else sorted(targ_set)):
            owner = producer_of(targ)
            if owner is not None and owner != des_id:
                other = self.node(owner)
                ops = ", ".join(other.ops_desc) if other is not None else "-"
                generator = other.generator if other is not None else "?"
                raise DESRejected(
                    f"conflict: target {targ!r} is already produced by DES {owner} "
                    f"(ops {ops or '-'}, from generator {generator or '?'}); "
                    "two DES may not produce the same document"
                )
        if not dep_set.isdisjoint(targ_set):
            raise DESRejected(f"cycle: DES reads and writes {sorted(dep_set & targ_set)[0]!r}")
        readers = self.readers
        for t in targ_set:
            if readers(t):
                break
        else:
            return  # nothing reads the new targets yet (a new DES mostly): no path leads back to its deps
        reject_cycle(dep_set, targ_set, readers, self.node)  # the walk downstream from the new targets

    def add(self, node: Node) -> bool:
        """Add a DES (after ``check``). Returns False if it was already present."""
        nid = node.id
        if nid in self.nodes:
            return False
        self._absent.discard(nid)
        for dep in node.deps:
            readers = self.readers(dep)  # loads the complete set first, so adding keeps it complete
            if readers.__class__ is frozenset:
                self.consumers[dep] = {nid}  # its first reader: a set of its own, not the shared empty one
            else:
                readers.add(nid)  # type: ignore[union-attr]  (the live, stored set)
        self.nodes[node.id] = node
        for targ in node.targs:
            self.producer[targ] = node.id
        return True

    def downstream(self, des_id: str) -> list[str]:
        """Every DES that reads, directly or transitively, what ``des_id`` produces (BFS order)."""
        seen: set[str] = {des_id}
        order: list[str] = []
        frontier = deque([des_id])
        while frontier:
            node = self.node(frontier.popleft())
            for targ in (node.targs if node is not None else ()):
                for cid in list(self.readers(targ)):
                    if cid not in seen:
                        seen.add(cid)
                        order.append(cid)
                        frontier.append(cid)
        return order

    # ------------------------------------------------------------ versions
    def set_version(self, doc: str, version: int) -> list[str]:
        """Record a document's version; return the DES to re-evaluate (its consumers)."""
        if self.version(doc) == version:
            return []
        return list(self.advance(doc, version))

    def advance(self, doc: str, version: int) -> set[str] | frozenset[str]:
        """Record ``version`` for ``doc``, known to differ from its current one; returns the DES that read it
        (the live set: do not change it)."""
        self.versions[sys.intern(doc)] = version
        readers = self.consumers.get(doc)
        return readers if readers is not None else self.readers(doc)

    def current(self, node: Node) -> dict[str, int]:
        """The dep versions now (only meaningful when every dep has one)."""
        return {d: self.version(d) or 0 for d in node.deps}

    # ------------------------------------------------------------ memory
    def evict(self, keep: Iterable[str] = ()) -> int:
        """Drop up-to-date DES (except ``keep``) and the cached entries only they used; returns how many
        DES were dropped. A no-op without a backing, or until memory grew enough since the last one
        (``EVICT_MIN``, ``EVICT_GROWTH``)."""
        if self.backing is None:
            return 0
        size = len(self.nodes) + len(self.versions) + len(self.producer) + len(self.consumers)
        if size < self._evict_at and self._settled < max(EVICT_MIN, int(len(self.nodes) * EVICT_GROWTH)):
            return 0
        self._settled = 0
        pinned = set(keep)
        nodes = self.nodes
        drop = [n for nid, n in nodes.items()
                if n.state == "ok" and n.status is None and not n.forced and nid not in pinned]
        for n in drop:
            del nodes[n.id]
        hot_docs: set[str] = set()
        for n in nodes.values():
            hot_docs.update(n.deps)
            hot_docs.update(n.targs)
        versions, producer, consumers = self.versions, self.producer, self.consumers
        if len(versions) + len(producer) + len(consumers) - 3 * len(drop) > 2 * (3 * len(hot_docs) + EVICT_MIN):
            # many entries that no DES names (looked up for events, queries): a sweep of the whole caches
            self.versions = {d: v for d, v in versions.items() if d in hot_docs}
            self.producer = {d: p for d, p in producer.items() if d in hot_docs}
            self.consumers = {d: c for d, c in consumers.items() if d in hot_docs}
        else:  # the documents of the DES dropped, mostly (a burst's): only theirs go, not a copy of what stays
            for n in drop:
                for group in (n.deps, n.targs):
                    for d in group:
                        if d not in hot_docs:
                            versions.pop(d, None)
                            producer.pop(d, None)
                            consumers.pop(d, None)
        kept = len(self.nodes) + len(self.versions) + len(self.producer) + len(self.consumers)
        self._evict_at = kept + max(EVICT_MIN, int(kept * EVICT_GROWTH))
        return len(drop)

    # ------------------------------------------------------------ readiness
    def evaluate(self, node: Node) -> Verdict:
        """The state of ``node`` from its own record and its producers' cached states."""
        status = node.status
        if status is not None:
            if status == "running":
                return _RUNNING
            if status == "queued":
                return Verdict("queued", True, node.reason if node.state == "queued" else "ready; waiting for a worker")
            return Verdict("retry", True, node.reason or "waiting to retry")
        # one pass over the deps: blockers, missing versions and the current versions together (this runs several
        # times per DES; each lookup is a dict probe when the caches hold it); no list made while none block or miss
        blockers: list[tuple[str, Node]] | None = None
        missing: list[str] | None = None
        current: dict[str, int] = {}
        producer, versions, nodes, gone, nid = self.producer, self.versions, self.nodes, self.gone, node.id
        for dep in node.deps:
            owner = producer.get(dep, _UNKNOWN)
            if owner is not None:  # a cached None (a source document) needs no producer look-up
                if owner is _UNKNOWN:
                    owner = self.producer_of(dep)
                if owner is not None and owner != nid:
                    upstream = nodes.get(owner)
                    if upstream is not None and upstream.blocking:
                        if blockers is None:
                            blockers = []
                        blockers.append((dep, upstream))
                        continue
            version = versions.get(dep)
            if version is None:
                version = self.version(dep) or 0
            if not version or dep in gone:
                if missing is None:
                    missing = []
                missing.append(dep)
            current[dep] = version
        if blockers is not None or missing is not None:
            parts = [f"{dep} (DES {up.id} is {up.state})" for dep, up in sorted(blockers or (), key=lambda b: b[0])]
            parts += [f"{dep} ({'its file is gone' if dep in gone else 'no version yet'})"
                      for dep in sorted(missing or ())]
            return Verdict("waiting", blockers is not None, "waiting for " + ", ".join(parts))
        if node.forced:
            return _RERUN
        trace = node.trace
        if node.failed_state is not None and node.failed_trace == current:
            cause = f"{node.error}; " if node.error else ""
            return Verdict(node.failed_state, True, f"{cause}it runs again when a dep changes or on rerun")
        if trace is None:
            return _NEVER_BUILT
        if self.drifted:
            drift = [t for t in sorted(node.targs) if t in self.drifted]
            if drift:
                return Verdict("stale", True, "target " + ", ".join(f"{t} {self.drifted[t]}" for t in drift))
        if trace != current:
            changed = [f"{d} v{trace.get(d)} -> v{current[d]}" for d in sorted(current) if trace.get(d) != current[d]]
            return Verdict("stale", True, "dep changed: " + ", ".join(changed))
        return _OK

    def settle(self, touched: Iterable[str]) -> tuple[list[str], list[Node]]:
        """Re-evaluate ``touched`` DES, walking to consumers where blocking changed.

        Returns (ids that are ready to dispatch, nodes whose state changed); a changed node's ``was``
        holds its state before.
        """
        work = deque(touched)
        in_work = set(work)
        if len(work) > 1:
            work = self._upstream_first(work, in_work)
        evaluated: dict[str, None] = {}
        changed: dict[str, Node] = {}
        readers, evaluate, nodes = self.readers, self.evaluate, self.nodes
        while work:
            nid = work.popleft()
            in_work.discard(nid)
            node = nodes.get(nid) or self.node(nid)  # the backing only for an evicted DES
            if node is None:
                continue
            evaluated[nid] = None
            verdict = evaluate(node)
            # a consumer's verdict reads this DES's blocking flag and state (its reason names the state), never
            # this DES's reason: a new reason alone is told, and walks no further
            walk = verdict.state != node.state or verdict.blocking != node.blocking
            if (walk or verdict.reason != node.reason) and nid not in changed:
                node.was = node.state
                changed[nid] = node
                if verdict.state == "ok":
                    self._settled += 1
            node.state, node.blocking, node.reason = verdict.state, verdict.blocking, verdict.reason
            if walk:
                for targ in node.targs:
                    for cid in readers(targ):
                        if cid not in in_work and cid != nid:
                            in_work.add(cid)
                            work.append(cid)
        ready = [nid for nid in evaluated if nodes[nid].state == "stale"]
        return ready, list(changed.values())

    def _upstream_first(self, work: deque[str], in_work: set[str]) -> deque[str]:
        """``work`` with every DES whose dep's producer is in it too moved behind the others: a DES evaluated
        before its producer is evaluated again once that producer changes (a chain's next link, touched by its
        dep's new version, would be settled twice). Only the order changes, never the outcome; producers are
        looked up in memory only."""
        producer, nodes = self.producer, self.nodes
        first: list[str] = []
        later: list[str] = []
        for nid in work:
            node = nodes.get(nid)
            if node is not None and any(producer.get(dep) in in_work for dep in node.deps):
                later.append(nid)
            else:
                first.append(nid)
        return deque(first + later) if later else work

    def settle_leaves(self, touched: Iterable[str]) -> tuple[list[str], list[Node]] | None:
        """``settle(touched)`` in one pass with no queue, where it walks nowhere: every DES touched is in memory and
        a leaf (nothing is known to read its targets; with a backing, a target not in the reverse index may have
        readers there): a burst's new DES. None, with nothing changed, otherwise."""
        nodes, consumers, backed = self.nodes, self.consumers, self.backing is not None
        batch: list[Node] = []
        for nid in dict.fromkeys(touched):
            node = nodes.get(nid)
            if node is None:
                return None
            for targ in node.targs:
                readers = consumers.get(targ)
                if readers or (readers is None and backed):
                    return None
            batch.append(node)
        ready: list[str] = []
        changed: list[Node] = []
        evaluate = self.evaluate
        take = self._take
        for node in batch:
            verdict = evaluate(node)
            if take(node, verdict):
                changed.append(node)
            if verdict.state == "stale":
                ready.append(node.id)
        return ready, changed

    def settle_leaves_in(self, batch: Iterable[Node], states: frozenset[str]) -> tuple[list[Node], list[Node]]:
        """``settle([node.id])`` for each leaf of ``batch`` (the run book's, as runs start and end) in one pass: the
        nodes whose verdict, one of ``states``, changed them (``was``: their state before), and those ``settle``
        must decide, left as they are (a reader to tell; ready or blocked: dispatch's part), in ``batch``'s order."""
        consumers, backed, evaluate, take = self.consumers, self.backing is not None, self.evaluate, self._take
        changed: list[Node] = []
        undecided: list[Node] = []
        for node in batch:
            for targ in node.targs:  # a leaf, as in ``settle_leaves``
                readers = consumers.get(targ)
                if readers or (readers is None and backed):
                    undecided.append(node)
                    break
            else:
                verdict = evaluate(node)
                if verdict.state not in states:
                    undecided.append(node)
                elif take(node, verdict):
                    changed.append(node)
        return changed, undecided

    def _take(self, node: Node, verdict: Verdict) -> bool:
        """Give ``node`` a leaf's ``verdict`` if it changes anything (``was``: its state before); whether it did."""
        state = verdict.state
        if state == node.state and verdict.blocking == node.blocking and verdict.reason == node.reason:
            return False
        node.was = node.state
        if state == "ok":
            self._settled += 1
        node.state, node.blocking, node.reason = state, verdict.blocking, verdict.reason
        return True
