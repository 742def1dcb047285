"""Provides HelpScreen: every key of the console, generated from the active bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KeyRow = tuple[str, str]


class HelpScreen(ModalScreen[None]):
    """The key reference; ``esc``, ``q`` or ``?`` closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close", show=False)]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 98%; height: auto; max-height: 95%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, rows: list[KeyRow], pane_rows: list[KeyRow]) -> None:
        super().__init__()
        self._rows = rows
        self._pane_rows = pane_rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=False, padding=(0, 1))
        table.add_column("key", style="bold", no_wrap=True, width=16)
        table.add_column("action")
        for key, description in self._rows:
            table.add_row(Text(key), Text(description))
        if self._pane_rows:
            table.add_row(Text(""), Text(""))
            table.add_row(Text("in the panes", style="bold underline"), Text(""))
            for key, description in self._pane_rows:
                table.add_row(Text(key), Text(description))
        with VerticalScroll() as scroll:
            scroll.border_title = "keys (esc closes)"
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
