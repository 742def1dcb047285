"""Provides the one bridge from the engine bus to the UI: bounded buffers and a ~12 Hz drain.

The bus calls ``Bridge.publish_many`` on the engine thread with every batch of events (a cycle's). It only appends to bounded
deques under a lock (quick, thread-safe) and, when the buffer goes from empty to non-empty, posts one
``BusWake`` to the app (``post_message`` is thread-safe). The app then resumes a ~12 Hz interval that
drains the buffers on the UI loop and folds them into ``ConsoleState`` in short slices; the panes repaint
what changed at their own pace (``pacing``: under a flood a few times a second, not once per fact nor per
tick). The interval pauses again on the first tick that finds nothing, so an idle console runs no timers.

A publisher that may wait (an attached engine's reader thread, not an engine loop) calls ``wait_for_room``
after each batch: past ``ROOM`` buffered facts it waits until the UI has taken them, so it stops reading
the engine's socket; the engine then counts the facts it cannot send, tells the console how many, and the
console asks its queries again. A console that folds facts in more slowly than they come thus holds a
bounded backlog, and does not spend its CPU reading facts it would drop.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from tinyo import events as ev

if TYPE_CHECKING:
    from textual.app import App

MAX_FACTS = 100_000
"""Bound on buffered state events between two drains (several seconds of a heavy flood)."""
ROOM = 12_000
"""Buffered state events past which ``wait_for_room`` holds a publisher that can wait (about three drains'
worth: the UI takes at most ``DRAIN_CHUNK`` a tick)."""
MAX_OUTPUT = 5_000
"""Bound on buffered op output lines between two drains; older lines are dropped and counted."""


class Bridge:
    """The bus subscriber and its buffers. ``drain`` is called on the UI loop only."""

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._detached = False
        self._facts: deque[ev.BusEvent] = deque()
        self._output: deque[ev.OpOutput] = deque(maxlen=MAX_OUTPUT)
        self._metrics: dict[tuple[str, str, int], ev.FlowMetrics] = {}
        self._pending = False
        self._wake = wake
        self.dropped_facts = 0
        """State events dropped because the UI fell behind (the app resyncs from the engine)."""
        self.dropped_output = 0
        """Output lines dropped between two drains."""
        self.received = 0
        """Every event the bus handed over."""
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, bus: ev.Bus, app: App[object] | None = None) -> None:
        """Subscribe to ``bus``; wake ``app`` (with a BusWake message) when events arrive."""
        if app is not None:
            from .messages import BusWake

            def wake() -> None:
                # Before the app runs there is no loop to post to; the app drains once on mount.
                if app.is_running:
                    app.post_message(BusWake())

            self._wake = wake
        self._unsubscribe = bus.subscribe_batches(self.publish_many)

    def detach(self) -> None:
        """Stop listening to the bus (a publisher waiting for room goes on)."""
        with self._lock:
            self._detached = True
            self._room.notify_all()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def publish(self, event: ev.BusEvent) -> None:
        """The bus subscriber: runs on the engine thread, so it only buffers."""
        self.publish_many([event])

    def publish_many(self, events: list[ev.BusEvent]) -> None:
        """The bus's batch subscriber (a cycle's facts): one lock and at most one wake-up per batch."""
        wake = False
        with self._lock:
            self.received += len(events)
            for event in events:
                if isinstance(event, ev.OpOutput):
                    if len(self._output) == MAX_OUTPUT:
                        self.dropped_output += 1
                    self._output.append(event)
                elif isinstance(event, ev.FlowMetrics):
                    # Only the newest sample of a lane matters: coalesce by (flow run, step, instance).
                    self._metrics[(event.flow_run, event.step, event.instance)] = event
                else:
                    if len(self._facts) >= MAX_FACTS:
                        self._facts.popleft()
                        self.dropped_facts += 1
                    self._facts.append(event)
            if not self._pending:
                self._pending = wake = True
        if wake and self._wake is not None:
            self._wake()

    def wait_for_room(self, timeout: float = 1.0) -> bool:
        """Wait (up to ``timeout`` seconds) while ``ROOM`` or more state events wait for the UI; whether there is
        room now. For a publisher's own thread only, never an engine loop's."""
        with self._lock:
            return self._room.wait_for(lambda: len(self._facts) < ROOM or self._detached, timeout)

    def drain(self) -> list[ev.BusEvent]:
        """Everything buffered since the last drain, in publish order per kind (UI loop only).

        An empty result means the buffer is idle again; the next event posts a new wake-up.
        """
        with self._lock:
            facts, self._facts = self._facts, deque()
            output = list(self._output)
            self._output.clear()
            metrics = list(self._metrics.values())
            self._metrics.clear()
            self._pending = bool(facts or output or metrics)
            if facts:
                self._room.notify_all()
        batch: list[ev.BusEvent]
        if output:
            # Output lines interleave with facts by time; merging (never sorting) keeps each
            # stream's own order even if the wall clock steps back.
            batch = list(heapq.merge(facts, output, key=_ts))
        else:
            batch = list(facts)
        batch.extend(metrics)
        return batch


def _ts(event: ev.BusEvent) -> float:
    return event.ts
