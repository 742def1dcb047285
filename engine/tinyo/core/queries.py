"""Provides the engine's read-only answers to the typed queries (``tinyo.queries``): counters, a DES's
details, documents and their groups, the tree's view of a DES, the recent past and output lines.

``answer`` takes a query and calls the method named as the query's ``wire`` name with its arguments, on
the loop thread (``Engine.ask`` sends it there), but for the few answered by a part that has its own lock
(``on_loop`` False: the executor's workers, the control channel's clients)."""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..dag import Graph
from ..engine_state import DESDetails, DESInfo, DocInfo, EngineStats, RunInfo
from ..explain import explain_des, explain_document
from ..groups import GroupSummary
from ..history import History, des_of_event, read_history
from ..queries import ClientInfo, arguments

if TYPE_CHECKING:
    from .. import events as ev
    from ..executors import Executor, WorkerInfo
    from ..store import Store
    from .commands import RunState
    from .dispatch import Dispatch
    from .documents import Documents
    from .inflow import Inflow
    from .registration import Registration
    from .runbook import RunBook

READERS_SHOWN = 50
"""Readers of a document listed in a DocInfo."""


class Queries:
    """Answers from the loop's state; they change nothing."""

    def __init__(self, run: RunState, graph: Graph, store: Store, documents: Documents, registration: Registration,
                 dispatch: Dispatch, runbook: RunBook, inflow: Inflow, clock: Clock,
                 executor: Callable[[], Executor | None]) -> None:
        self.run = run
        self.graph = graph
        self.store = store
        self.docs = documents
        self.registration = registration
        self.dispatch = dispatch
        self.runbook = runbook
        self.inflow = inflow
        self.clock = clock
        self.executor = executor
        self.channel: Callable[[], list[ClientInfo]] = list
        """The control channel's clients: set by the channel serving this engine before it takes any."""

    def answer(self, query: Any) -> Any:
        """The answer to ``query`` (checked by the caller: ``queries.checked``)."""
        return getattr(self, query.wire)(**arguments(query))

    def run_status(self, run_id: int) -> str | None:
        """``queued`` or ``running`` for an open run, else its stored status; None when there is no such run."""
        run = self.runbook.open.get(run_id)
        if run is not None:
            return "queued" if run.start is None else "running"
        self.store.flush()
        return self.store.run_status(run_id)

    def stats(self) -> EngineStats:
        now = self.clock.time()
        started = self.run.started_at or now
        open_runs = self.runbook.open.values()
        return EngineStats(
            state=self.run.state,
            started_at=started,
            uptime=now - started,
            events_total=self.inflow.base + self.inflow.taken,
            events_per_s=self.inflow.rate.rate(now),
            queued=len(self.dispatch.ready) + sum(1 for r in open_runs if r.start is None),
            running=self.runbook.running_count(),
            failed=len(self.dispatch.failed),
            buffered=self.inflow.pending if self.run.paused else 0,
            des_total=self.registration.total,
            docs_total=self.docs.total,
        )

    def explain(self, name: str) -> str:
        if self.graph.has(name):
            return explain_des(self.graph, name)
        return explain_document(self.graph, name)

    def des_details(self, des_id: str) -> DESDetails | None:
        node = self.graph.node(des_id)
        if node is None:
            return None
        ops = [(ref.partition(":")[2], dict(cfg)) for ref, cfg in self.registration.stored_ops(des_id)]
        runs = self.store.runs_for(des_id)
        last_tb = next((r.traceback or r.error for r in reversed(runs) if r.status in ("failed", "cancelled")), None)
        open_run = next((r for r in self.runbook.open.values() if r.des_id == des_id), None)
        output = list(open_run.output or ()) if open_run else ((runs[-1].output or "").splitlines() if runs else [])
        return DESDetails(
            des_id=des_id, deps=frozenset(node.deps), targs=frozenset(node.targs), ops=ops, state=node.state,
            reason=node.reason,
            generator=node.generator, event=node.event,
            runs=[RunInfo(r.id, r.attempt, r.worker, r.start, r.end, r.status, r.error) for r in runs],
            last_traceback=last_tb, output=output,
        )

    def documents(self, prefix: str | None, limit: int) -> list[DocInfo]:
        return self.doc_infos(self.store.names_from(prefix or "", limit))

    def doc_info(self, name: str) -> DocInfo | None:
        state = self.docs.state_of(name)
        if state is None:
            return None
        owner = self.graph.producer_of(name)
        detail = ""
        if owner is not None:
            node = self.graph.nodes.get(owner)
            if node is not None and node.state in ("waiting", "stale", "failed", "retry"):
                detail = node.error if node.state == "failed" and node.error else node.reason
        readers = self.graph.readers(name)
        shown = tuple(heapq.nsmallest(READERS_SHOWN, readers))
        return DocInfo(name, self.graph.version(name), owner, state, detail, shown, len(readers))

    def groups_summary(self) -> list[GroupSummary]:
        return self.docs.groups.summaries()

    def doc_infos(self, names: Iterable[str]) -> list[DocInfo]:
        return [i for i in map(self.doc_info, names) if i is not None]

    def des_infos(self, ids: tuple[str, ...]) -> list[DESInfo]:
        return [i for i in map(self.des_info, ids) if i is not None]

    def find_documents(self, pattern: str, regex: bool, limit: int) -> list[str]:
        return self.store.find_names(name_matcher(pattern, regex), limit)

    def des_of_event(self, event: str, limit: int) -> list[str]:
        return des_of_event(self.store, event, limit)

    def history(self, events: int, runs: int, lines: int) -> History:
        return read_history(self.store, events, runs, lines)

    def output(self, limit: int) -> list[ev.OpOutput]:
        recent = self.runbook.recent_output
        return list(recent)[-limit:] if limit else []

    def workers(self) -> list[WorkerInfo]:
        executor = self.executor()
        return executor.workers() if executor is not None else []

    def clients(self) -> list[ClientInfo]:
        return self.channel()

    def group_members(self, pattern: str, offset: int, limit: int) -> list[DocInfo]:
        rows = self.store.group_members(pattern, offset, limit)
        return [i for i in (self.doc_info(name) for name, _, _ in rows) if i is not None]

    def locate(self, name: str) -> tuple[str, int] | None:
        pattern = self.store.group_of(name)
        return None if pattern is None else (pattern, self.store.group_index(pattern, name))

    def des_info(self, des_id: str) -> DESInfo | None:
        node = self.graph.nodes.get(des_id)
        if node is None:
            row = self.store.des_lookup(des_id)
            if row is None:
                return None
            node = self.registration.node_from_row(row)
            node.state, node.reason = "ok", ""
        run = next((r for r in self.runbook.open.values() if r.des_id == des_id), None) if node.status else None
        return DESInfo(des_id, tuple(sorted(node.deps)), tuple(sorted(node.targs)), node.ops_desc, node.generator,
                       node.event, node.state, node.reason, node.error,
                       run.run_id if run is not None else None, run.worker if run is not None else None)


def name_matcher(pattern: str, regex: bool) -> Callable[[str], Any]:
    """The console's search rule: a case-insensitive regex, or a substring when it is none (or not valid)."""
    if regex:
        try:
            return re.compile(pattern, re.IGNORECASE).search
        except re.error:
            pass
    lowered = pattern.lower()
    return lambda name: lowered in name.lower()
