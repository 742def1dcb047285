"""Provides LanesView: data-flow lanes (step x instance: rows in/out per gate, errors, rows/s, buffer)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widget import Widget

from ..palette import Palette, glyph
from ..safe_text import visible
from ..state import ConsoleState

_BAR = 8


def _bar(fill: float) -> str:
    fill = min(1.0, max(0.0, fill))
    done = round(fill * _BAR)
    return "█" * done + "░" * (_BAR - done)


def _misses(m: Any) -> list[str]:
    """A Lookup's rows without a master record (``miss:N``), shown beside its rows out."""
    missed = getattr(m, "counters", {}).get("missed")
    return [f"miss:{missed}"] if missed else []


def flow_order(steps: list[str], hops: list[tuple[str, str]]) -> list[str]:
    """``steps`` in flow order: each after every step that feeds it (ties and cycles keep definition order)."""
    feeders: dict[str, set[str]] = {step: set() for step in steps}
    for source, target in hops:
        if source in feeders and target in feeders and source != target:
            feeders[target].add(source)
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(steps):
        ready = [step for step in steps if step not in placed and feeders[step] <= placed]
        step = ready[0] if ready else next(step for step in steps if step not in placed)
        ordered.append(step)
        placed.add(step)
    return ordered


class LanesView(Widget, can_focus=True):
    """The lanes pane: live rows of running and recent flows, fed by FlowMetrics events."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("home,g", "scroll_home", "First", show=False),
        Binding("end,G", "scroll_end", "Last", show=False),
    ]

    DEFAULT_CSS = """
    LanesView { overflow-y: auto; scrollbar-size-vertical: 1; height: 1fr; }
    """

    def __init__(self, state: ConsoleState, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state = state
        self._palette = palette
        self.known_flows: list[str] = []
        """Flows the recipe defines (shown while none runs)."""
        self.step_order: dict[str, dict[str, int]] = {}
        """Per flow name, each step's place in flow order (lanes are listed in it)."""

    def current_selection(self) -> None:
        """Lanes have no selectable item."""
        return None

    def render(self) -> RenderableType:
        style = self._palette.style
        flows = self._state.flows
        if not flows:
            text = Text(no_wrap=False, end="")
            text.append("no flow running", style=style("muted"))
            if self.known_flows:
                text.append("\nflows: ", style=style("muted"))
                text.append(visible(", ".join(self.known_flows)))
            return text
        wide = self.size.width >= 100
        parts: list[RenderableType] = []
        for flow_run, lanes in reversed(flows.items()):
            first = next(iter(lanes.values()))
            title = Text(visible(first.flow), style="bold", no_wrap=True, overflow="ellipsis")
            title.append(f"  {visible(flow_run)}" + (f" · run {first.run_id}" if first.run_id is not None else ""),
                         style=style("muted"))
            parts.append(title)
            parts.append(self._table(lanes, wide))
        return Group(*parts)

    def _table(self, lanes: dict[tuple[str, int], Any], wide: bool) -> Table:
        style = self._palette.style
        table = Table(box=None, expand=True, pad_edge=False, padding=(0, 1), show_edge=False,
                      header_style="bold")
        table.add_column("step", ratio=1, min_width=10, no_wrap=True, overflow="ellipsis")
        table.add_column("i/n", justify="right", no_wrap=True, width=5)
        table.add_column("state", no_wrap=True, width=10, overflow="ellipsis")
        table.add_column("in", justify="right", no_wrap=True, width=6)
        table.add_column("out", justify="right", no_wrap=True, min_width=6, max_width=16, overflow="ellipsis")
        table.add_column("err", justify="right", no_wrap=True, width=4)
        table.add_column("rows/s", justify="right", no_wrap=True, width=7)
        table.add_column("buffer", no_wrap=True, width=_BAR + (5 if wide else 0))
        def place(item: tuple[tuple[str, int], Any]) -> tuple[int, str, int]:
            (step, instance), metrics = item
            return (self.step_order.get(metrics.flow, {}).get(step, len(lanes)), step, instance)

        for (step, instance), m in sorted(lanes.items(), key=place):
            state = "failed" if m.errors and m.state not in ("running", "blocked", "waiting") else m.state
            gates = dict(m.rows_out)
            main = gates.pop("main", None)
            out = " ".join(([str(main)] if main is not None else [])
                           + [f"{visible(g)}:{n}" for g, n in sorted(gates.items())]
                           + _misses(m))
            bar = _bar(m.buffer_fill) + (f" {m.buffer_fill:4.0%}" if wide else "")
            table.add_row(
                Text(visible(step)),
                Text(f"{instance + 1}/{m.instances}", style=style("muted")),
                Text(f"{glyph(state)} {visible(m.state)}", style=style(state)),
                Text(str(m.rows_in)),
                Text(out or "0"),
                Text(str(m.errors), style=style("failed") if m.errors else style("muted")),
                Text(f"{m.rows_per_s:.0f}"),
                Text(bar, style=style("stale") if m.buffer_fill >= 0.95 else style("primary")),
            )
        return table
