"""Provides PaneTabs: the ``1 Events  2 Documents ...`` strip shown when only one pane fits."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

PANES: tuple[tuple[str, str], ...] = (
    ("events", "Events"),
    ("documents", "Documents"),
    ("workers", "Workers"),
    ("lanes", "Lanes"),
    ("output", "Output"),
)
"""Pane ids and titles, in key order (1-5)."""


class PaneTabs(Widget):
    """One line naming the panes; the active one is highlighted."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; background: $surface; color: $text-muted; }
    """

    active: reactive[str] = reactive("events")
    """Id of the active pane."""

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for index, (pane_id, title) in enumerate(PANES, 1):
            label = f" {index} {title} "
            click = Style.from_meta({"@click": f"screen.pane({pane_id!r})"})  # a click switches, as the key does
            text.append(label, style=Style(bold=True, reverse=True) + click if pane_id == self.active else click)
            text.append(" ")
        return text
