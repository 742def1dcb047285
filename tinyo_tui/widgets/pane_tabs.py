"""Provides PaneTabs: the ``1 Events  2 Documents ...`` strip shown when only one pane fits."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

PANES: tuple[tuple[str, str], ...] = (
    ("events", "Events"),
    ("documents", "Documents"),
    ("workers", "Workers"),
    ("lanes", "Lanes"),
    ("output", "Output"),
    ("timeline", "Timeline"),
)
"""Pane ids and titles, in key order (1-6)."""


class PaneTabs(Widget):
    """One line naming the panes; the active one is highlighted."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; background: $surface; color: $text-muted; }
    """

    active: reactive[str] = reactive("events")
    """Id of the active pane."""

    @dataclass
    class Clicked(Message):
        """A tab was clicked (the keys 1-6 do the same)."""

        pane_id: str

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        start = 0
        for index, (pane_id, title) in enumerate(PANES, 1):
            end = start + len(_label(index, title)) + 1
            if start <= offset.x < end:
                self.post_message(self.Clicked(pane_id))
                return
            start = end

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for index, (pane_id, title) in enumerate(PANES, 1):
            label = _label(index, title)
            if pane_id == self.active:
                text.append(label, style="bold reverse")
            else:
                text.append(label)
            text.append(" ")
        return text


def _label(index: int, title: str) -> str:
    return f" {index} {title} "
