"""Provides Picker: a modal list to choose one entry from (``enter`` picks, ``esc`` cancels)."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

T = TypeVar("T")


class Picker(ModalScreen[T | None], Generic[T]):
    """A titled option list, centred; subclasses give the options and what a picked option id returns."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("j", "cursor(1)", "Down", show=False),  # as in every pane (the help lists j and k)
        Binding("k", "cursor(-1)", "Up", show=False),
    ]

    DEFAULT_CSS = """
    Picker { align: center middle; }
    Picker > Vertical {
        max-width: 95%; height: auto; max-height: 80%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    Picker .title { text-style: bold; margin-bottom: 1; }
    Picker OptionList { height: auto; max-height: 16; }
    """

    WIDTH = 64
    """Columns of the box (95% of the screen at most)."""

    def __init__(self, title: str, list_id: str) -> None:
        super().__init__()
        self._title = title
        self._list_id = list_id

    def options(self) -> list[Option]:
        raise NotImplementedError

    def picked(self, option_id: str | None) -> T | None:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.styles.width = self.WIDTH
        with box:
            yield Static(Text(self._title), classes="title")
            yield OptionList(*self.options(), id=self._list_id)

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = 0
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.picked(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_cursor(self, step: int) -> None:
        option_list = self.query_one(OptionList)
        option_list.action_cursor_down() if step > 0 else option_list.action_cursor_up()
