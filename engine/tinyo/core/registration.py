"""Provides registration: what the generators emitted becomes DES in the graph and the store, with
their ops as references a worker can import (kept once per distinct op list)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..clock import Clock
from ..dag import Graph, Node
from ..errors import DESRejected, OpNotImportable
from ..generators import Emission
from ..model import Execution
from ..store import dump_ops, load_ops

if TYPE_CHECKING:
    from ..recipe import OpResolver
    from ..store import Store
    from .documents import Documents
    from .outbox import Outbox

REGISTER_SLICE = 1000
"""DES registered from one emission before ready work is dispatched (bounds first-op latency)."""
OP_CACHE_MAX = 256
"""Distinct op lists whose names and stored (pickled) form are kept for reuse."""

Ops = tuple[tuple[str, Any], ...]
"""A DES's ops as (op reference ``module:qualname``, Config) pairs."""


def names(docs: Iterable[str]) -> tuple[str, ...]:
    """Document names as a small tuple of interned strings: one copy of each name is shared by the
    version map, the reverse index and every DES that names it (a 1-item frozenset costs 216 bytes)."""
    return tuple(map(sys.intern, docs))


def label(given: str, event: str) -> str:
    """What a DES records as its making: the generator's given name, and the event when it differs."""
    return sys.intern(given) if given == event else f"{given} (from {event})"


def event_mark(emission: Emission) -> tuple[str, str | None, int]:
    """An event's (status, detail, id) for the store, once its emission is registered."""
    errors = emission.errors
    detail = f"{len(emission.des)} DES" + (f", {len(errors)} generator error(s)" if errors else "")
    return ("error" if errors else "done"), detail, emission.event_id


class Registration:
    """Emitted DES into the graph and the store; the live ops of the DES in memory. Loop thread only."""

    def __init__(self, graph: Graph, store: Store, documents: Documents, outbox: Outbox, clock: Clock,
                 resolver: OpResolver, execution: Execution, touched: list[str]) -> None:
        self.graph = graph
        self.store = store
        self.documents = documents
        self.outbox = outbox
        self.clock = clock
        self.resolver = resolver
        self.execution = execution
        self.touched = touched
        self.ops: dict[str, Ops] = {}
        """The ops of DES in memory (a DES evicted from memory reloads them from the store)."""
        self.total = 0
        """DES in the store."""
        self._op_cache: dict[tuple[tuple[int, int | str], ...], tuple[Any, Ops, tuple[str, ...], bytes | None]] = {}
        self._shared: dict[tuple[str, ...], tuple[str, ...]] = {}
        """Op-name tuples shared by every DES with the same ops (memory per DES stays small)."""
        self._rows: list[tuple[Any, ...]] | None = None
        """While a batch is open (``begin_batch``): the rows of the DES it registered, stored together."""

    def node_from_row(self, row: Any) -> Node:
        """A graph node for a DES read back from the store."""
        node = Node(row.id, names(row.deps), names(row.targs), self._shared.setdefault(row.ops_desc, row.ops_desc),
                    row.generator, row.event,
                    trace=row.trace, failed_trace=row.failed_trace, forced=row.forced)
        if row.state in ("failed", "cancelled"):
            node.failed_state = row.state  # type: ignore[assignment]
            node.error = self.store.last_error(row.id)
        return node

    def prefetch(self, emissions: list[Emission]) -> None:
        """The store's facts on every document and DES a batch's generators emitted, looked up together."""
        docs: list[str] = []
        ids: list[str] = []
        targs: list[frozenset[str]] = []
        for emission in emissions:
            for _, _, des in emission.des:
                ids.append(des.id)
                targs.append(des.targs)
                docs.extend(des.deps)
                docs.extend(des.targs)
        if ids:
            self.graph.prefetch(docs, ids, targs)

    def begin_batch(self) -> None:
        """From now until ``end_batch``, the rows of new DES go to the store together (``write_batch``)."""
        if self._rows is None:
            self._rows = []

    def write_batch(self) -> None:
        """Hand the open batch's rows to the store (before any commit: the DES in memory are in it)."""
        if self._rows:
            rows, self._rows = self._rows, []
            self.store.add_des(rows)

    def end_batch(self) -> None:
        self.write_batch()
        self._rows = None

    def apply_emission(self, emission: Emission, flush: Callable[[], None]) -> tuple[str, str | None, int]:
        """Register one event's emission; returns its event's (status, detail, id) for the store.
        ``flush``: dispatch and commit what is ready so far (called every REGISTER_SLICE DES)."""
        now = self.clock.time()
        for generator, given, message, tb in emission.errors:
            self.outbox.emit(ev.GeneratorError(now, generator, given, message, tb))
        register, event = self.register, emission.event
        for index, (generator, given, des) in enumerate(emission.des, 1):
            register(des, generator, given, event, now)
            if index % REGISTER_SLICE == 0:
                flush()  # a huge emission: start dispatching what is ready instead of registering all first
        return event_mark(emission)

    def register_batch(self, emissions: list[Emission], flush: Callable[[], None]) -> list[tuple[str, str | None, int]]:
        """Register a batch's emissions, in order, as ``apply_emission`` does each; returns their events' marks.

        A new DES of the common shape is added on a short path: the batch's prefetch found it absent, every
        target is a name nothing produces, reads or versions, every dep has a version (so no target conflict,
        no cycle, no dep to look at) and its ops are known. Its targets join their groups with the batch's.
        Anything else (a known DES, a conflict, a dep without a version, an emission of REGISTER_SLICE DES or
        more) takes ``register``'s general path, in its place in the order."""
        graph, documents = self.graph, self.documents
        # the graph's maps, read as ``is_new`` and ``unnamed`` read them (no call per DES); bound again after a
        # huge emission's slices, which flush (and may write the batch's rows, swapping their list)
        versions, consumers, producer, nodes, absent = (graph.versions, graph.consumers, graph.producer,
                                                        graph.nodes, graph._absent)
        op_facts, register = self._op_facts, self.register
        emit, touch, live_ops, joining = self.outbox.emit, self.touched.append, self.ops, documents.joining
        fresh, kept = self.outbox.fresh, self.outbox.kept  # where each DESRegistered waits (its first state told in it)
        intern, cache = sys.intern, self._op_cache
        rows = self._rows
        if rows is None:
            rows = self._rows = []  # handed to the store with the batch (``end_batch``) or at a commit
        clock, registered, refused = self.clock, ev.DESRegistered, (DESRejected, OpNotImportable)
        marks: list[tuple[str, str | None, int]] = []
        for emission in emissions:
            made, errors = emission.des, emission.errors
            if len(made) >= REGISTER_SLICE:
                documents.flush_joins()
                marks.append(self.apply_emission(emission, flush))
                rows = self._rows if self._rows is not None else rows
                versions, consumers, producer, nodes, absent = (graph.versions, graph.consumers, graph.producer,
                                                                graph.nodes, graph._absent)
                continue
            now = clock.time()
            for generator, given, message, tb in errors:
                emit(ev.GeneratorError(now, generator, given, message, tb))
            event = emission.event
            for generator, given, des in made:
                des_id = des.id
                deps, targs = des.deps, des.targs
                refs = None
                if des_id in absent and des_id not in nodes:  # ``graph.is_new``
                    for targ in targs:  # ``graph.unnamed``
                        if versions.get(targ) != 0 or producer.get(targ, True) is not None or consumers.get(targ, True):
                            break
                    else:
                        for dep in deps:
                            if not versions.get(dep) or dep not in consumers:
                                break
                        else:
                            ops = des.ops
                            if len(ops) == 1:  # ``_op_facts``'s cache, asked here for the one op most DES have
                                fn, cfg = ops[0]
                                hit = cache.get(((id(fn), cfg.value_key() or id(cfg)),))
                                if hit is not None:
                                    _, refs, ops_desc, blob = hit
                            if refs is None:
                                try:
                                    refs, ops_desc, blob = op_facts(des)
                                except refused:
                                    refs = None  # the general path refuses it, with its facts
                if refs is None:
                    documents.flush_joins()
                    register(des, generator, given, event, now)
                    continue
                made_by = intern(given) if given == event else f"{given} (from {event})"  # ``label``
                targ_names = tuple(map(intern, targs))
                node = Node(des_id, tuple(map(intern, deps)), targ_names, ops_desc, generator, made_by)
                for targ in targ_names:
                    joining.append((targ, "never built"))
                    producer[targ] = des_id
                # ``graph.add``, for a DES checked above: absent, each dep's readers loaded (complete) already
                absent.discard(des_id)
                for dep in node.deps:
                    readers = consumers[dep]
                    if readers.__class__ is frozenset:
                        consumers[dep] = {des_id}  # its first reader: a set of its own, not the shared empty one
                    else:
                        readers.add(des_id)
                nodes[des_id] = node
                self.total += 1
                live_ops[des_id] = refs
                rows.append((des_id, deps, targs, ops_desc, blob, generator, made_by, now))
                touch(des_id)
                fresh[des_id] = kept()
                emit(registered(now, des_id, deps, targs, ops_desc, generator, made_by))
            marks.append(event_mark(emission))
        documents.flush_joins()
        return marks

    def register(self, des: Any, generator: str, given: str, event: str, now: float | None = None) -> bool:
        """Add ``des`` to the graph and the store unless it is known; False if known or rejected. ``now``: the
        engine clock's time, when the caller has it."""
        des_id = des.id
        graph = self.graph
        if graph.has(des_id):
            if des_id in graph.nodes and des_id not in self.ops:
                self.ops[des_id] = self._refs(des)  # reloaded from the store: keep the live ops
            return False
        if now is None:
            now = self.clock.time()
        deps, targs = des.deps, des.targs
        try:
            refs, ops_desc, blob = self._op_facts(des)
            graph.check(des_id, deps, targs)
        except (DESRejected, OpNotImportable) as exc:
            self.outbox.emit(ev.DESRejectedEvent(now, des_id, generator, given, str(exc)))
            self.outbox.emit(ev.GeneratorError(now, generator, given, f"DES {des_id} rejected: {exc}", ""))
            return False
        node = Node(des_id, names(deps), names(targs), ops_desc, generator, label(given, event))
        self.documents.targets_registered(node)
        graph.add(node)
        self.total += 1
        self.ops[des_id] = refs
        row = (des_id, deps, targs, ops_desc, blob, generator, node.event, now)
        rows = self._rows
        if rows is None:
            self.store.add_des([row])
        else:
            rows.append(row)
        versions = graph.versions
        for dep in node.deps:
            if dep[:1] == "/" and not versions.get(dep) and graph.version(dep) is None:
                self.documents.refresh_file(dep, by="found")
        self.touched.append(des_id)
        outbox = self.outbox
        outbox.fresh[des_id] = outbox.kept()
        outbox.emit(ev.DESRegistered(now, des_id, deps, targs, ops_desc, generator, node.event))
        return True

    def load_ops(self, des_id: str) -> Ops | None:
        """The ops of a DES to run: live, else from the store; None (and the DES failed) if they cannot be."""
        ops = self.ops.get(des_id)
        if ops is not None:
            return ops
        row = self.store.des_row(des_id)
        if row is None or row.ops_blob is None:
            node = self.graph.nodes[des_id]
            node.status = None
            node.failed_state = "failed"
            node.failed_trace = self.graph.current(node)
            self.outbox.notice("error", f"DES {des_id}: its ops were not stored (not importable); it runs again "
                                        "when its generator emits it")
            self.touched.append(des_id)
            return None
        try:
            ops = tuple(load_ops(row.ops_blob))
        except Exception as exc:
            self.outbox.notice("error", f"DES {des_id}: cannot load its stored ops: {exc}")
            return None
        self.ops[des_id] = ops
        return ops

    def stored_ops(self, des_id: str) -> Ops:
        """The ops of a DES for display: live, else from the store, else none (never fails)."""
        ops = self.ops.get(des_id)
        if ops is not None:
            return ops
        row = self.store.des_row(des_id)
        if row is None or row.ops_blob is None:
            return ()
        try:
            return tuple(load_ops(row.ops_blob))
        except Exception:
            return ()

    def release(self, des_id: str) -> None:
        """A DES is up to date: its ops are reloaded from the store if it runs again (unless they live
        only in memory)."""
        ops = self.ops.get(des_id)
        if ops is None:
            return
        for ref, _ in ops:
            if ref[:8] == "<memory>":
                return
        del self.ops[des_id]

    def trim(self) -> None:
        """After the graph evicted DES from memory: drop their ops too."""
        self.ops = {k: v for k, v in self.ops.items() if k in self.graph.nodes}

    def _op_facts(self, des: Any) -> tuple[Ops, tuple[str, ...], bytes | None]:
        """(the DES's ops as references, their names, the ops as stored for a restart (None: they cannot be)),
        worked out once per distinct list of ops and Configs: generators mostly pass the same functions to many
        DES, and the same Config object or equal plain ones (``Config.value_key``). OpNotImportable if an op
        cannot be referenced."""
        ops = des.ops
        if len(ops) == 1:
            ((fn, cfg),) = ops
            key: tuple[tuple[int, int | str], ...] = ((id(fn), cfg.value_key() or id(cfg)),)
        else:
            key = tuple([(id(fn), cfg.value_key() or id(cfg)) for fn, cfg in ops])
        hit = self._op_cache.get(key)
        if hit is not None:  # the entry holds those objects (in ``ops``): no id is reused while it is cached
            return hit[1], hit[2], hit[3]
        refs = self._refs(des)
        ops_desc = tuple(ref.partition(":")[2] for ref, _ in refs)
        ops_desc = self._shared.setdefault(ops_desc, ops_desc)
        try:
            blob = dump_ops(list(refs)) if all(not r.startswith("<memory>") for r, _ in refs) else None
        except Exception:
            blob = None  # a Config value that cannot be pickled: the DES runs, but not after a restart
        if len(self._op_cache) >= OP_CACHE_MAX:
            self._op_cache.clear()
        self._op_cache[key] = (ops, refs, ops_desc, blob)
        return refs, ops_desc, blob

    def _refs(self, des: Any) -> Ops:
        strict = self.execution in (Execution.PROCESSES, Execution.DASK)
        out = []
        for fn, cfg in des.ops:
            try:
                out.append((self.resolver.ref(fn), cfg))
            except OpNotImportable:
                if strict:
                    raise
                ref = f"<memory>:{getattr(fn, '__qualname__', type(fn).__name__)}#{id(fn)}"
                self.resolver._objs[ref] = fn
                out.append((ref, cfg))
        return tuple(out)
