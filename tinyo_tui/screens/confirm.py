"""Provides ConfirmDialog: a yes/no question whose default (focused) answer is the safe one."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmDialog(ModalScreen[bool]):
    """Ask before something destructive. ``enter`` takes the focused button (the safe one: No)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "No", show=False),
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("left,right,tab,shift+tab", "app.focus_next", "Switch", show=False),
    ]

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical {
        width: 64; max-width: 95%; height: auto;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmDialog .title { text-style: bold; margin-bottom: 1; }
    ConfirmDialog Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmDialog Button { margin-left: 2; min-width: 12; }
    """

    def __init__(self, title: str, body: Text, yes: str, no: str = "Cancel") -> None:
        super().__init__()
        self._title = title
        self._body = body
        self._yes = yes
        self._no = no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self._title), classes="title")
            yield Static(self._body)
            with Horizontal():
                yield Button(f"{self._yes} (y)", variant="error", id="yes")
                yield Button(f"{self._no} (esc)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class QuitDialog(ConfirmDialog):
    """Quit while ops run? ``q`` answers yes, so ``q q`` quits (and a third ``q`` stops the ops now)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "answer(True)", "Quit", show=False)]
