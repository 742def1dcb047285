"""Provides DetailsScreen: everything about one DES, document, event or worker, and why it is so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..messages import QueryResult, Target
from ..safe_text import clock_time, duration, short_id, visible

if TYPE_CHECKING:
    from ..host import ConsoleHost

MAX_DES = 5
"""DES detailed on one event's screen."""


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline", end="\n")


def _lines(values: list[str] | tuple[str, ...] | frozenset[str], empty: str = "(none)") -> Text:
    text = Text(end="\n")
    items = sorted(values) if isinstance(values, frozenset) else list(values)
    if not items:
        text.append(f"  {empty}", style="dim")
    for index, value in enumerate(items):
        if index:
            text.append("\n")
        text.append("  " + visible(value))
    return text


def des_renderables(details: Any, explanation: str | None,
                    durations: dict[str, tuple[float, float, int]] | None = None) -> list[RenderableType]:
    """The sections of one DES: state and why, deps, targs, ops with config and their recent durations
    (p50/p95 over the op's runs this console saw), runs, traceback, output."""
    out: list[RenderableType] = []
    head = Text()
    head.append(f"DES {details.des_id}", style="bold")
    head.append(f"  state: {visible(details.state)}", style="bold")
    if details.reason:
        head.append(f" ({visible(details.reason)})")
    out.append(head)
    last_error = next((run.error for run in reversed(list(details.runs)) if run.error), None)
    if details.state == "failed" and last_error:
        out.append(Text(f"error: {visible(last_error)}", style="bold"))
    origin = Text(f"made by generator {visible(details.generator)} from event {visible(details.event)}",
                  style="dim")
    out.append(origin)
    if explanation:
        out.append(_section("why"))
        out.append(Text("\n".join("  " + visible(line) for line in explanation.splitlines())))
    out.append(_section("deps"))
    out.append(_lines(sorted(details.deps)))
    out.append(_section("targs"))
    out.append(_lines(sorted(details.targs)))
    out.append(_section("ops"))
    ops = Text()
    for index, (name, config) in enumerate(details.ops):
        if index:
            ops.append("\n")
        ops.append(f"  {index + 1}. {visible(name)}", style="bold")
        items = ", ".join(f"{visible(k)}={visible(repr(v))}" for k, v in dict(config).items())
        ops.append(f"  {{{items}}}" if items else "  {}", style="dim")
        stats = (durations or {}).get(name)
        if stats is not None:
            p50, p95, n = stats
            ops.append(f"\n     durations p50 {duration(p50)} · p95 {duration(p95)} over {n} run"
                       f"{'s' if n != 1 else ''}", style="dim")
    out.append(ops if details.ops else Text("  (no ops)", style="dim"))
    out.append(_section(f"runs ({len(details.runs)})"))
    if details.runs:
        table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold")
        for column in ("run", "attempt", "worker", "start", "duration", "status", "error"):
            table.add_column(column, no_wrap=column != "error")
        for run in list(details.runs)[-20:]:
            took = (run.end - run.start) if run.end is not None and run.start is not None else None
            table.add_row(
                Text(str(run.run_id)), Text(str(run.attempt)), Text(visible(run.worker or "-")),
                Text(clock_time(run.start) if run.start is not None else "-"),
                Text(duration(took) if took is not None else "…"),
                Text(visible(run.status)), Text(visible(run.error or "")),
            )
        out.append(table)
    else:
        out.append(Text("  never run", style="dim"))
    if details.last_traceback:
        out.append(_section("last traceback"))
        out.append(Text(details.last_traceback.rstrip(), no_wrap=True))
    out.append(_section(f"output ({len(details.output)} lines)"))
    out.append(_lines(list(details.output)[-200:], "(no output)"))
    return out


class DetailsScreen(Screen[None]):
    """Details of one item; refreshed when its DES changes. ``esc`` goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("r", "rerun(False)", "Rerun"),
        Binding("R", "rerun(True)", "Rerun+down"),
        Binding("c", "cancel_op", "Cancel op"),
        Binding("f5,ctrl+r", "reload", "Reload", show=False),
        Binding("y", "copy", "Copy", tooltip="Copy the traceback (or the name) by OSC 52"),
    ]

    DEFAULT_CSS = """
    DetailsScreen #title { dock: top; height: 1; background: $panel; text-style: bold; padding: 0 1; }
    DetailsScreen VerticalScroll { padding: 0 1; scrollbar-size-vertical: 1; }
    """

    def __init__(self, kind: Target, key: str, des_id: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.key = key
        self.des_id = des_id
        self.des_ids: list[str] = [des_id] if des_id else []
        self.copyable = ""
        """What ``y`` copies: the last traceback shown, else the item's name."""

    @property
    def tinyo(self) -> ConsoleHost:
        """The console app."""
        return cast("ConsoleHost", self.app)

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="title")
        with VerticalScroll(id="scroll"):
            yield Static(Text("loading…", style="dim"), id="body")
        yield Footer()

    def _title(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.kind == "des":
            text.append("DES ")
            text.append(visible(f"{self.tinyo.describe_des(self.key)}  [{self.key}]"))
        else:
            text.append(f"{self.kind}: ")
            text.append(visible(self.key if self.kind != "event" else self._event_name()))
        text.append("   esc: back", style="dim")
        return text

    def _event_name(self) -> str:
        row = self.tinyo.find_event_row(self.key)
        return row.name if row is not None else f"event #{self.key}"

    def on_mount(self) -> None:
        self.query_one("#scroll").focus()
        self.action_reload()

    def action_reload(self) -> None:
        """Gather what the console knows (UI loop), then ask the engine for the rest (a thread)."""
        app = self.tinyo
        parts: list[RenderableType] = []
        des_ids = list(self.des_ids)
        explain: list[str] = []
        if self.kind == "event":
            row = app.find_event_row(self.key)
            if row is None:
                parts.append(Text("this event is no longer in the console's memory", style="dim"))
            else:
                head = Text()
                head.append(visible(row.name), style="bold")
                head.append(f"\n{row.kind} from {visible(row.source)} at {clock_time(row.ts)}")
                if row.event_id is not None:
                    head.append(f" · event #{row.event_id}")
                if row.des_count is not None:
                    head.append(f" · the generators made {row.des_count} DES")
                parts.append(head)
                for generator, error, tb in row.errors:
                    self.copyable = self.copyable or tb
                    parts.append(_section(f"generator {visible(generator)} failed"))
                    parts.append(Text("  " + visible(error), style="bold"))
                    if tb:
                        parts.append(Text(tb.rstrip(), no_wrap=True))
                des_ids = list(row.des_ids[:MAX_DES])
                if row.kind in ("event", "timer"):
                    explain.append(row.name)
        elif self.kind == "document":
            parts.append(Text(f"document {visible(self.key)}", style="bold"))
            explain.append(self.key)
            doc = app.state.docs.get(self.key)
            if doc is not None:
                if doc.consumers:
                    consumers = sorted(doc.consumers)[:50]
                    parts.append(_section(f"read by ({len(doc.consumers)} DES)"))
                    parts.append(_lines([f"{short_id(d)} {app.describe_des(d)}" for d in consumers]))
                if doc.producer:
                    des_ids = [doc.producer]
        elif self.kind == "worker":
            row = app.state.workers.get(self.key)
            head = Text(f"worker {visible(self.key)}", style="bold")
            if row is not None:
                head.append(f"\npid {row.pid or '-'} · {row.state}")
                if row.detail:
                    head.append(f" · {visible(row.detail)}")
                if row.run_id is not None:
                    head.append(f"\nrunning run {row.run_id}: {visible(row.op)}")
                des_ids = [row.des_id] if row.des_id else []
            parts.append(head)
        # Durations come from the console's run history, which only this (UI) thread may read.
        history = app.state.history
        durations = {op: stats for des_id in des_ids if (node := app.state.des.get(des_id)) is not None
                     for op in node.ops if (stats := history.percentiles(op)) is not None}
        self._query(parts, des_ids, explain, durations)

    @work(thread=True, exclusive=True, group="details")
    def _query(self, parts: list[RenderableType], des_ids: list[str], explain: list[str],
               durations: dict[str, tuple[float, float, int]]) -> None:
        """Engine queries block briefly, so they run here, off the UI loop; the result is a message."""
        engine = self.tinyo.engine
        copy = ""
        try:
            why: list[RenderableType] = []
            for name in explain:
                why.append(_section("why"))
                why.append(Text("\n".join("  " + visible(x) for x in engine.explain(name).splitlines())))
            parts[1:1] = why
            for des_id in des_ids:
                details = engine.des_details(des_id)
                if details is None:
                    parts.append(Text(f"DES {des_id} is not known to the engine", style="dim"))
                    continue
                explanation = engine.explain(des_id)
                if parts:
                    parts.append(Text("─" * 40, style="dim"))
                parts.extend(des_renderables(details, explanation, durations))
                copy = copy or details.last_traceback or ""
        except Exception as exc:  # an engine query failed: show why instead of a blank screen
            self.post_message(QueryResult("details", None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(QueryResult("details", (Group(*parts), des_ids, copy)))

    def on_query_result(self, message: QueryResult) -> None:
        if message.query != "details":
            return
        message.stop()
        body = self.query_one("#body", Static)
        if message.error:
            body.update(Text(f"could not load details: {message.error}", style="bold"))
            return
        renderable, des_ids, copy = message.value
        self.des_ids = des_ids
        self.copyable = self.copyable or copy
        if des_ids and self.des_id is None:
            self.des_id = des_ids[0]
        body.update(renderable)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        text = self.copyable or (self.des_id if self.kind == "des" else self.key if self.kind != "event"
                                 else self._event_name())
        self.app.copy_to_clipboard(text or "")
        what = "traceback" if self.copyable else "name"
        self.notify(f"copied the {what} ({len(text or '')} characters)", markup=False, timeout=3)

    def action_rerun(self, downstream: bool) -> None:
        if len(self.des_ids) > 1:
            what = f"event {self._event_name()}" if self.kind == "event" else f"{self.kind} {self.key}"
            self.tinyo.rerun_some(list(self.des_ids), downstream, visible(what))
        elif self.des_id:
            self.tinyo.commands.rerun(self.des_id, downstream=downstream)
        else:
            self.notify("nothing to rerun here", severity="warning", markup=False)

    def action_cancel_op(self) -> None:
        node = self.tinyo.state.des.get(self.des_id or "")
        if node is None or node.state != "running" or node.run_id is None:
            self.notify("this DES is not running", severity="warning", markup=False)
            return
        self.tinyo.confirm_cancel(node.run_id, node.des_id)
