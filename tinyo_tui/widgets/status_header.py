"""Provides StatusHeader: recipe, engine state, uptime, events/s, queue counts and the paused badge."""

from __future__ import annotations

from collections.abc import Callable

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from ..palette import Palette, glyph
from ..safe_text import uptime as uptime_text, visible
from ..state import ConsoleState

_REVERSE = Style(reverse=True)


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

    def tick(self) -> None:
        """Recompute and repaint (called on drain ticks and the clock tick, never on its own)."""
        self.refresh()

    def render(self) -> Text:
        state = self._state
        style = self._palette.style
        now = self._now()
        engine_state = state.engine_state
        width = self.size.width
        uptime = state.uptime(now)
        # (priority, label, role): the lowest priorities are dropped first when the line is too narrow.
        parts: list[tuple[int, str, str]] = [
            (1, f"up {uptime_text(uptime)}", "muted"),
            (2, f"{state.events_per_s(now):.1f} ev/s", "muted"),
            (5, f"queued {state.queued}", "queued" if state.queued else "muted"),
            (5, f"running {state.running}", "running" if state.running else "muted"),
            (5, f"failed {state.failed}", "failed" if state.failed else "muted"),
            (0, f"events {state.events_total}", "muted"),
        ]
        badge = True
        while True:
            left = self._left(engine_state, badge)
            right = Text(no_wrap=True, end="")
            for _priority, label, role in parts:
                right.append("  ")
                right.append(label, style=style(role))
            right.append(" ")
            gap = width - left.cell_len - right.cell_len
            if gap >= 0 or (not badge and min(p for p, _, _ in parts) >= 5):
                break
            lowest = min(p for p, _, _ in parts)
            if lowest >= 5:
                badge = False
                continue
            parts = [part for part in parts if part[0] != lowest]
        if gap >= 0:
            left.append(" " * gap)
        left.append_text(right)
        left.truncate(width, overflow="ellipsis")
        return left

    def _left(self, engine_state: str, badge: bool) -> Text:
        state = self._state
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        if badge:
            text.append(" tinyo ", style="bold reverse")
        text.append(" ")
        text.append(visible(self._recipe), style="bold")
        text.append("  ")
        if state.paused:
            text.append(f" {glyph('paused')} paused: {state.buffered} buffered ", style=style("paused") + _REVERSE)
        else:
            label = engine_state
            deadline = state.stop_deadline
            if deadline is not None and engine_state == "stopping":
                left = deadline - self._now()
                label = f"stopping {left:.0f}s (q: now)" if left >= 0.5 else "stopping now"
            text.append(f"{glyph(engine_state)} {label}",
                        style=style("up to date" if engine_state == "running" else engine_state))
        return text
