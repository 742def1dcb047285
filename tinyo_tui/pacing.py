"""Provides ``Pacer``: when the console paints what it folded in, and how a key goes before both.

Under a flood there are far more facts than a person can read, and painting the panes costs far more
than folding a fact into the model (~5 us). So the console paces the two apart:

- the panes repaint at most every ``PAINT_INTERVAL`` seconds while facts flood in (longer when a paint
  itself gets expensive): the changes of the drain ticks in between are merged and painted at once. A
  drain tick that folded in fewer than ``FLOOD_FACTS`` facts since the last paint paints at once, so a
  trickle shows as soon as it is folded in (and a key acts on what it shows);
- a key holds the drains and the paints back until the screen has painted what the key did (at most
  ``KEY_HOLD`` seconds, for a key a widget keeps to itself): a key waits for one slice of folding at most,
  never for a repaint of every pane.

The app calls ``changed`` from a drain tick and ``paint`` to paint at once (rare changes: a note, a resync,
the boot); ``input_posted`` from any thread (the driver's), everything else on the UI loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .state import Changes

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

PAINT_INTERVAL = 0.2
"""Seconds between two repaints of the panes while facts flow (5 a second: more than a person reads)."""
PAINT_SHARE = 3.0
"""A paint comes at most once per this many times what the last paint cost (the loop stays free for keys)."""
MAX_PAINT_INTERVAL = 0.5
"""Even when painting is slow, the panes move at least twice a second."""
FLOOD_FACTS = 200
"""Facts folded in since the last paint below which a drain tick paints at once (a trickle, not a flood)."""
KEY_HOLD = 0.15
"""The longest a key holds folding and painting back (a key a widget keeps never reaches the app)."""


class Pacer:
    """The console's paint pacing and key priority (see the module)."""

    def __init__(self, app: App[Any], show: Callable[[Changes], None]) -> None:
        self.app = app
        self._show = show
        """Tells the screens what changed."""
        self.clock: Callable[[], float] = time.perf_counter
        """Seconds, for when a paint is due and how long a key holds (a test may step its own)."""
        self._pending = Changes()
        self._pending_facts = 0
        self._timer: Timer | None = None
        self._painted_at = 0.0
        self.paint_cost = 0.0
        """Moving average of a paint (posting the changes until the screen shows them), in seconds."""
        self._input_at = 0.0
        self.resume: Callable[[], None] | None = None
        """Called once a key's hold ends (the drain that was held back)."""

    # ------------------------------------------------------------------ keys
    def input_posted(self) -> None:
        """A key was posted to the app (any thread): hold folding and painting back."""
        self._input_at = self.clock()

    def input_seen(self) -> None:
        """The key reached the app (its bindings ran): release once the screen has painted it."""
        if self._input_at and self.app.screen_stack:
            self.app.screen.call_after_refresh(self._input_painted)

    def holding(self) -> float:
        """Seconds a key still holds folding and painting back (0: not held)."""
        if not self._input_at:
            return 0.0
        left = KEY_HOLD - (self.clock() - self._input_at)
        if left <= 0:
            self._input_at = 0.0
            return 0.0
        return left

    def _input_painted(self) -> None:
        self._input_at = 0.0
        resume, self.resume = self.resume, None
        if resume is not None:
            resume()
        if self._timer is not None:  # armed for the end of the hold: the key's paint is done already
            self._timer.stop()
            self._timer = None
            self._arm(self._next_paint())

    # ------------------------------------------------------------------ paints
    def changed(self, changes: Changes, facts: int) -> None:
        """A drain tick folded ``facts`` in, which made ``changes``: paint them now if a paint is due or
        they are few, else with the next paint."""
        self._pending.merge(changes)
        self._pending_facts += facts
        if self._timer is None:
            self._arm(self._next_paint() if self._pending_facts >= FLOOD_FACTS else 0.0)

    def paint(self, changes: Changes | None = None) -> None:
        """Paint ``changes`` (and whatever waits) now."""
        if changes is not None:
            self._pending.merge(changes)
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        pending, self._pending, self._pending_facts = self._pending, Changes(), 0
        if (not pending and changes is None) or not self.app.screen_stack:
            return  # nothing to paint, or the app is closing (its screens are gone)
        self._painted_at = self.clock()
        started = time.perf_counter()
        self._show(pending)
        self.app.call_after_refresh(self._measure, started)

    def _next_paint(self) -> float:
        """Seconds until the next paint may come."""
        interval = min(MAX_PAINT_INTERVAL, max(PAINT_INTERVAL, PAINT_SHARE * self.paint_cost))
        return max(0.0, self._painted_at + interval - self.clock())

    def _arm(self, delay: float) -> None:
        delay = max(delay, self.holding())  # a key's paint comes first
        if delay <= 0:
            self.paint()
            return
        self._timer = self.app.set_timer(delay, self._due, name="paint")

    def _due(self) -> None:
        self._timer = None
        if self._pending:
            self._arm(0.0)
        else:
            self._pending_facts = 0

    def _measure(self, started: float) -> None:
        cost = time.perf_counter() - started
        self.paint_cost = cost if self.paint_cost == 0 else 0.7 * self.paint_cost + 0.3 * cost
