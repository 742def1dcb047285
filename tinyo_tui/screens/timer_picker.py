"""Provides TimerPicker: choose which timer to fire now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets.option_list import Option

from ..safe_text import visible
from .picker import Picker


class TimerPicker(Picker[str]):
    """A list of the recipe's timers with their interval; ``enter`` fires, ``esc`` cancels."""

    def __init__(self, timers: Sequence[Any]) -> None:
        super().__init__("Fire a timer now", "timers")
        self._specs = list(timers)

    def options(self) -> list[Option]:
        options = []
        for timer in self._specs:
            label = Text(visible(timer.name), style="bold")
            label.append(f"  every {timer.interval}", style="dim")
            options.append(Option(label, id=timer.name))
        return options

    def picked(self, option_id: str | None) -> str | None:
        return option_id
