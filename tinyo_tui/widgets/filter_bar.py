"""Provides FilterBar: the ``/`` input that filters a log pane (or jumps in the tree), live."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input

from ..messages import FilterChanged


class FilterBar(Input):
    """A line between the panes and the footer while open (docked, the footer would cover it).
    ``!`` prefix inverts; enter keeps it, esc clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear filter", show=False)]

    DEFAULT_CSS = """
    FilterBar {
        display: none;
        border: none;
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    FilterBar:focus { border: none; background-tint: $accent 10%; }
    FilterBar.-open { display: block; }
    """

    def on_mount(self) -> None:
        # No blinking cursor: a blink is a timer, and over SSH every blink is traffic.
        self.cursor_blink = False

    def open(self, target: str, current: str = "", jump: bool = False) -> None:
        """Show the bar for the pane ``target``, starting from its current filter."""
        self.target = target
        self.jump = jump
        self.placeholder = ("jump to document: regex or text, enter: go" if jump
                            else "filter: regex (prefix ! to invert) · enter: keep · esc: clear")
        self.value = current
        self.add_class("-open")
        self.focus()

    def close(self) -> None:
        """Hide the bar."""
        self.remove_class("-open")

    def _parse(self, value: str) -> FilterChanged:
        invert = value.startswith("!")
        return FilterChanged(value[1:] if invert else value, invert)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.has_class("-open"):
            self.post_message(self._parse(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        message = self._parse(event.value)
        message.final = True
        self.post_message(message)
        self.close()

    def action_clear(self) -> None:
        self.value = ""
        message = FilterChanged("", False, final=True)
        self.post_message(message)
        self.close()

    target: str = "events"
    """The pane the bar filters."""
    jump: bool = False
    """True when the bar jumps in the document tree instead of filtering."""
