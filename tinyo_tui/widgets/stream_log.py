"""Provides StreamLog: a fast, bounded, filterable, follow-mode log view (base of Events and Output).

It renders only the visible lines (Textual's line API) from a deque it does not own (the console
model's), so appending thousands of rows per second costs one refresh per drain tick. The view
follows the newest row until the user moves up; then new rows are counted ("↓ N new") instead.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..palette import Palette

RowT = TypeVar("RowT")

_CACHE_SIZE = 400


class StreamLog(ScrollView, Generic[RowT], can_focus=True):
    """A log view over a bounded deque of rows, with a cursor, follow mode and a regex filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "follow", "Follow newest", show=False),
        Binding("enter", "open", "Details", show=False),
    ]

    DEFAULT_CSS = """
    StreamLog {
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
    }
    StreamLog > .stream-log--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    """

    def action_open(self) -> None:
        """Enter on a row: subclasses open its details."""

    follow: reactive[bool] = reactive(True)
    """Keep the newest row in view (and selected)."""
    unseen: reactive[int] = reactive(0)
    """Rows that arrived while not following."""

    empty_text: ClassVar[str] = ""
    """Shown (dimmed) while there are no rows."""

    def __init__(self, rows: deque[RowT], palette: Palette, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._rows = rows
        self._palette = palette
        self._view: deque[RowT] | None = None
        self._pattern: re.Pattern[str] | None = None
        self._invert = False
        self.filter_error: str | None = None
        self.cursor = -1
        self._cache: dict[tuple[Any, ...], Strip] = {}
        self._last_first_seq: int | None = None

    # ---------------------------------------------------------------- subclass hooks
    def row_text(self, row: RowT) -> Text:
        """The row as literal, styled Text (one line)."""
        raise NotImplementedError

    def row_plain(self, row: RowT) -> str:
        """The text the filter matches against."""
        return self.row_text(row).plain

    def row_key(self, row: RowT) -> tuple[Any, ...]:
        """Identity plus version of a row, for the render cache."""
        return (getattr(row, "seq", id(row)), getattr(row, "version", 0))

    def pane_note(self) -> str:
        """Extra text for the border subtitle (e.g. how many rows are only in the store)."""
        return ""

    # ---------------------------------------------------------------- view
    @property
    def view(self) -> Sequence[RowT]:
        """The rows shown: all, or the filtered ones."""
        return self._rows if self._view is None else self._view

    @property
    def selected(self) -> RowT | None:
        """The row under the cursor."""
        view = self.view
        if 0 <= self.cursor < len(view):
            return view[self.cursor]
        return None

    def set_filter(self, pattern: str, invert: bool = False) -> bool:
        """Show only rows matching ``pattern`` (a regex; ``invert`` shows the others). Empty clears.

        Returns False (and keeps the old filter) when the pattern is not a valid regex.
        """
        if not pattern:
            self._pattern, self._invert, self._view, self.filter_error = None, False, None, None
        else:
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                self.filter_error = f"bad regex: {exc}"
                self._update_subtitle()
                return False
            self._pattern, self._invert, self.filter_error = compiled, invert, None
            self._view = deque((r for r in self._rows if self._matches(r)), maxlen=self._rows.maxlen)
        self._reset_view()
        return True

    @property
    def filter_text(self) -> str:
        """The active filter, as typed (``!`` prefix for inverse), or empty."""
        if self._pattern is None:
            return ""
        return ("!" if self._invert else "") + self._pattern.pattern

    def _matches(self, row: RowT) -> bool:
        assert self._pattern is not None
        return (self._pattern.search(self.row_plain(row)) is not None) != self._invert

    def _reset_view(self) -> None:
        self._cache.clear()
        n = len(self.view)
        self.cursor = n - 1 if self.follow or self.cursor >= n else self.cursor
        self.unseen = 0 if self.follow else self.unseen
        self._sync_size()
        self.refresh()
        self._update_subtitle()

    def rows_added(self, count: int) -> None:
        """``count`` rows were appended to the source deque (older ones may have fallen off)."""
        if count <= 0:
            return
        if self._view is not None:
            added = list(self._rows)[-count:] if count < len(self._rows) else list(self._rows)
            view = self._view
            first_seq = getattr(self._rows[0], "seq", None) if self._rows else None
            while view and first_seq is not None and getattr(view[0], "seq", 0) < first_seq:
                view.popleft()
                self.cursor -= 1
            shown = [r for r in added if self._matches(r)]
            view.extend(shown)
            count = len(shown)
        else:
            # The source deque is bounded: when rows fall off the top, the cursor moves with them.
            first_seq = getattr(self._rows[0], "seq", None) if self._rows else None
            if self._last_first_seq is not None and first_seq is not None:
                self.cursor -= max(0, first_seq - self._last_first_seq)
            self._last_first_seq = first_seq
        n = len(self.view)
        if self.follow:
            self.cursor = n - 1
        else:
            self.cursor = max(0, self.cursor)
            self.unseen += count
        self._sync_size()
        if self.follow:
            self.scroll_to(y=max(0, n - self.scrollable_content_region.height), animate=False,
                           immediate=True)
        self.refresh()
        self._update_subtitle()

    def reload(self) -> None:
        """Rows were inserted anywhere (the start from the state file): rebuild the view."""
        self._last_first_seq = None
        self.set_filter(self._pattern.pattern if self._pattern else "", self._invert)
        if self.follow:
            self.scroll_end(animate=False, immediate=True)

    def rows_changed(self) -> None:
        """Some rows changed in place (their ``version`` moved): repaint the visible ones."""
        self.refresh()

    def clear_cache(self) -> None:
        """Drop cached renderings (theme change)."""
        self._cache.clear()
        self.refresh()

    def _sync_size(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.view))

    def on_resize(self) -> None:
        self._cache.clear()
        self._sync_size()
        if self.follow:
            self.scroll_end(animate=False, immediate=True)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.unseen = 0
            self.cursor = len(self.view) - 1
            self.scroll_end(animate=False, immediate=True)
            self.refresh()
        self._update_subtitle()

    def watch_unseen(self) -> None:
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        parts: list[str] = []
        if self.filter_error:
            parts.append(self.filter_error)
        elif self._pattern is not None:
            parts.append(f"filter: {self.filter_text} ({len(self.view)})")
        note = self.pane_note()
        if note:
            parts.append(note)
        if not self.follow:
            parts.append(f"↓ {self.unseen} new" if self.unseen else "paused scroll (end: follow)")
        self.border_subtitle = Text(" · ".join(parts)) if parts else ""

    # ---------------------------------------------------------------- rendering
    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        view = self.view
        if index >= len(view) or width <= 0:
            if index == 0 and width > 0 and self.empty_text:
                hint = self.empty_text if not self._pattern else "no rows match the filter"
                return self._strip(Text(hint, style=self._palette.style("muted"), no_wrap=True, end=""), width)
            return Strip.blank(width, self.rich_style)
        row = view[index]
        selected = index == self.cursor and self.has_focus
        key = (*self.row_key(row), selected, width)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._strip(self.row_text(row), width)
            if selected:
                # Over the row's own styles (they carry the pane's background), so the theme's
                # cursor colours show; Strip.apply_style would put it under them.
                cursor = self.get_component_rich_style("stream-log--cursor")
                strip = Strip(Segment.apply_style(strip, post_style=cursor), strip.cell_length)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = strip
        return strip

    COMPONENT_CLASSES: ClassVar[set[str]] = {"stream-log--cursor"}

    def _strip(self, text: Text, width: int) -> Strip:
        """One line of ``text``, cut to ``width`` with an ellipsis, on the widget's base style.

        Every segment gets a real style (never None): the NO_COLOR filter needs one."""
        text.no_wrap = True
        text.overflow = "ellipsis"
        text.truncate(width, overflow="ellipsis", pad=True)
        base = self.rich_style
        segments = [Segment(seg.text, base + seg.style if seg.style else base)
                    for seg in text.render(self.app.console) if seg.text and seg.text != "\n"]
        return Strip(segments).adjust_cell_length(width, base)

    # ---------------------------------------------------------------- cursor
    def _move(self, delta: int) -> None:
        n = len(self.view)
        if n == 0:
            return
        old = self.cursor
        self.cursor = max(0, min(n - 1, (self.cursor if self.cursor >= 0 else n - 1) + delta))
        if self.cursor == n - 1 and delta > 0:
            self.follow = True
        elif delta < 0 or self.cursor < n - 1:
            self.follow = False
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)
        if old != self.cursor:
            self.refresh()
            self.on_cursor_moved()

    def on_cursor_moved(self) -> None:
        """Called after the cursor moved (subclasses announce the selection)."""

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-max(1, self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        self._move(max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self._move(-len(self.view))

    def action_follow(self) -> None:
        self.follow = True
        self.on_cursor_moved()

    def on_click(self, event: events.Click) -> None:
        """A click selects the row under the pointer (the keys do everything a click does)."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.scroll_offset.y + offset.y
        if 0 <= index < len(self.view):
            self._move(index - (self.cursor if self.cursor >= 0 else len(self.view) - 1))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


