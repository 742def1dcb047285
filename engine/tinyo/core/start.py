"""Provides the loop's start: the worker and watcher processes, the state brought back from the store, the
timers and the first scan. Runs once, on the loop's thread, before its first cycle."""

from __future__ import annotations

from typing import Any

from .. import events as ev
from ..executors import make_executor

Loop = Any
"""The engine's ``core.loop.Loop`` (not imported: the loop imports this module)."""


def start(loop: Loop) -> None:
    """The loop's first steps, on its thread: helper processes, the state file, the watcher, the first scan
    (the loop commits what they found and announces it)."""
    now = loop.clock.time()
    loop.run.started_at = now
    loop.commands.set_state("starting", "loading state")
    # the worker and watcher processes start first (unless they were started before the engine was
    # built): they start (a Python each) while the state loads
    early = loop.early
    loop.executor = make_executor(
        loop.execution,
        recipe_path=str(loop.recipe.path),
        max_workers=loop.max_workers,
        sink=loop.report,
        resolver=loop.resolver,
        clock=loop.clock.time,
        address=loop.executor_address,
        store_path=loop.store.path,
        launched=early.take_workers(str(loop.recipe.path)) if early is not None else None,
    )
    loop.runbook.executor = loop.executor
    if loop.watch_files and loop.config.dirs:
        loop.inflow.start_watcher(early.take_watcher() if early is not None else None)
    if early is not None:
        early.dismiss()  # what this engine does not use
    attach = getattr(loop.executor, "attach", None)
    if attach is not None:
        attach(loop.wake)  # the process pool's reports are read on the loop's thread while it waits
    loop.executor.start()
    load_state(loop)
    loop.touched.extend(loop.documents.checks.all_targets(loop.store.file_targets()))
    loop.runbook.reconcile(loop.executor, str(loop.recipe.path))
    if loop.inflow.watcher is not None:
        loop.inflow.watcher.wait_ready()
    loop.inflow.start_timers(now)
    loop.inflow.scan()
    if loop.config.rescan_interval:
        loop.inflow.next_rescan = loop.clock.monotonic() + loop.config.rescan_interval
    loop.commands.set_state("running")


def load_state(loop: Loop) -> None:
    """Bring back the DES that may need work (the rest stay in the store until something touches
    them) and the document groups' counts."""
    store = loop.store
    graph = loop.graph
    for row in store.load_open_des():
        node = loop.registration.node_from_row(row)
        if row.state == "retry":
            # a retry was waiting for its backoff at the last stop: it runs now, as the attempt it was
            loop.runbook.attempts[row.id] = row.attempt
            node.forced = True
        graph.nodes[node.id] = node
        for targ in node.targs:
            graph.producer[targ] = node.id
    loop.documents.load_groups(graph.nodes.get)
    loop.registration.total = store.count("des")
    loop.dispatch.next_run_id = store.next_run_id()
    loop.inflow.pending = store.pending_events()
    loop.inflow.base = store.count("events")
    loop.touched.extend(graph.nodes)
    for node in graph.nodes.values():
        loop.outbox.emit(ev.DESRegistered(loop.clock.time(), node.id, frozenset(node.deps), frozenset(node.targs),
                                          node.ops_desc, node.generator, node.event, restored=True))
