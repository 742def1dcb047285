"""Provides MainScreen: the five panes, the header and footer, and the console's keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.events import DescendantFocus, Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from ..messages import FilterChanged, OpenDetails, Selected, StateChanged
from ..safe_text import visible
from ..widgets.document_tree import DocumentTree
from ..widgets.event_stream import EventStream
from ..widgets.filter_bar import FilterBar
from ..widgets.footer import StableFooter
from ..widgets.lanes_view import LanesView
from ..widgets.output_log import OutputLog
from ..widgets.pane_tabs import PANES, PaneTabs
from ..widgets.run_timeline import RunTimeline
from ..widgets.status_header import StatusHeader
from ..widgets.stream_log import StreamLog
from ..widgets.workers_table import WorkersTable

if TYPE_CHECKING:
    from ..host import ConsoleHost

MIN_WIDTH, MIN_HEIGHT = 80, 24
WIDE = 120
"""From this width on, all five panes show at once; below it one pane shows at a time (tabs)."""

PANE_KEYS: list[tuple[str, str]] = [
    ("enter", "details of the selected event, document, DES or worker"),
    ("up/down, j/k", "move the selection (every pane)"),
    ("pgup/pgdn", "scroll a page"),
    ("home/end, g/G", "first / last line; in events and output, end follows the newest again"),
    ("space, l/h, ←/→", "expand or collapse a tree node (documents)"),
    ("/ then !regex", "inverse filter"),
    ("s", "sort by name, state, duration (workers; members of a document group)"),
    ("left/right, h/l", "timeline: the selected worker's older / newer run"),
    ("+ / -", "timeline: zoom the time span (1m, 5m, 15m)"),
    ("y", "copy: the selected name or line; in details, the traceback (OSC 52)"),
    ("mouse", "click a tab or a row to select it (every click has a key)"),
]


class MainScreen(Screen[None]):
    """The console's home screen."""

    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (WIDE, "-wide")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rerun(False)", "Rerun", tooltip="Rerun the selected DES"),
        Binding("R", "rerun(True)", "Rerun+down", show=False, tooltip="Rerun it and everything downstream"),
        Binding("t", "fire_timer", "Timer", tooltip="Fire a timer now"),
        Binding("i", "inject", "Inject", tooltip="Inject an event"),
        Binding("p", "toggle_pause", "Pause", tooltip="Pause or resume intake"),
        Binding("c", "cancel_op", "Cancel", tooltip="Cancel the selected running op"),
        Binding("slash", "filter", "Filter", tooltip="Filter the pane (regex, ! inverts); jump in documents"),
        Binding("tab", "cycle_pane(1)", "Next pane", show=False),
        Binding("shift+tab", "cycle_pane(-1)", "Previous pane", show=False),
        Binding("1", "pane('events')", "Events pane", show=False),
        Binding("2", "pane('documents')", "Documents pane", show=False),
        Binding("3", "pane('workers')", "Workers pane", show=False),
        Binding("4", "pane('lanes')", "Lanes pane", show=False),
        Binding("5", "pane('output')", "Output pane", show=False),
        Binding("6", "pane('timeline')", "Timeline pane", show=False, tooltip="Timeline pane: runs per worker over time"),
        Binding("y", "copy", "Copy", show=False, tooltip="Copy the selected line or name (OSC 52, works over SSH)"),
        Binding("escape", "back", "Back", show=False, tooltip="Close the filter; back"),
    ]

    DEFAULT_CSS = """
    MainScreen { layers: base overlay; }
    MainScreen #too-small {
        layer: overlay; display: none; width: 100%; height: 100%;
        content-align: center middle; text-style: bold; background: $error 30%;
    }
    MainScreen.-too-small #too-small { display: block; }
    MainScreen.-too-small #panes, MainScreen.-too-small PaneTabs, MainScreen.-too-small StableFooter { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.active_pane = "events"
        self._chosen: str | None = None
        """The pane a key chose whose focus has not come yet."""

    @property
    def tinyo(self) -> ConsoleHost:
        """The console app."""
        return cast("ConsoleHost", self.app)

    def compose(self) -> ComposeResult:
        app = self.tinyo
        state, palette, now = app.state, app.palette, app.now
        yield StatusHeader(app.recipe_name, state, palette, now, id="header")
        yield PaneTabs()
        with Container(id="panes"):
            yield EventStream(state, palette, id="events")
            yield DocumentTree(state, palette, id="documents")
            yield OutputLog(state, palette, id="output")
            yield WorkersTable(state, palette, now, id="workers")
            yield LanesView(state, palette, id="lanes")
            yield RunTimeline(state, palette, now, id="timeline")
        yield FilterBar(id="filter")
        yield StableFooter(show_command_palette=False)
        yield Static(Text(f"terminal too small: need {MIN_WIDTH}x{MIN_HEIGHT}"), id="too-small")

    def on_mount(self) -> None:
        for index, (pane_id, title) in enumerate(PANES, 1):
            pane = self.pane(pane_id)
            pane.add_class("pane")
            pane.border_title = f"{index} {title}"
        self._activate("events")
        self.query_one("#events").focus()
        lanes = self.query_one(LanesView)
        lanes.known_flows = self.tinyo.known_flows()
        lanes.step_order = self.tinyo.flow_step_order()

    def pane(self, pane_id: str) -> Widget:
        """The widget of a pane."""
        return self.query_one(f"#{pane_id}")

    # ------------------------------------------------------------------ layout
    def on_resize(self, event: Resize) -> None:
        small = event.size.width < MIN_WIDTH or event.size.height < MIN_HEIGHT
        self.set_class(small, "-too-small")

    def _activate(self, pane_id: str) -> None:
        self.active_pane = pane_id
        for other, _title in PANES:
            self.pane(other).set_class(other == pane_id, "-active")
        self.query_one(PaneTabs).active = pane_id

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        widget: Widget | None = event.widget
        while widget is not None and not widget.has_class("pane"):
            parent = widget.parent
            widget = parent if isinstance(parent, Widget) else None
        if widget is None or not widget.id:
            return
        if self._chosen is not None:
            # a pane chosen by key gets its focus after the next repaint (a flood paces those): the focus of
            # a pane chosen before it, handed on late, must not make that one active again
            if widget.id != self._chosen:
                return
            self._chosen = None
        if widget.id != self.active_pane:
            self._activate(widget.id)

    def action_pane(self, pane_id: str) -> None:
        self._activate(pane_id)
        self._chosen = pane_id
        self.call_after_refresh(self._focus_chosen, pane_id)

    def _focus_chosen(self, pane_id: str) -> None:
        if self._chosen != pane_id:
            return  # another pane was chosen since: its own call focuses it
        target = self.pane(pane_id)
        focused = self.focused
        if not target.focusable or (focused is not None and (focused is target or target in focused.ancestors)):
            self._chosen = None  # it has the focus already, or cannot take it (a screen too small): none comes
            return
        target.focus()

    def on_pane_tabs_clicked(self, message: PaneTabs.Clicked) -> None:
        self.action_pane(message.pane_id)

    def action_cycle_pane(self, step: int) -> None:
        ids = [pane_id for pane_id, _ in PANES]
        index = ids.index(self.active_pane) if self.active_pane in ids else 0
        self.action_pane(ids[(index + step) % len(ids)])

    # ------------------------------------------------------------------ updates
    def on_state_changed(self, message: StateChanged) -> None:
        changes = message.changes
        if changes.reloaded:
            for log in self.query(StreamLog):
                log.reload()
        if changes.new_events:
            self.query_one(EventStream).rows_added(changes.new_events)
        elif changes.updated_events:
            self.query_one(EventStream).rows_changed()
        if changes.new_output:
            self.query_one(OutputLog).rows_added(changes.new_output)
        if changes.new_docs or changes.changed_docs or changes.changed_des or changes.groups:
            self.query_one(DocumentTree).apply(changes)
        if changes.workers or changes.changed_des:
            self.query_one(WorkersTable).refresh_rows()
        if changes.lanes:
            self.query_one(LanesView).refresh()
        if changes.runs or changes.workers:
            self.query_one(RunTimeline).refresh()
        self.query_one(StatusHeader).tick()

    def tick(self) -> None:
        """Refresh the clock-driven figures (uptime, rates, elapsed)."""
        self.query_one(StatusHeader).tick()
        self.query_one(WorkersTable).refresh_rows()
        self.query_one(RunTimeline).refresh()

    def restyle(self) -> None:
        """Repaint everything after a theme change."""
        for log in self.query(StreamLog):
            log.clear_cache()
        self.query_one(DocumentTree).relabel_all()
        self.query_one(WorkersTable).relabel_all()
        self.query_one(LanesView).refresh()
        self.query_one(RunTimeline).refresh()
        self.query_one(StatusHeader).tick()

    # ------------------------------------------------------------------ selection
    def on_selected(self, message: Selected) -> None:
        message.stop()

    def on_open_details(self, message: OpenDetails) -> None:
        message.stop()
        self.tinyo.open_details(message.kind, message.key, message.des_id)

    def current(self) -> Selected | None:
        """The active pane's selection, read from the pane itself (not from a message that may lag)."""
        pane = self.pane(self.active_pane)
        getter = getattr(pane, "current_selection", None)
        return getter() if getter is not None else None

    def _selected_des(self) -> tuple[str | None, str | None]:
        """(DES id, document name) the keys act on, from the active pane's selection."""
        sel = self.current()
        if sel is None:
            return None, None
        if sel.kind == "document":
            return sel.des_id, sel.key
        return sel.des_id, None

    # ------------------------------------------------------------------ actions
    def action_rerun(self, downstream: bool) -> None:
        des_id, doc = self._selected_des()
        commands = self.tinyo.commands
        sel = self.current()
        row = self.tinyo.find_event_row(sel.key) if sel is not None and sel.kind == "event" else None
        if row is not None:
            des_ids = self.tinyo.event_des(row)
            if des_ids:
                self.tinyo.rerun_some(des_ids, downstream, f"event {visible(row.name)}")
                return
        if des_id is not None:
            commands.rerun(des_id, downstream=downstream)
        elif doc is not None:
            self.notify(f"{visible(doc)} is a source document: no DES produces it", severity="warning",
                        markup=False)
        else:
            self.notify("select a DES first (documents, workers, output or an event with one DES)",
                        severity="warning", markup=False)

    def action_cancel_op(self) -> None:
        app = self.tinyo
        sel = self.current()
        des_id = sel.des_id if sel else None
        node = app.state.des.get(des_id) if des_id else None
        run_id = sel.run_id if sel and sel.run_id is not None else (node.run_id if node else None)
        if node is None or run_id is None or node.state != "running":
            self.notify("select a running op first (workers pane, or a running DES)", severity="warning",
                        markup=False)
            return
        app.confirm_cancel(run_id, node.des_id)

    def action_copy(self) -> None:
        """Copy the selection's text to the clipboard, by OSC 52 (the terminal's clipboard, over SSH too)."""
        text = self.copy_text()
        if not text:
            self.notify("nothing selected to copy", severity="warning", markup=False)
            return
        self.app.copy_to_clipboard(text)
        shown = visible(text)
        self.notify(f"copied {shown[:60]}{'…' if len(shown) > 60 else ''}", markup=False, timeout=3)

    def copy_text(self) -> str | None:
        """What ``y`` copies: the pane's own choice, else the selected event, line or name."""
        pane = self.pane(self.active_pane)
        own = getattr(pane, "copy_text", None)
        if own is not None:
            return own()
        sel = self.current()
        if sel is None:
            return None
        state = self.tinyo.state
        if sel.kind == "event":
            row = self.tinyo.find_event_row(sel.key)
            return row.name if row is not None else None
        if sel.kind == "output":
            return next((r.line for r in reversed(state.output) if str(r.seq) == sel.key), None)
        return sel.key

    def action_fire_timer(self) -> None:
        self.tinyo.pick_timer()

    def action_inject(self) -> None:
        self.tinyo.ask_inject()

    def action_toggle_pause(self) -> None:
        self.tinyo.toggle_pause()

    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if self.active_pane == "documents":
            bar.open("documents", "", jump=True)
            return
        target = self.active_pane if self.active_pane in ("events", "output") else "events"
        if target != self.active_pane:
            self._activate(target)
        log = self.query_one(f"#{target}", StreamLog)
        bar.open(target, log.filter_text)

    def on_filter_changed(self, message: FilterChanged) -> None:
        bar = self.query_one(FilterBar)
        if bar.jump:
            tree = self.query_one(DocumentTree)
            if message.pattern:
                found = tree.jump(("!" if message.invert else "") + message.pattern)
                if found is None and message.final:
                    self.notify(f"no document matches {visible(message.pattern)}", severity="warning",
                                markup=False)
            if message.final:
                tree.focus()
            return
        log = self.query_one(f"#{bar.target}", StreamLog)
        log.set_filter(message.pattern, message.invert)
        if message.final:
            log.focus()

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.has_class("-open"):
            bar.action_clear()
            return
        log = self.pane(self.active_pane)
        if isinstance(log, StreamLog) and log.filter_text:
            log.set_filter("")
