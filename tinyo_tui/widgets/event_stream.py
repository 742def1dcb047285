"""Provides EventStream: the incoming events (time, source, event, what the generators made of it)."""

from __future__ import annotations

from rich.text import Text

from ..messages import OpenDetails, Selected
from ..palette import Palette
from ..safe_text import clock_time, visible
from ..state import ConsoleState, EventRow
from .stream_log import StreamLog

_SOURCE_STYLE = {"file": "primary", "timer": "accent", "manual": "cmd", "scan": "muted", "rerun": "cmd"}


class EventStream(StreamLog[EventRow]):
    """The event stream pane. Newest at the bottom; follows unless scrolled up."""

    empty_text = "waiting for events… (i injects one, t fires a timer)"

    def __init__(self, state: ConsoleState, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(state.events, palette, id=id)
        self._state = state

    def pane_note(self) -> str:
        dropped = self._state.events_dropped
        return f"{dropped} older in the store" if dropped else ""

    def row_text(self, row: EventRow) -> Text:
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        text.append(clock_time(row.ts), style=style("muted"))
        text.append(" ")
        if row.kind in ("event", "timer"):
            text.append(f"{row.source:<6.6}", style=style(_SOURCE_STYLE.get(row.source, "muted")))
            text.append(" ")
            text.append(visible(row.name))
            if row.errors:
                generator, error, _tb = row.errors[-1]
                more = f" (+{len(row.errors) - 1})" if len(row.errors) > 1 else ""
                text.append(f"  ✗ {visible(generator)}: {visible(error)}{more}", style=style("failed"))
            elif row.des_count is None:
                text.append("  …", style=style("muted"))
            elif row.des_count == 0:
                text.append("  → no DES", style=style("muted"))
            else:
                text.append(f"  → {row.des_count} DES", style=style("up to date"))
        elif row.kind == "notice":
            text.append(f"{row.source:<6.6} ", style=style("failed" if row.source == "error" else "stale"))
            text.append(visible(row.name))
        else:
            label = "reject" if row.kind == "rejected" else "error"
            text.append(f"{label:<6} ", style=style("failed"))
            text.append(visible(row.name))
            generator, error, _tb = row.errors[-1]
            text.append(f"  ✗ {visible(generator)}: {visible(error)}", style=style("failed"))
        return text

    def row_plain(self, row: EventRow) -> str:
        extra = " ".join(f"{g}: {e}" for g, e, _ in row.errors)
        return f"{row.source} {row.name} {extra}"

    def current_selection(self) -> Selected | None:
        """What the keys act on: the event under the cursor (and its DES when it made exactly one)."""
        row = self.selected
        if row is None:
            return None
        des_id = row.des_ids[0] if len(row.des_ids) == 1 else None
        return Selected("event", str(row.seq), des_id=des_id)

    def on_cursor_moved(self) -> None:
        selection = self.current_selection()
        if selection is not None:
            self.post_message(selection)

    def action_open(self) -> None:
        row = self.selected
        if row is not None:
            self.post_message(OpenDetails("event", str(row.seq)))
