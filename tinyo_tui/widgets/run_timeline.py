"""Provides RunTimeline: each worker's runs as bars over the last minutes (a Gantt chart in the terminal).

One row per worker; time runs left to right and ends at *now*. A cell is ``█`` while the worker ran
an op that ended well, ``▒`` while one is still running, ``✗`` for a failed run and ``░`` for a
cancelled one (shapes as well as colours, for ``NO_COLOR``), ``·`` when idle. The cursor selects a
worker (up/down) and one of its runs (left/right); the run is shown reversed and described on the
pane's last line with its op's p50/p95 durations; ``enter`` opens its DES.

The bars come from ``RunHistory``'s per-second activity, so a flood of short runs costs the same to
draw as a trickle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

from ..messages import OpenDetails, Selected
from ..palette import Palette, glyph
from ..run_history import Cell, RunRecord
from ..safe_text import clock_time, duration, short_id, uptime, visible
from ..state import ConsoleState

WINDOWS: tuple[float, ...] = (60.0, 300.0, 900.0)
"""The time spans ``+``/``-`` zoom between, in seconds."""
NAME_MIN, NAME_MAX = 6, 16
"""Width of the worker-name column."""
_GLYPH: dict[str | None, str] = {"ok": "█", "running": "▒", "failed": "✗", "cancelled": "░", "interrupted": "░",
                                 None: "·"}
_ROLE: dict[str | None, str] = {"ok": "up to date", "running": "running", "failed": "failed",
                                "cancelled": "cancelled", "interrupted": "interrupted", None: "muted"}


class RunTimeline(Widget, can_focus=True):
    """The Timeline pane."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "worker(-1)", "Previous worker", show=False),
        Binding("down,j", "worker(1)", "Next worker", show=False),
        Binding("pageup", "worker(-10)", "Page up", show=False),
        Binding("pagedown", "worker(10)", "Page down", show=False),
        Binding("home,g", "worker(-1000000)", "First worker", show=False),
        Binding("end,G", "worker(1000000)", "Last worker", show=False),
        Binding("left,h", "run(-1)", "Older run", show=False, tooltip="Timeline: select the worker's older run"),
        Binding("right,l", "run(1)", "Newer run", show=False, tooltip="Timeline: select the worker's newer run"),
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in", show=False, tooltip="Timeline: show a shorter span"),
        Binding("minus", "zoom(1)", "Zoom out", show=False, tooltip="Timeline: show a longer span (up to 15m)"),
        Binding("enter", "open", "Details", show=False),
    ]

    DEFAULT_CSS = """
    RunTimeline { height: 1fr; padding: 0 1 0 0; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    window: reactive[float] = reactive(WINDOWS[0])
    """Seconds shown, ending now."""

    def __init__(self, state: ConsoleState, palette: Palette, now: Callable[[], float],
                 *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state = state
        self._palette = palette
        self._now = now
        self.worker_index = 0
        """The selected worker's row."""
        self.run_id: int | None = None
        """The selected run (None: the worker's newest)."""
        self._top = 0
        self._moving: Timer | None = None
        self._moving_every = 0.0

    # ------------------------------------------------------------------ model
    def worker_names(self) -> list[str]:
        """Every worker the console knows of or saw run something, by name."""
        return sorted(set(self._state.workers) | set(self._state.history.workers))

    @property
    def selected_worker(self) -> str | None:
        """The worker on the cursor's row."""
        names = self.worker_names()
        if not names:
            return None
        return names[max(0, min(self.worker_index, len(names) - 1))]

    @property
    def selected_run(self) -> RunRecord | None:
        """The selected run of the selected worker (its newest, until left/right picks another)."""
        worker = self.selected_worker
        if worker is None:
            return None
        runs = self._state.history.worker_runs(worker)
        if not runs:
            return None
        if self.run_id is not None:
            for record in runs:
                if record.run_id == self.run_id:
                    return record
        return runs[-1]

    def current_selection(self) -> Selected | None:
        """What ``r``, ``c`` and ``enter`` act on: the selected run's DES (and the run, if running)."""
        record = self.selected_run
        if record is None:
            return None
        run_id = record.run_id if record.status == "running" else None
        return Selected("des", record.des_id, des_id=record.des_id, run_id=run_id)

    def copy_text(self) -> str | None:
        """The selected run's line, as the pane's last line shows it."""
        record = self.selected_run
        return None if record is None else self._describe(record, glyph_=False).plain

    # ------------------------------------------------------------------ actions
    def action_worker(self, step: int) -> None:
        names = self.worker_names()
        if not names:
            return
        index = max(0, min(len(names) - 1, self.worker_index + step))
        if index != self.worker_index:
            self.worker_index, self.run_id = index, None
            self._announce()

    def action_run(self, step: int) -> None:
        worker = self.selected_worker
        if worker is None:
            return
        runs = self._state.history.worker_runs(worker)
        if not runs:
            return
        current = self.selected_run
        index = runs.index(current) if current in runs else len(runs) - 1
        index = max(0, min(len(runs) - 1, index + step))
        self.run_id = None if index == len(runs) - 1 else runs[index].run_id
        self._announce()

    def action_zoom(self, step: int) -> None:
        index = WINDOWS.index(self.window) if self.window in WINDOWS else 0
        self.window = WINDOWS[max(0, min(len(WINDOWS) - 1, index + step))]

    def action_open(self) -> None:
        record = self.selected_run
        if record is not None:
            self.post_message(OpenDetails("des", record.des_id, des_id=record.des_id))

    def _announce(self) -> None:
        self.refresh()
        selection = self.current_selection()
        if selection is not None:
            self.post_message(selection)

    def on_click(self, event: events.Click) -> None:
        """A click on a worker's row selects it, and the run under the pointer if there is one."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        names = self.worker_names()
        row = self._top + offset.y
        if not 0 <= offset.y < self._rows_shown() or row >= len(names):
            return
        self.worker_index, self.run_id = row, None
        name_width, track = self._geometry()
        column = offset.x - name_width - 1
        if 0 <= column < track:
            now = self._now()
            for record in reversed(self._state.history.worker_runs(names[row])):
                if column in self._state.history.columns(record, now, self.window, track):
                    self.run_id = record.run_id
                    break
        self._announce()

    def watch_window(self) -> None:
        self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # ------------------------------------------------------------------ drawing
    def _geometry(self) -> tuple[int, int]:
        """(name column width, track width in cells)."""
        width = self.content_region.width
        longest = max((len(visible(n)) for n in self.worker_names()), default=NAME_MIN)
        name_width = max(NAME_MIN, min(NAME_MAX, longest, width // 4))
        return name_width, max(1, width - name_width - 1)

    def _footer_lines(self) -> int:
        """Lines under the bars: axis, run, durations; fewer in a short pane (run line last to go)."""
        height = self.content_region.height
        return 3 if height >= 5 else 2 if height == 4 else 1 if height == 3 else 0

    def _rows_shown(self) -> int:
        return max(1, self.content_region.height - self._footer_lines())

    def _keep_moving(self, active: bool, step: float, running: bool = False) -> None:
        """Bars slide left as time passes: repaint once a cell's worth of time while a run grows at
        the right edge, every other cell while finished runs only slide out, and not at all once
        the window is empty or the pane is off screen (an idle console costs nothing)."""
        every = max(0.25, step if running else 2 * step)
        if active and (self._moving is None or self._moving_every != every):
            if self._moving is not None:
                self._moving.stop()
            self._moving, self._moving_every = self.set_interval(every, self._slide, name="timeline"), every
        elif not active and self._moving is not None:
            self._moving.stop()
            self._moving = None

    def _slide(self) -> None:
        if not self.region.area:  # hidden (another tab is showing): stop until painted again
            self._keep_moving(False, 0.0)
            return
        self.refresh()

    def render(self) -> Text:
        style = self._palette.style
        muted = style("muted")
        now = self._now()
        history = self._state.history
        names = self.worker_names()
        name_width, track = self._geometry()
        window = self.window
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if not names:
            text.append("no runs yet: each worker's runs appear here as bars over time", style=muted)
            self._keep_moving(False, 0.0)
            return text
        self.worker_index = max(0, min(self.worker_index, len(names) - 1))
        shown = self._rows_shown()
        if self.worker_index < self._top:
            self._top = self.worker_index
        elif self.worker_index >= self._top + shown:
            self._top = self.worker_index - shown + 1
        self._top = max(0, min(self._top, max(0, len(names) - shown)))
        selected = self.selected_run
        selected_columns = (history.columns(selected, now, window, track) if selected is not None
                            else range(0))
        reverse = Style(reverse=True)
        active = False
        for row in range(self._top, min(len(names), self._top + shown)):
            name = names[row]
            cells = history.cells(name, now, window, track)
            active = active or any(cell.status is not None for cell in cells)
            is_cursor = row == self.worker_index
            label = visible(name)
            if len(label) > name_width:
                label = label[: name_width - 1] + "…"
            text.append(label.ljust(name_width), style=(style("accent") + reverse) if is_cursor and self.has_focus
                        else style("accent"))
            text.append("│", style=muted)
            # Runs of cells with one look become one span (a flood's row is a few spans, not 100).
            run_text, run_key = "", None
            for column, cell in enumerate(cells):
                glyph_, role = self._cell(cell)
                key = (role, is_cursor and column in selected_columns)
                if key != run_key and run_text:
                    text.append(run_text, style=self._style(run_key))
                    run_text = ""
                run_text, run_key = run_text + glyph_, key
            if run_text:
                text.append(run_text, style=self._style(run_key))
            text.append("\n")
        footer: list[Text] = []
        if selected is None:
            footer.append(Text("no run of this worker in memory", style=muted))
        else:
            footer.append(self._describe(selected))
            footer.append(self._durations(selected.op))
        footer.insert(0, Text(self._axis(name_width, track, window), style=muted))
        lines = self._footer_lines()
        if lines < 3:
            footer = footer[1:1 + lines] if lines < 2 else footer[:2]
        text.append_text(Text("\n", end="").join(footer[:lines]))
        self._keep_moving(active, window / track, running=any(True for _ in history.running()))
        hidden = len(names) - shown
        self.border_subtitle = f"last {uptime(window)}" + (f" · {len(names)} workers" if hidden > 0 else "")
        return text

    def _cell(self, cell: Cell) -> tuple[str, str]:
        """A cell's glyph and palette role."""
        status = cell.status
        glyph_ = _GLYPH[status]
        if status == "ok" and cell.busy < 0.5 - 1e-6:  # (a half-busy cell is full, rounding or not)
            glyph_ = "▄"  # a sliver of work in this cell
        return glyph_, _ROLE[status]

    def _style(self, key: tuple[str, bool] | None) -> Style:
        role, selected = key or ("muted", False)
        style = self._palette.style(role)
        return style + Style(reverse=True) if selected else style

    def _axis(self, name_width: int, track: int, window: float) -> str:
        """``-1m ... -30s ... now`` under the track."""
        line = [" "] * (name_width + 1 + track)
        line[name_width] = "└"
        labels = [(0, f"-{uptime(window)}"), (track // 2, f"-{uptime(window / 2)}")]
        now_label = "now"
        for column, label in labels:
            start = name_width + 1 + column
            for offset, char in enumerate(label):
                if start + offset < len(line) - len(now_label) - 1:
                    line[start + offset] = char
        for offset, char in enumerate(now_label):
            line[len(line) - len(now_label) + offset] = char
        return "".join(line)

    def _durations(self, op: str) -> Text:
        """The op's recent durations: p50 and p95 over the runs this console saw end."""
        stats = self._state.history.percentiles(op)
        text = Text(no_wrap=True, overflow="ellipsis", end="", style=self._palette.style("muted"))
        text.append(f"  {visible(op)}: ")
        if stats is None:
            text.append("no run ended yet")
        else:
            p50, p95, n = stats
            text.append(f"p50 {duration(p50)} · p95 {duration(p95)} over {n} run{'s' if n != 1 else ''}")
        return text

    def _describe(self, record: RunRecord, glyph_: bool = True) -> Text:
        """One line about a run: id, op, worker, DES, start, duration, status, error."""
        style = self._palette.style
        now = self._now()
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        role = _ROLE[record.status]
        if glyph_:
            text.append(f"{glyph(record.status)} ", style=style(role))
        text.append(f"run {record.run_id} ", style=style(role))
        text.append(visible(record.op), style="bold")
        text.append(f" on {visible(record.worker)} · DES {short_id(record.des_id)} · {clock_time(record.start)}"
                    f" · {duration(record.duration(now))}")
        if record.status != "ok":
            text.append(f" · {record.status}", style=style(role))
        if record.error and record.status == "failed":
            text.append(f": {visible(record.error)}", style=style(role))
        return text
