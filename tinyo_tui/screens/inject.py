"""Provides InjectDialog: asks for an event string to inject into the engine."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class InjectDialog(ModalScreen[str | None]):
    """``enter`` injects the typed event (any string; a path marks that file document); ``esc`` cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    DEFAULT_CSS = """
    InjectDialog { align: center middle; }
    InjectDialog > Vertical {
        width: 72; max-width: 95%; height: auto;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    InjectDialog .title { text-style: bold; }
    InjectDialog .hint { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, recipe: str, value: str = "") -> None:
        super().__init__()
        self._recipe = recipe
        self._value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Inject an event"), classes="title")
            yield Input(value=self._value, placeholder="event string, e.g. /tmp/data/fact_file_20241027.csv",
                        id="event")
            yield Static(Text(f"enter: inject into {self._recipe} · esc: cancel"), classes="hint")

    def on_mount(self) -> None:
        # No blinking cursor: a blink is a timer, and over SSH every blink is traffic.
        self.query_one(Input).cursor_blink = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value
        self.dismiss(value if value.strip() else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
