"""Unit tests of the console's pure parts (model, bridge, safe text, themes) and of the tree at scale."""

from __future__ import annotations

import asyncio

from rich.color import Color as RichColor

from test_tui_fixtures import ScriptedEngine
from tinyo import events as ev
from tinyo_tui.app import build_app
from tinyo_tui.bridge import MAX_OUTPUT, Bridge
from tinyo_tui.safe_text import visible
from tinyo.groups import GroupSummary
from tinyo_tui.state import MAX_CACHED, ConsoleState, group_key
from tinyo_tui.theming import load_themes, resolve_theme
from tinyo_tui.widgets.document_tree import PAGE, DocumentTree


def test_group_key_folds_numbers() -> None:
    assert group_key("print.20241027") == "print.*"
    assert group_key("/d/fact_file_20241027.csv") == "/d/fact_file_*.csv"
    assert group_key("ten_seconds_1730000010.0") == "ten_seconds_*"
    assert group_key("dimensional_table") == "dimensional_table"


def test_visible_escapes_control_characters_and_keeps_markup_literal() -> None:
    assert visible("a\x1b[31mb") == "a\\x1b[31mb"
    assert visible("x\ny\r\t") == "x\\ny\\r\\t"
    assert visible("bell\x07 del\x7f rtl\u202e") == "bell\\x07 del\\x7f rtl\\u202e"
    assert visible("[red]not markup[/]") == "[red]not markup[/]"
    assert visible("ünïcødé 日本") == "ünïcødé 日本"


def test_bridge_wakes_once_and_bounds_output() -> None:
    wakes: list[int] = []
    bridge = Bridge(wake=lambda: wakes.append(1))
    for i in range(MAX_OUTPUT + 50):
        bridge.publish(ev.OpOutput(ts=1.0, run_id=1, des_id="d", op="o", worker="w", stream="stdout", line=str(i)))
    bridge.publish(ev.EventReceived(ts=2.0, event_id=1, name="e", source="manual"))
    assert wakes == [1], "one wake-up per empty -> non-empty transition"
    batch = bridge.drain()
    assert bridge.dropped_output == 50
    assert len(batch) == MAX_OUTPUT + 1
    assert isinstance(batch[-1], ev.EventReceived), "merged by time, each stream in its own order"
    assert bridge.drain() == [], "an empty drain marks the buffer idle"
    bridge.publish(ev.EventReceived(ts=3.0, event_id=2, name="f", source="manual"))
    assert wakes == [1, 1]


def test_bridge_coalesces_flow_metrics_per_lane() -> None:
    bridge = Bridge()
    for rows in (10, 20, 30):
        bridge.publish(ev.FlowMetrics(ts=1.0, run_id=1, flow="f", flow_run="f#1", step="s", instance=0,
                                      instances=1, state="running", rows_in=rows))
    batch = bridge.drain()
    assert [m.rows_in for m in batch] == [30]


def test_event_stream_is_bounded_and_counts_older_rows() -> None:
    state = ConsoleState(max_events=100)
    batch: list[ev.BusEvent] = []
    for i in range(250):
        batch.append(ev.EventReceived(ts=float(i), event_id=i, name=f"e{i}", source="file", des_count=0))
    state.apply(batch)
    assert len(state.events) == 100 and state.events_dropped == 150
    assert len(state._event_by_id) == 100 and len(state._event_by_name) == 100
    assert state.events[-1].des_count == 0


def test_des_states_drive_document_states_and_counts() -> None:
    state = ConsoleState()
    state.apply([
        ev.DESRegistered(ts=0, des_id="a" * 16, deps=frozenset({"in"}), targs=frozenset({"out"}), ops=("op",),
                         generator="g", event="in"),
        ev.DESStateChanged(ts=0, des_id="a" * 16, state="waiting", reason="waiting on in"),
    ])
    assert state.docs["out"].state == "waiting" and state.docs["out"].detail == "waiting on in"
    state.apply([ev.DESStateChanged(ts=1, des_id="a" * 16, state="queued", reason="queued: never built")])
    assert state.queued == 1 and state.docs["out"].state == "queued"
    # the run's start tells its DES is running (no state fact beside it)
    state.apply([ev.OpStarted(ts=1, run_id=1, des_id="a" * 16, op="op", worker="w1", attempt=1,
                              targs=frozenset({"out"}))])
    assert (state.queued, state.running) == (0, 1) and state.docs["out"].state == "running"
    assert state.des["a" * 16].state == "running"
    state.apply([ev.OpFailed(ts=2, run_id=1, des_id="a" * 16, op="op", worker="w1", duration=1.0, error="boom",
                             traceback=""),
                 ev.DESStateChanged(ts=2, des_id="a" * 16, state="failed", reason="boom", previous="running")])
    assert state.running == 0 and state.failed == 1
    # the group counts are the engine's: they arrive as they are
    summary = GroupSummary("out", 1, "out", (("failed", 1),))
    state.apply([ev.GroupsChanged(ts=3, groups=(summary,))])
    assert state.groups["out"].state_count("failed") == 1


def test_the_cache_is_bounded_but_counts_stay_exact_and_what_is_on_screen_stays() -> None:
    """Under a stream of new DES the console keeps at most ``max_cached`` documents and DES (plus what
    is on screen), while the header counts stay exact: they move with the engine's transitions."""
    state = ConsoleState(max_cached=100)
    state.pinned_docs = {"out.00005"}
    batch: list[ev.BusEvent] = []
    for i in range(5000):
        des_id, doc = f"{i:016x}", f"out.{i:05d}"
        batch += [
            ev.DocumentUpdated(ts=i, name=f"in.{i:05d}", version=1, by="event"),
            ev.DESRegistered(ts=i, des_id=des_id, deps=frozenset({f"in.{i:05d}"}), targs=frozenset({doc}),
                             ops=("op",), generator="g", event=f"in.{i:05d}"),
            ev.DESStateChanged(ts=i, des_id=des_id, state="queued", reason="", previous="stale", targs=(doc,)),
        ]
        if i % 500 == 0:
            state.apply(batch)
            batch = []
    state.apply(batch)
    assert len(state.docs) <= 100 and len(state.des) == 5000, "queued DES must stay (header, cancel)"
    assert "out.00005" in state.docs, "a document on screen was dropped"
    assert state.queued == 5000
    for i in range(5000):  # every DES runs and finishes, long after most left the cache
        des_id, doc = f"{i:016x}", f"out.{i:05d}"
        started = ev.OpStarted(ts=i, run_id=i, des_id=des_id, op="op", worker="w1", attempt=1, targs=frozenset({doc}))
        if i % 1000:  # its success tells the DES is ok
            state.apply([started, ev.OpFinished(ts=i, run_id=i, des_id=des_id, op="op", worker="w1", duration=0.1)])
        else:
            state.apply([started, ev.OpFailed(ts=i, run_id=i, des_id=des_id, op="op", worker="w1", duration=0.1,
                                              error="x", traceback=""),
                         ev.DESStateChanged(ts=i, des_id=des_id, state="failed", reason="x", previous="running",
                                            targs=(doc,))])
    assert (state.queued, state.running, state.failed) == (0, 0, 5)
    assert len(state.docs) <= 100 and len(state.des) <= 100
    assert state.docs["out.00005"].state == "up to date"


def _xterm_256() -> set[tuple[int, int, int]]:
    levels = (0, 95, 135, 175, 215, 255)
    cube = {(r, g, b) for r in levels for g in levels for b in levels}
    ramp = {(v, v, v) for v in range(8, 239, 10)}
    return cube | ramp


def test_themes_load_and_use_exact_xterm_256_colours() -> None:
    """dark and light use only xterm-256 palette entries, so a 256-colour terminal shows them exactly."""
    themes = load_themes()
    assert {"tinyo-dark", "tinyo-light", "tinyo-high-contrast"} <= set(themes)
    assert resolve_theme("light", list(themes)) == "tinyo-light"
    palette = _xterm_256()
    for name in ("tinyo-dark", "tinyo-light", "tinyo-high-contrast"):
        theme = themes[name]
        for field in ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
                      "success", "warning", "error"):
            triplet = tuple(RichColor.parse(getattr(theme, field)).get_truecolor())
            assert triplet in palette, f"{name}.{field} = {getattr(theme, field)} is not an xterm-256 colour"


def test_tree_stays_usable_with_100000_documents() -> None:
    """100,000 timer documents fold into one group; expanding lists one page; jump finds any one."""
    engine = ScriptedEngine()
    app = build_app(engine, clock=engine.clock, theme="dark")

    async def run() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            for i in range(100_000):
                engine.document(f"print.tick_{1_730_000_000 + 10 * i}.0")
            app.drain_all()
            # 200,000 facts at once overflow the console's buffer: it asks the engine again for the counts
            for _ in range(200):
                await pilot.pause(0.05)
                if not app.resyncing:
                    break
            app.drain_all()
            await pilot.pause()
            tree = app.screen.query_one(DocumentTree)
            assert len(tree.root.children) == 1
            assert "(100000)" in tree.root.children[0].label.plain
            tree.root.children[0].expand()
            await pilot.pause()
            assert len(tree.root.children[0].children) == PAGE + 1
            name = tree.jump("tick_1730500000")
            await pilot.pause()
            assert name == "print.tick_1730500000.0"
            assert tree.cursor_node is not None and tree.cursor_node.data[1] == name
            # the console holds a bounded cache, not the 100,000 documents
            assert len(app.state.docs) <= MAX_CACHED + 2 * PAGE

    asyncio.run(run())


def _line(n: int) -> ev.OpOutput:
    return ev.OpOutput(ts=float(n), run_id=1, des_id="d", op="o", worker="w", stream="stdout", line=f"l{n}", line_no=n)


def test_the_output_lines_of_a_gap_go_in_their_place_once_each() -> None:
    from tinyo_tui.state import Changes

    state = ConsoleState()
    # before the gap 1..3; 7 and 8 came after it but ahead of the console's "missed" marker (merged by time)
    state.apply([_line(1), _line(2), _line(3), _line(7), _line(8)], Changes())
    state.note("3 facts were missed", "info", 8.5)
    ch = Changes()
    assert state.merge_output([_line(n) for n in range(2, 10)], ch) == 4  # 4, 5, 6 and 9; not 2, 3, 7, 8
    assert ch.reloaded
    state.apply([_line(9), _line(10)], Changes())  # 9 was in the answer: shown once; 10 is new
    shown = [row.line for row in state.output if row.kind == "stdout"]
    assert shown == [f"l{n}" for n in range(1, 11)]
    seqs = [row.seq for row in state.output]
    assert seqs == sorted(seqs) and state.output[-1].line == "l10"
    # a restarted engine numbers its lines from 1 again: they are its own, not those shown already
    state.apply([ev.EngineState(ts=11.0, state="stopped")], Changes())
    assert state.merge_output([_line(1), _line(2)], Changes()) == 2
    state.apply([_line(2), _line(3)], Changes())
    assert [row.line for row in state.output if row.kind == "stdout"][-4:] == ["l10", "l1", "l2", "l3"]


def _received(n: int) -> ev.EventReceived:
    return ev.EventReceived(ts=float(n), event_id=n, name=f"/in/f{n}", source="file", des_count=1)


def test_events_of_two_gaps_go_in_their_place_once_each_in_order() -> None:
    """A flood that makes two gaps: after each, the engine's recent events are put among those shown, and
    the facts held after the gap, which the answers may already cover, are shown once, in event order."""
    from tinyo.history import History, PastEvent
    from tinyo_tui.resync import _past
    from tinyo_tui.state import Changes

    def past(ids: range) -> History:
        return History([PastEvent(n, float(n), "file", f"/in/f{n}", "done", 1, "") for n in ids], [])

    state = ConsoleState()
    state.apply([_received(n) for n in (1, 2, 3)], Changes())  # then the first gap: 4..6 missed
    _past(state, past(range(1, 10)), Changes())  # the answers: the engine had taken in up to 9 meanwhile
    state.apply([_received(n) for n in (7, 8, 9, 10)], Changes())  # held after the first gap; then a second gap
    _past(state, past(range(5, 15)), Changes())  # 11..14 missed, the engine's last ten events
    state.apply([_received(n) for n in (13, 14, 15)], Changes())
    assert [row.event_id for row in state.events] == list(range(1, 16))
    seqs = [row.seq for row in state.events]
    assert seqs == sorted(seqs)
    # an answer that does not reach back to the gap (the engine's last events only): the facts held after
    # the gap are older than the answer's events, and go in before them
    state = ConsoleState()
    state.apply([_received(n) for n in (1, 2, 3)], Changes())  # then a gap: 4 missed for good
    _past(state, past(range(8, 13)), Changes())
    state.apply([_received(n) for n in (5, 6, 7, 8, 13)], Changes())
    assert [row.event_id for row in state.events] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert state.events_total == 3 + 3 + 1  # the answer's events are counted by the engine's stats instead
