"""Provides LanesView: data-flow lanes (step x instance: rows in/out per gate, errors, rows/s, buffer)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from ..palette import Palette, glyph
from ..safe_text import visible
from ..state import ConsoleState

_BAR = 8


def _bar(fill: float) -> str:
    fill = min(1.0, max(0.0, fill))
    done = round(fill * _BAR)
    return "█" * done + "░" * (_BAR - done)


class LanesView(Widget, can_focus=True):
    """The lanes pane: live rows of running and recent flows, fed by FlowMetrics events."""

    DEFAULT_CSS = """
    LanesView { overflow-y: auto; scrollbar-size-vertical: 1; height: 1fr; }
    """

    def __init__(self, state: ConsoleState, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state = state
        self._palette = palette
        self.known_flows: list[str] = []
        """Flows the recipe defines (shown while none runs)."""

    def current_selection(self) -> None:
        """Lanes have no selectable item."""
        return None

    def render(self) -> Table | Text:
        style = self._palette.style
        flows = self._state.flows
        if not flows:
            text = Text(no_wrap=False, end="")
            text.append("no flow running", style=style("muted"))
            if self.known_flows:
                text.append("\nflows: ", style=style("muted"))
                text.append(visible(", ".join(self.known_flows)))
            return text
        table = Table(box=None, expand=True, pad_edge=False, padding=(0, 1), show_edge=False,
                      header_style="bold")
        for name, justify in (("flow/step", "left"), ("i/n", "right"), ("state", "left"),
                              ("in", "right"), ("out", "right"), ("err", "right"),
                              ("rows/s", "right"), ("buffer", "left")):
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for flow_run, lanes in reversed(flows.items()):
            for (step, instance), m in sorted(lanes.items()):
                state = "running" if m.state == "running" else "failed" if m.errors or m.state == "failed" else m.state
                out = " ".join(f"{visible(gate)}={n}" for gate, n in sorted(m.rows_out.items())) or "0"
                table.add_row(
                    Text(f"{visible(m.flow)}/{visible(step)}"),
                    Text(f"{instance + 1}/{m.instances}", style=style("muted")),
                    Text(f"{glyph(state)} {visible(m.state)}", style=style(state)),
                    Text(str(m.rows_in)),
                    Text(out),
                    Text(str(m.errors), style=style("failed") if m.errors else style("muted")),
                    Text(f"{m.rows_per_s:.0f}"),
                    Text(f"{_bar(m.buffer_fill)} {m.buffer_fill:4.0%}", style=style("primary")),
                )
        return table
