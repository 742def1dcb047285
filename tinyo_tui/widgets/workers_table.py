"""Provides WorkersTable: one row per worker (id/pid, state, op, DES targets, elapsed) and the queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from ..messages import OpenDetails, Selected
from ..palette import Palette, glyph
from ..safe_text import duration, visible
from ..sorting import SortMode, next_mode, worker_key
from ..state import ConsoleState, WorkerRow

COLUMNS = ("worker", "pid", "state", "op", "targets", "elapsed")


class WorkersTable(DataTable[Text]):
    """The workers pane. Rows are keyed by worker name, so the selection stays on its worker."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Details", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("home,g", "scroll_top", "First", show=False),
        Binding("end,G", "scroll_bottom", "Last", show=False),
        Binding("s", "sort", "Sort", show=False, tooltip="Workers, documents: sort by name, state, duration"),
    ]

    DEFAULT_CSS = """
    WorkersTable { scrollbar-size-vertical: 1; }
    """

    def __init__(self, state: ConsoleState, palette: Palette, now: Callable[[], float],
                 *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_cursor=True)
        self._state = state
        self._palette = palette
        self._now = now
        self._shown: dict[str, tuple[Text, ...]] = {}
        self.sort_mode: SortMode = "name"
        """The row order: by name, by state (busy first) or by duration (longest busy first)."""
        self._order: list[str] = []

    def on_mount(self) -> None:
        self._layout_columns()

    def on_resize(self) -> None:
        self._layout_columns()

    def _widths(self) -> tuple[int, ...]:
        """Fixed column widths for the pane's width (fixed, so rows never shift as values change)."""
        width = max(40, self.scrollable_content_region.width or self.size.width)
        # worker names: w1, t2, inline, or a Dask worker's address (tcp://10.0.0.7:40123): fit them
        longest = max((len(visible(name)) for name in self._state.workers), default=0)
        name = min(max(7, longest), max(7, width // 4))
        rest = max(16, width - 2 * len(COLUMNS) - (name + 7 + 8 + 7))
        op = max(8, rest * 2 // 5)
        return (name, 7, 8, op, max(8, rest - op), 7)

    def _layout_columns(self) -> None:
        widths = self._widths()
        if widths == getattr(self, "_column_widths", None):
            return
        self._column_widths = widths
        selected = self.selected_worker
        self.clear(columns=True)
        self._shown.clear()
        self._order = []
        for name, width in zip(COLUMNS, widths):
            self.add_column(name, key=name, width=width)
        self.refresh_rows()
        if selected is not None:
            self.move_cursor(row=self.get_row_index(selected.name), animate=False)

    def _cells(self, row: WorkerRow, now: float) -> tuple[Text, ...]:
        style = self._palette.style
        state = row.state
        targets = ", ".join(sorted(row.targs)[:3]) + (" …" if len(row.targs) > 3 else "")
        elapsed = duration(now - row.since) if row.since is not None and state == "busy" else ""
        return (
            Text(visible(row.name), style=style("accent")),
            Text(str(row.pid) if row.pid is not None else "-", style=style("muted")),
            Text(f"{glyph(state)} {state}", style=style(state)),
            Text(visible(row.op if state == "busy" else row.detail if state == "dead" else "")),
            Text(visible(targets)),
            Text(elapsed, style=style("muted")),
        )

    def refresh_rows(self) -> None:
        """Add new workers and update changed cells in place (cheap when nothing changed)."""
        if self._widths() != getattr(self, "_column_widths", None):
            self._layout_columns()  # a longer worker name arrived: lay the columns out again
            return
        now = self._now()
        workers = self._state.workers
        order = [row.name for row in sorted(workers.values(), key=worker_key(self.sort_mode, now))]
        for name in order:
            cells = self._cells(self._state.workers[name], now)
            old = self._shown.get(name)
            if old is None:
                self.add_row(*cells, key=name)
            else:
                for column, (before, after) in zip(COLUMNS, zip(old, cells)):
                    if before != after:
                        try:
                            self.update_cell(name, column, after)
                        except RowDoesNotExist:
                            break
            self._shown[name] = cells
        if order != self._order:
            self._reorder(order)
        busy = sum(1 for w in workers.values() if w.state == "busy")
        self.border_subtitle = (f"queue {self._state.queued} · busy {busy}/{len(workers)}"
                                + (f" · by {self.sort_mode}" if self.sort_mode != "name" else ""))

    def _reorder(self, order: list[str]) -> None:
        """Put the rows in ``order``, keeping the cursor on its worker."""
        selected = self.selected_worker
        rank = {name: index for index, name in enumerate(order)}
        by_cell = {visible(name): rank[name] for name in order}
        self.sort("worker", key=lambda cell: by_cell.get(cell.plain, len(rank)))
        self._order = order
        if selected is not None and selected.name in rank:
            self.move_cursor(row=self.get_row_index(selected.name), animate=False)

    def action_sort(self) -> None:
        """Cycle the row order: name, state, duration."""
        self.sort_mode = next_mode(self.sort_mode)
        self.refresh_rows()
        self.notify(f"workers sorted by {self.sort_mode}", markup=False, timeout=2)

    def relabel_all(self) -> None:
        """Redraw every row (after a theme change)."""
        self._column_widths = ()
        self._layout_columns()

    @property
    def selected_worker(self) -> WorkerRow | None:
        """The worker under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # the cursor can be out of range while rows are being added
            return None
        return self._state.workers.get(key or "")

    def current_selection(self) -> Selected | None:
        """What the keys act on: the worker under the cursor and the run it is busy with."""
        row = self.selected_worker
        if row is None:
            return None
        return Selected("worker", row.name, des_id=row.des_id, run_id=row.run_id)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        selection = self.current_selection()
        if selection is not None:
            self.post_message(selection)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        row = self.selected_worker
        if row is not None:
            self.post_message(OpenDetails("worker", row.name, des_id=row.des_id))
