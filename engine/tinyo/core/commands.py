"""Provides commands: the loop's run state (running, paused, stopping) and what each command does to
the engine, whether it came from a method call (the console, the CLI in this process) or as a request
left in the state file by ``tinyo rerun|inject|fire|pause|resume|cancel`` in another process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .. import events as ev
from ..clock import Clock
from ..dag import Graph
from ..errors import StoreError
from ..messages import (
    Cancel,
    Command,
    FireTimer,
    Pause,
    Rerun,
    RerunDocument,
    Rescan,
    Resume,
    Stop,
)

if TYPE_CHECKING:
    from ..store import Store
    from .inflow import Inflow
    from .outbox import Outbox
    from .runbook import RunBook


@dataclass(slots=True)
class RunState:
    """Where the loop is in its life (loop thread writes; other threads may read a field)."""

    state: ev.EngineStateName = "starting"
    started_at: float | None = None
    paused: bool = False
    stop_requested: bool = False
    stop_grace: float = 10.0
    stop_began: float = 0.0
    """Monotonic time the stop began (running ops get ``stop_grace`` seconds from then)."""


class Commands:
    """Commands applied on the loop thread."""

    def __init__(self, run: RunState, graph: Graph, store: Store, inflow: Inflow, runbook: RunBook,
                 outbox: Outbox, clock: Clock, touched: list[str], timer_names: set[str]) -> None:
        self.run = run
        self.graph = graph
        self.store = store
        self.inflow = inflow
        self.runbook = runbook
        self.outbox = outbox
        self.clock = clock
        self.touched = touched
        self.timer_names = timer_names

    def set_state(self, state: ev.EngineStateName, detail: str = "") -> None:
        """Record the loop's state and announce it (with the events kept while paused)."""
        self.run.state = state
        buffered = self.inflow.pending if self.run.paused else 0
        self.outbox.emit(ev.EngineState(self.clock.time(), state, detail, buffered))

    def apply(self, command: Command) -> None:
        now = self.clock.time()
        if isinstance(command, FireTimer):
            self.inflow.fire(command.name, datetime.fromtimestamp(now), manual=True)
        elif isinstance(command, (Rerun, RerunDocument)):
            self._rerun(command)
        elif isinstance(command, Pause):
            if not self.run.paused:
                self.run.paused = True
                self.set_state("paused", f"paused: {self.inflow.pending} buffered")
        elif isinstance(command, Resume):
            if self.run.paused:
                self.run.paused = False
                self.set_state("running", "resumed")
        elif isinstance(command, Cancel):
            self.runbook.cancel(command.run_id)
        elif isinstance(command, Rescan):
            self.inflow.rescan_wanted = True
        elif isinstance(command, Stop):
            if not self.run.stop_requested:
                self.run.stop_requested = True
                self.run.stop_began = time.monotonic()
                self.run.stop_grace = command.grace
                self.runbook.stopping = True
            else:
                self.run.stop_grace = min(self.run.stop_grace, command.grace)  # a second Ctrl-C: stop ops now

    def _rerun(self, command: Rerun | RerunDocument) -> None:
        now = self.clock.time()
        if isinstance(command, Rerun):
            target, des_id = command.des_id, command.des_id
        else:
            target, des_id = command.name, self.graph.producer_of(command.name)
        if des_id is None or self.graph.node(des_id) is None:
            what = "DES" if isinstance(command, Rerun) else "DES producing document"
            self.outbox.emit(ev.EngineNotice(now, "error", f"rerun: no {what} {target!r}"))
            return
        ids = [des_id, *(self.graph.downstream(des_id) if command.downstream else [])]
        rows = []
        for nid in ids:
            node = self.graph.node(nid)
            if node is None:
                continue
            node.forced = True
            self.touched.append(nid)
            stored = node.failed_state or ("ok" if node.trace is not None else "new")
            rows.append((stored, node.trace, node.failed_trace, True, nid))
        self.store.update_des(rows)
        self.outbox.emit(ev.EngineNotice(now, "info", f"rerun of {len(ids)} DES requested"))

    def poll_requests(self, room: int) -> None:
        """Apply the requests other processes left in the state file (at most ``room`` events taken in;
        the rest stay pending there until the next poll)."""
        try:
            requests = self.store.pending_requests()
        except Exception as exc:
            raise StoreError(f"{self.store.path}: cannot read requests ({exc})") from exc
        for req_id, kind, arg in requests:
            if len(self.inflow.own) >= room:
                break
            if kind in ("rerun", "rerun_down"):
                down = kind == "rerun_down"
                self.apply(Rerun(arg, down) if self.graph.has(arg) else RerunDocument(arg, down))
            elif kind == "inject":
                self.inflow.own.append(("manual", arg, None))
            elif kind == "fire" and arg in self.timer_names:
                self.apply(FireTimer(arg))
            elif kind == "pause":
                self.apply(Pause())
            elif kind == "resume":
                self.apply(Resume())
            elif kind == "cancel" and arg.isdigit():
                self.apply(Cancel(int(arg)))
            self.store.mark_request(req_id)
