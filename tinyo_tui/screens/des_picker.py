"""Provides DesPicker: choose which of several DES to rerun (an event made more than one), or all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import short_id, visible

ALL = "*all*"


class DesPicker(ModalScreen[list[str] | None]):
    """``all N DES`` first, then each DES (op -> targets [id]); ``enter`` picks, ``esc`` cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
    ]

    DEFAULT_CSS = """
    DesPicker { align: center middle; }
    DesPicker > Vertical {
        width: 90; max-width: 95%; height: auto; max-height: 80%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    DesPicker .title { text-style: bold; margin-bottom: 1; }
    DesPicker OptionList { height: auto; max-height: 16; }
    """

    def __init__(self, title: str, des_ids: Sequence[str], describe: Callable[[str], str]) -> None:
        super().__init__()
        self._title = title
        self._des_ids = list(des_ids)
        self._describe = describe

    def compose(self) -> ComposeResult:
        options = [Option(Text(f"all {len(self._des_ids)} DES", style="bold"), id=ALL)]
        for des_id in self._des_ids:
            label = Text(visible(self._describe(des_id)))
            label.append(f"  [{short_id(des_id)}]", style="dim")
            options.append(Option(label, id=des_id))
        with Vertical():
            yield Static(Text(self._title), classes="title")
            yield OptionList(*options, id="des")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = 0
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        picked = event.option.id
        self.dismiss(list(self._des_ids) if picked == ALL else [picked] if picked else None)

    def action_cursor(self, step: int) -> None:
        option_list = self.query_one(OptionList)
        option_list.action_cursor_down() if step > 0 else option_list.action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)
