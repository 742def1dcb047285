"""Provides DesPicker: choose which of several DES to rerun (an event made more than one), or all."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.widgets.option_list import Option

from ..safe_text import short_id, visible
from .picker import Picker

ALL = "*all*"


class DesPicker(Picker[list[str]]):
    """``all N DES`` first, then each DES (op -> targets [id]); ``enter`` picks, ``esc`` cancels."""

    WIDTH = 90

    def __init__(self, title: str, des_ids: Sequence[str], describe: Callable[[str], str]) -> None:
        super().__init__(title, "des")
        self._des_ids = list(des_ids)
        self._describe = describe

    def options(self) -> list[Option]:
        options = [Option(Text(f"all {len(self._des_ids)} DES", style="bold"), id=ALL)]
        for des_id in self._des_ids:
            label = Text(visible(self._describe(des_id)))
            label.append(f"  [{short_id(des_id)}]", style="dim")
            options.append(Option(label, id=des_id))
        return options

    def picked(self, option_id: str | None) -> list[str] | None:
        return list(self._des_ids) if option_id == ALL else [option_id] if option_id else None
