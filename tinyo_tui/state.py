"""Provides the console's in-memory view of the engine, fed by bus events; pure Python, no Textual.

Everything here is bounded. The bridge hands batches of bus events to ``ConsoleState.apply``; it
returns a ``Changes`` that says which parts of the screen need repainting, so a pane repaints only
what moved. ``ConsoleState`` is built in layers, each in its own module and each seeing only the
ones below it, so a reader can take one in without the others:

- ``state_rows``: the rows and nodes, the bounds, and ``Changes``;
- ``state_stream``: the event stream and the output pane (``EventStream``);
- ``state_documents``: cached documents and DES, group counts, DES state counts (``DocumentCache``);
- ``state_work``: runs, workers, flow lanes and the engine's state (``WorkTracker``);
- here: the header's queries, and ``apply``, which routes each fact to its layer's handler.

The panes import the row types from here as well as ``ConsoleState``.
"""

from __future__ import annotations

from tinyo import events as ev
from tinyo.groups import group_key

from .state_rows import (
    _RATE_WINDOW, COUNTED, DES_TO_DOC, MAX_CACHED, MAX_EVENT_ROWS, MAX_FLOW_RUNS, MAX_OUTPUT_ROWS, Changes,
    DesNode, DocNode, DocState, EventRow, OutputRow, RowKind, WorkerRow,
)
from .state_work import WorkTracker

__all__ = [
    "COUNTED", "DES_TO_DOC", "MAX_CACHED", "MAX_EVENT_ROWS", "MAX_FLOW_RUNS", "MAX_OUTPUT_ROWS", "_RATE_WINDOW",
    "Changes", "ConsoleState", "DesNode", "DocNode", "DocState", "EventRow", "OutputRow", "RowKind", "WorkerRow",
    "group_key",
]


class ConsoleState(WorkTracker):
    """The console's model of the engine (bounds as in ``WorkTracker``). Call ``apply`` on the UI thread only."""

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

    def uptime(self, now: float) -> float | None:
        """Seconds since the engine started running."""
        return None if self.started_at is None else max(0.0, now - self.started_at)

    # ------------------------------------------------------------------ updates
    def apply(self, batch: list[ev.BusEvent], changes: Changes | None = None, *, settle: bool = True) -> Changes:
        """Fold a batch of bus events (in publish order) into the model. ``settle=False``: more of the same
        drain follows, and the caller calls ``settle`` after the last."""
        ch = changes if changes is not None else Changes()
        for event in batch:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event, ch)
        if self.history.apply(batch):
            ch.runs = True
        if settle:
            self.settle(ch)
        return ch

    def settle(self, ch: Changes) -> None:
        """After a drain's batches: late events in their place (the whole stream is rebuilt: once a drain,
        not once a batch) and the caches back within their bounds."""
        self.place_late(ch)
        self.trim()


# Routed by exact type, one dict lookup per fact: floods arrive in batches of thousands. A fact with no
# handler changes nothing shown (a ``TimerFired``'s event comes as its own ``EventReceived``).
_HANDLERS = {
    ev.EventReceived: ConsoleState._on_received_versioned,
    ev.GeneratorError: ConsoleState._on_generator_error,
    ev.DESRejectedEvent: ConsoleState._on_rejected,
    ev.EngineNotice: ConsoleState._on_notice,
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
