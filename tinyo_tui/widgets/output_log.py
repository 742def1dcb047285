"""Provides OutputLog: op output lines tagged with op and worker, plus echoed CLI commands."""

from __future__ import annotations

from rich.text import Text

from ..messages import OpenDetails, Selected
from ..palette import Palette
from ..safe_text import clock_time, visible
from ..state import ConsoleState, OutputRow
from .stream_log import StreamLog


class OutputLog(StreamLog[OutputRow]):
    """The output pane; follows the newest line unless scrolled up."""

    empty_text = "no output yet: what ops print shows here, tagged with op and worker"

    def __init__(self, state: ConsoleState, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(state.output, palette, id=id)
        self._state = state

    def pane_note(self) -> str:
        dropped = self._state.output_dropped
        return f"{dropped} older lines dropped" if dropped else ""

    def row_text(self, row: OutputRow) -> Text:
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        text.append(clock_time(row.ts), style=style("muted"))
        text.append(" ")
        if row.kind == "cmd":
            text.append("$ " + visible(row.line), style=style("cmd"))
            return text
        if row.kind == "info" and not row.op:
            text.append(visible(row.line), style=style("muted"))
            return text
        text.append(visible(row.worker or "-"), style=style("accent"))
        text.append(" ")
        text.append(visible(row.op or "-"), style=style("primary"))
        text.append(" │ ", style=style("muted"))
        line_style = {"stderr": "stderr", "error": "failed", "info": "cancelled"}.get(row.kind, "")
        text.append(visible(row.line), style=style(line_style) if line_style else "")
        return text

    def row_plain(self, row: OutputRow) -> str:
        return f"{row.worker} {row.op} {row.line}"

    def current_selection(self) -> Selected | None:
        """What the keys act on: the run that printed the line under the cursor."""
        row = self.selected
        if row is None or not row.des_id:
            return None
        return Selected("output", str(row.seq), des_id=row.des_id, run_id=row.run_id)

    def on_cursor_moved(self) -> None:
        selection = self.current_selection()
        if selection is not None:
            self.post_message(selection)

    def action_open(self) -> None:
        row = self.selected
        if row is not None and row.des_id:
            self.post_message(OpenDetails("des", row.des_id, des_id=row.des_id))
