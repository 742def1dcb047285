"""Provides dispatch: the DES touched this cycle are settled (readiness is the graph's pure logic),
the ready ones wait in order, and as many as the executor has room for become runs."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .. import events as ev
from ..clock import Clock
from ..dag import Graph, Node
from ..engine_state import OpenRun
from ..filecheck import MISSING
from ..store_rows import jmap
from ..worker import Task

if TYPE_CHECKING:
    from ..store import Store
    from .documents import Documents
    from .outbox import Outbox
    from .registration import Registration
    from .runbook import RunBook

_UNKNOWN = object()
"""``graph.producer.get``'s default: a document whose producer is not cached (a cached None is a source document)."""

READY_MAX = 2_000
"""DES ready and waiting for a worker past which no further events are fed to the generators: when
events arrive faster than ops run, they wait stored in order (not as DES in memory), nothing is lost."""


class Dispatch:
    """Readiness and the ready queue. Loop thread only."""

    def __init__(self, graph: Graph, store: Store, documents: Documents, registration: Registration,
                 runbook: RunBook, outbox: Outbox, clock: Clock, recipe_path: str, touched: list[str]) -> None:
        self.graph = graph
        self.store = store
        self.documents = documents
        self.registration = registration
        self.runbook = runbook
        self.outbox = outbox
        self.clock = clock
        self.recipe_path = recipe_path
        self.touched = touched
        """DES whose readiness must be settled (every part appends; ``settle`` drains)."""
        self.ready: deque[str] = deque()
        """DES ready to run, in the order they became so."""
        self.failed: set[str] = set()
        """DES failed for good (the header's count)."""
        self.next_run_id = 1
        self._labels: dict[tuple[str, ...], str] = {}  # op names (shared tuple) -> "a+b"

    def full(self) -> bool:
        """Enough is ready: stop feeding events to the generators until workers catch up."""
        return len(self.ready) >= READY_MAX

    def settle(self) -> None:
        """Work out the new state of every DES touched since the last settle; queue the ready ones."""
        if not self.touched:
            return
        touched = list(self.touched)
        self.touched.clear()
        self.documents.checks.built_targets(touched)  # a built DES whose target file drifted is stale, not up to date
        settled = self.graph.settle_leaves(touched)  # a burst's new DES: no walk, no queue
        ready, changed = settled if settled is not None else self.graph.settle(dict.fromkeys(touched))
        now = self.clock.time()
        emit, fresh, first_state = self.outbox.emit, self.outbox.fresh, self.outbox.first_state
        failed = self.failed
        told = self.runbook.told  # DES whose state this cycle's run facts told (started: running, finished: ok)
        queued = set(ready)
        changed_ids = {node.id for node in changed} if ready else set()
        moves: list[tuple[tuple[str, ...] | frozenset[str], str, str]] = []  # (targets, old state, new state)
        for node in changed:
            if node.state == "failed":
                failed.add(node.id)
            elif failed:
                failed.discard(node.id)
            if node.id in queued:
                continue  # told once below, as queued (its reason says why it runs), not stale then queued
            moves.append((node.targs, node.was, node.state))
            said = told.pop(node.id, None)
            if said != node.state:
                if said is None and node.was == "new" and fresh and first_state(node.id, node.state, node.reason):
                    continue  # its first state, told in its DESRegistered of this cycle
                emit(ev.DESStateChanged(now, node.id, node.state, node.reason, said or node.was, node.targs))
        nodes, waiting = self.graph.nodes, self.ready
        for des_id in ready:
            node = nodes[des_id]
            reason = node.reason
            node.status = "queued"
            was, node.state = node.state, "queued"
            node.reason = f"queued: {reason}"
            waiting.append(des_id)
            before = node.was if des_id in changed_ids else was
            moves.append((node.targs, before, "queued"))
            said = told.pop(des_id, None) if told else None
            if said is None and before == "new" and fresh and first_state(des_id, "queued", node.reason):
                continue  # its first state, told in its DESRegistered of this cycle (a burst's file: one fact less)
            emit(ev.DESStateChanged(now, des_id, "queued", node.reason, said or before, node.targs))
        self.documents.des_moved(moves)
        if told:
            for des_id, said in told.items():  # a run fact told a state its DES has left since, unseen here
                node = nodes.get(des_id)
                if node is not None and node.state != said:
                    emit(ev.DESStateChanged(now, des_id, node.state, node.reason, said, node.targs))
            told.clear()

    def take(self, slots: int) -> list[Task]:
        """Up to ``slots`` tasks: runs given back first, then new runs of ready DES (recorded as queued)."""
        runbook = self.runbook
        tasks: list[Task] = []
        rows = []
        while slots > 0 and runbook.requeue:
            run = runbook.requeue.popleft()
            if run.run_id in runbook.open:
                run.submitted = True
                tasks.append(run.task)
                slots -= 1
        graph, ready, registration = self.graph, self.ready, self.registration
        nodes, producer, versions, run_versions = graph.nodes, graph.producer, graph.versions, graph.run_versions
        live_ops, load_ops, attempts, labels, open_runs = registration.ops, registration.load_ops, runbook.attempts, \
            self._labels, runbook.open
        checks, recipe_path, run_id = self.documents.checks, self.recipe_path, self.next_run_id
        present = checks.present
        while slots > 0 and ready:
            des_id = ready.popleft()
            node = nodes[des_id]
            deps = node.deps
            if len(deps) == 1:  # ``Graph.run_versions`` of one dep whose caches hold it (most), inline
                (dep,) = deps
                version = versions.get(dep)
                owner = producer.get(dep, _UNKNOWN)
                if version is None or owner is _UNKNOWN:
                    dep_versions = run_versions(node)
                elif owner is not None and (up := nodes.get(owner)) is not None and up.blocking:
                    dep_versions = None
                else:
                    dep_versions = {dep: version} if version else {}
            else:
                dep_versions = run_versions(node)
            if dep_versions is None:
                # an upstream DES became pending since ``node`` was queued (a later event changed its input):
                # back to waiting, settled again next cycle behind it; it runs after it, once, on what it makes
                node.status = None
                self.touched.append(des_id)
                continue
            gone = None
            for dep in deps:
                if dep[:1] == "/" and dep not in present:  # a file dep not seen this cycle: is it still there?
                    gone = checks.gone_deps(node)
                    break
            if gone:
                self._wait_for_files(node, gone)
                continue
            ops = live_ops.get(des_id) or load_ops(des_id)
            if ops is None:
                continue
            attempt = attempts.get(des_id, 1) if attempts else 1
            task = Task(run_id, des_id, attempt, recipe_path, ops, frozenset(node.deps), frozenset(node.targs))
            label = labels.get(node.ops_desc)
            if label is None:
                label = labels[node.ops_desc] = "+".join(node.ops_desc)  # == task.op_label
            dep_text = jmap(dep_versions)
            open_runs[run_id] = OpenRun(run_id, des_id, attempt, task, dep_versions, label, node.targs,
                                        dep_text=dep_text)
            rows.append((run_id, des_id, attempt, dep_text))
            tasks.append(task)
            run_id += 1
            slots -= 1
        self.next_run_id = run_id
        if rows:
            self.store.add_runs(rows, next(iter(open_runs)))  # the oldest open run: ids grow in insertion order
        return tasks

    def _wait_for_files(self, node: Node, gone: list[str]) -> None:
        """The DES goes back to waiting: a file dep of ``node`` is gone as it is about to run (``gone``). It
        waits for the file (or, for a produced dep, for its producer to make it again)."""
        for dep in gone:
            owner = self.graph.producer_of(dep)
            if owner is not None:
                self.graph.drifted[dep] = MISSING
                self.touched.append(owner)
            else:
                self.documents.file_gone(dep)
        node.status = None
        self.touched.append(node.id)  # settled again next cycle (the loop sees touched DES as more to do)

    def waiting(self) -> bool:
        """Runs wait for a worker (ready DES or runs given back)."""
        return bool(self.ready or self.runbook.requeue)
