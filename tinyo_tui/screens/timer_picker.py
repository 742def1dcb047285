"""Provides TimerPicker: choose which timer to fire now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import visible


class TimerPicker(ModalScreen[str | None]):
    """A list of the recipe's timers with their interval; ``enter`` fires, ``esc`` cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    DEFAULT_CSS = """
    TimerPicker { align: center middle; }
    TimerPicker > Vertical {
        width: 64; max-width: 95%; height: auto; max-height: 80%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    TimerPicker .title { text-style: bold; margin-bottom: 1; }
    TimerPicker OptionList { height: auto; max-height: 16; }
    """

    def __init__(self, timers: Sequence[Any]) -> None:
        super().__init__()
        self._specs = list(timers)

    def compose(self) -> ComposeResult:
        options = []
        for timer in self._specs:
            label = Text(visible(timer.name), style="bold")
            label.append(f"  every {timer.interval}", style="dim")
            options.append(Option(label, id=timer.name))
        with Vertical():
            yield Static(Text("Fire a timer now"), classes="title")
            yield OptionList(*options, id="timers")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = 0
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
