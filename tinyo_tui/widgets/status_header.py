"""Provides StatusHeader: recipe, engine state, uptime, counts, rates with sparklines, paused badge.

Every figure fits at 80 columns: the header tries layouts from the widest (long labels, the
``tinyo`` badge, long sparklines of events/s and runs/s) to the narrowest (short labels, abbreviated
counts such as ``ev 9.9k``, no sparkline, a shortened recipe name), and shows the first that fits.
Counts, the uptime and the paused badge are never dropped; only decoration is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.timer import Timer
from textual.widget import Widget

from ..palette import Palette, glyph
from ..run_history import sparkline
from ..safe_text import uptime as uptime_text, visible
from ..state import _RATE_WINDOW, ConsoleState

_REVERSE = Style(reverse=True)


def abbreviate(count: int) -> str:
    """A count in at most five cells: ``999``, ``9.9k``, ``123k``, ``1.2M``, ``45M``, ``1.2G``."""
    if count < 1000:
        return str(count)
    value, units = count / 1000, "kMG"
    unit = 0
    while round(value) >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    return f"{value:.1f}{units[unit]}" if value < 9.95 else f"{value:.0f}{units[unit]}"


def rate(value: float) -> str:
    """A rate in a few cells: ``0``, ``0.4``, ``12``, ``1.2k``."""
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.1f}"
    return abbreviate(int(round(value)))


@dataclass(frozen=True)
class Layout:
    """One way to draw the header; the widest that fits is used."""

    badge: bool
    """Show the reversed `` tinyo `` badge."""
    long: bool
    """Long labels (``events 12,345``) or short ones (``ev 12.3k``)."""
    spark: int
    """Cells of each sparkline (0: none)."""
    runs: bool
    """Show the runs/s figure (and its sparkline)."""
    sep: int = 2
    """Spaces between figures."""


LAYOUTS: tuple[Layout, ...] = (
    Layout(True, True, 30, True),
    Layout(True, True, 20, True),
    Layout(True, True, 12, True),
    Layout(False, True, 10, True),
    Layout(False, False, 10, True),
    Layout(False, False, 8, True, 1),
    Layout(False, False, 6, False, 1),
    Layout(False, False, 0, True, 1),
    Layout(False, False, 0, False, 1),
)
"""From the widest to the narrowest; the last one also shortens the recipe name to fit."""

SPARK_SECONDS = max(layout.spark for layout in LAYOUTS)
"""Seconds of history the longest sparkline shows (one cell a second)."""


class StatusHeader(Widget):
    """One line at the top. Its figures come from the console model and the injected clock."""

    DEFAULT_CSS = """
    StatusHeader {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, recipe: str, state: ConsoleState, palette: Palette, now: Callable[[], float],
                 *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._recipe = recipe
        self._state = state
        self._palette = palette
        self._now = now
        self._fresh: Timer | None = None
        self.layout_used: Layout | None = None
        """The layout of the last paint (tests read it)."""

    def rename(self, recipe: str) -> None:
        """Show another name (the console re-attached to an engine with another pid)."""
        self._recipe = recipe
        self.refresh()

    def tick(self) -> None:
        """Recompute and repaint (called on drain ticks and the clock tick, never on its own)."""
        self.refresh()

    def _keep_fresh(self, moving: bool) -> None:
        """While the rates or a sparkline show activity they change every second, so repaint once a
        second until the last activity has left them; then no timer (an idle console costs nothing)."""
        if moving and self._fresh is None:
            self._fresh = self.set_interval(1.0, self.refresh, name="header-sparkline")
        elif not moving and self._fresh is not None:
            self._fresh.stop()
            self._fresh = None

    def render(self) -> Text:
        state = self._state
        now = self._now()
        width = self.size.width
        history = state.history
        events = history.events.series(now, SPARK_SECONDS)
        runs = history.finished.series(now, SPARK_SECONDS)
        for layout in LAYOUTS:
            left = self._left(layout)
            right = self._right(layout, now, events, runs)
            gap = width - left.cell_len - right.cell_len
            if gap >= 0:
                break
        self.layout_used = layout
        shown = max(layout.spark, int(_RATE_WINDOW))  # the seconds the figures on screen depend on
        self._keep_fresh(any(events[-shown:]) or any(runs[-shown:]))
        if gap < 0:
            # The narrowest layout still does not fit: the recipe name gives way, never a count.
            left = self._left(layout, room=max(4, len(visible(self._recipe)) + gap))
            gap = max(0, width - left.cell_len - right.cell_len)
        left.append(" " * gap)
        left.append_text(right)
        left.truncate(width, overflow="ellipsis")
        return left

    def _left(self, layout: Layout, room: int | None = None) -> Text:
        state = self._state
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        if layout.badge:
            text.append(" tinyo ", style="bold reverse")
        text.append(" ")
        name = visible(self._recipe)
        if room is not None and len(name) > room:
            name = name[: max(1, room - 1)] + "…"
        text.append(name, style="bold")
        text.append("  ")
        if state.paused:
            buffered = f": {state.buffered:,} buffered" if layout.long else f" {abbreviate(state.buffered)}"
            text.append(f" {glyph('paused')} paused{buffered} ", style=style("paused") + _REVERSE)
        else:
            engine_state = state.engine_state
            label = engine_state
            deadline = state.stop_deadline
            if deadline is not None and engine_state == "stopping":
                left = deadline - self._now()
                label = f"stopping {left:.0f}s (q: now)" if left >= 0.5 else "stopping now"
            text.append(f"{glyph(engine_state)} {label}",
                        style=style("up to date" if engine_state == "running" else engine_state))
        return text

    def _right(self, layout: Layout, now: float, events: list[int], runs: list[int]) -> Text:
        state = self._state
        style = self._palette.style
        muted = style("muted")
        long = layout.long
        text = Text(no_wrap=True, end="")

        def add(label: str, role: str = "muted", spark: list[int] | None = None) -> None:
            text.append(" " * layout.sep)
            text.append(label, style=style(role))
            if spark is not None and layout.spark:
                text.append(" ")
                text.append(sparkline(spark[-layout.spark:]), style=style("accent"))

        add(f"up {uptime_text(state.uptime(now))}")
        total = state.events_total
        add(f"events {total:,}" if long else f"ev {abbreviate(total)}")
        # Both rates over the last whole seconds, from the same counts the sparklines draw.
        window = int(_RATE_WINDOW)
        ev_rate = rate(sum(events[-window:]) / window)
        add(f"{ev_rate} ev/s" if long else f"{ev_rate}/s", spark=events)
        if layout.runs:
            run_rate = rate(sum(runs[-window:]) / window)
            add(f"{run_rate} runs/s" if long else f"runs {run_rate}/s", spark=runs)
        add(f"queued {state.queued:,}" if long else f"q {abbreviate(state.queued)}",
            "queued" if state.queued else "muted")
        add(f"running {state.running:,}" if long else f"run {abbreviate(state.running)}",
            "running" if state.running else "muted")
        add(f"failed {state.failed:,}" if long else f"fail {abbreviate(state.failed)}",
            "failed" if state.failed else "muted")
        text.append(" ", style=muted)
        return text
