"""Pilot tests of the console against a real engine: quitting, restarts, selection and navigation keys."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

from test_tui_pilot import console, des_for_target, recipe, started, sync, until  # noqa: F401 (fixtures)
from tinyo.engine import Engine
from tinyo_tui.app import TinyoApp, build_app
from tinyo_tui.screens.confirm import ConfirmDialog
from tinyo_tui.widgets.status_header import StatusHeader


@sync
async def test_q_answers_the_quit_question_and_q_again_stops_running_ops_at_once(recipe: Path) -> None:
    """q asks (ops run); q again answers it; the header counts the grace down; q once more does not wait
    for the grace (600 s here: only that q can end the app before the test times out)."""
    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark", grace=600.0)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            engine.inject("slow_forever")
            await until(pilot, lambda: app.state.running == 1, what="slow op running")
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("q")
            await until(pilot, lambda: app.state.stop_deadline is not None, what="stopping")
            header = app.screen.query_one(StatusHeader).render().plain
            counted = re.search(r"stopping (\d+)s", header)
            assert counted and 500 < int(counted.group(1)) <= 600, header  # a loaded machine may lag seconds
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None, timeout=30,
                        what="the app to exit without waiting for the grace")
        assert app.return_code == 0
        engine.wait(10)
        with sqlite3.connect(recipe.parent / "state.db") as db:
            runs = db.execute("SELECT status FROM runs").fetchall()
        assert ("interrupted",) in runs, runs
    finally:
        engine.stop(timeout=0)


def _headless_run(recipe: Path, events: list[str]) -> None:
    """A first session without the console: inject ``events`` and let every op finish."""
    engine = Engine.from_path(recipe)
    engine.start()
    try:
        for name in events:
            engine.inject(name)
        for _ in range(400):
            if engine.stats().events_total >= len(events) and engine.is_idle():
                break
            engine.wait(0.05)
    finally:
        engine.stop(timeout=5.0)


@sync
async def test_after_a_restart_the_panes_start_from_the_state_file(recipe: Path) -> None:
    """Groups and counts, the last events, the output and runs of the previous session show at once,
    and `/` jumps to a document nobody touched this session."""
    from tinyo_tui.widgets.document_tree import DocumentTree
    from tinyo_tui.widgets.output_log import OutputLog

    _headless_run(recipe, [f"echo_{n}" for n in range(12)])
    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            await until(pilot, lambda: len(app.state.events) >= 12, what="the previous session's events")
            rows = [row for row in app.state.events if row.name.startswith("echo_")]
            assert [row.name for row in rows] == [f"echo_{n}" for n in range(12)]
            assert all(row.des_count == 1 for row in rows)
            assert app.state.events_total >= 12
            output = [row.line for row in app.state.output]
            assert "echo 0" in output and "echo 11" in output
            assert app.state.runs.of_worker(app.state.runs.get(max(r.run_id for r in app.state.runs)).worker)
            tree = app.screen.query_one(DocumentTree)
            await until(pilot, lambda: len(tree.root.children) >= 2, what="the groups in the tree")
            labels = " ".join(str(node.label) for node in tree.root.children)
            assert "done.echo_" in labels and "(12)" in labels, labels
            await pilot.press("5")
            log = app.screen.query_one(OutputLog)
            shown = [log.row_plain(row) for row in log.view]  # (the recipe's timer may add a run of its own)
            assert any("echo 0" in line for line in shown) and any("echo 11" in line for line in shown), shown
            await pilot.press("2", "slash", *"echo_7", "enter")
            await until(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data is not None
                        and tree.cursor_node.data[1] == "done.echo_7", what="the jump to done.echo_7")
            await pilot.press("1", "g", "r")  # an event from the state file: its DES is looked up
            await until(pilot, lambda: any(r.kind == "cmd" and " rerun " in r.line for r in app.state.output),
                        what="the rerun of echo_0's DES")
            assert engine.des_of_event("echo_0")[0] in [r.line for r in app.state.output if r.kind == "cmd"][-1]
    finally:
        engine.stop(timeout=2.0)


SHARED_RECIPE = """
from tinyo import DES, Config, TinyOConfig, Execution, meta_task

def make(context):
    if context["config"].get("fail"):
        raise ValueError("failing on purpose")
    print("made")

@meta_task(root=True)
def on_event(event):
    if event == "make_shared":
        return (None, [DES(deps=frozenset(), targs=frozenset(["shared"]), ops=[(make, Config({}))])])
    if event.startswith("use_"):
        return (None, [DES(deps=frozenset(["shared"]), targs=frozenset([f"out.{event}"]),
                           ops=[(make, Config({"fail": event.endswith("_bad")}))])])
    return (None, [])

config = TinyOConfig(sql_conn=SQL, dirs=[], maxevents=10, max_workers=1, execution=Execution.THREADS)
"""


@sync
async def test_after_a_restart_a_built_document_a_new_des_reads_is_not_shown_missing(tmp_path: Path) -> None:
    """A document built in an earlier session and first heard of again as a DES's dep (a failed DES the engine
    announces at start, as the demo's warehouse reads rebuild) shows as the engine says, not as "missing"."""
    from tinyo_tui.widgets.document_tree import DocumentTree

    recipe = tmp_path / "shared.py"
    recipe.write_text(SHARED_RECIPE.replace("SQL", repr(str(tmp_path / "state.db"))))
    _headless_run(recipe, ["make_shared", "use_bad"])
    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            await pilot.press("2")
            await pilot.pause(0.3)
            tree = app.screen.query_one(DocumentTree)
            await until(pilot, lambda: any("shared" in str(n.label).split() for n in tree.root.children),
                        what="shared shown")
            label = next(str(n.label) for n in tree.root.children if "shared" in str(n.label).split())
            assert "up to date" in label and "missing" not in label, label
    finally:
        engine.stop(timeout=2.0)


@sync
async def test_j_k_g_G_move_in_documents_and_workers_and_documents_start_with_a_cursor(recipe: Path) -> None:
    from tinyo_tui.widgets.document_tree import DocumentTree
    from tinyo_tui.widgets.workers_table import WorkersTable

    _headless_run(recipe, [f"echo_{n}" for n in range(3)])
    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            tree = app.screen.query_one(DocumentTree)
            await until(pilot, lambda: len(tree.root.children) >= 2, what="groups")
            await pilot.press("2")
            await until(pilot, lambda: tree.cursor_line == 0, what="a cursor on the first node")
            await pilot.press("j")
            assert tree.cursor_line == 1
            await pilot.press("k")
            assert tree.cursor_line == 0
            await pilot.press("G")
            assert tree.cursor_line == tree.last_line > 0
            await pilot.press("g")
            assert tree.cursor_line == 0
            await pilot.press("space")
            assert tree.root.children[0].is_expanded, "space expands the node under the visible cursor"
            await pilot.press("3")
            table = app.screen.query_one(WorkersTable)
            await until(pilot, lambda: table.row_count >= 2, what="two workers")
            await pilot.press("j")
            assert table.cursor_row == 1
            await pilot.press("k")
            assert table.cursor_row == 0
            await pilot.press("G")
            assert table.cursor_row == table.row_count - 1
            await pilot.press("g")
            assert table.cursor_row == 0
    finally:
        engine.stop(timeout=0)


def test_lanes_list_steps_in_flow_order(tmp_path: Path) -> None:
    """Steps arrive in any order; the Lanes pane lists them source first, as the flow's hops run."""
    from test_tui_pilot import render_text
    from tinyo import events as ev
    from tinyo_tui.widgets.lanes_view import LanesView

    engine = Engine.from_path(str(Path(__file__).parent.parent / "examples" / "flow_enrich.py"),
                              db=str(tmp_path / "state.db"))

    async def run() -> None:
        app = build_app(engine, theme="dark", start_engine=False)
        async with app.run_test(size=(120, 40)) as pilot:
            for step in ("count", "write back", "add customer", "unknown customer", "stamp", "read orders", "result"):
                engine.bus.publish(ev.FlowMetrics(1.0, 7, "enrich_orders", "enrich_orders#7", step, 0, 1, "running", 5))
            app.drain_all()
            await pilot.press("4")
            await pilot.pause()
            text = render_text(app.screen.query_one(LanesView).render())
            shown = [line.split("  ")[0].strip() for line in text.splitlines()[2:9]]
            assert shown == ["read orders", "add customer", "stamp", "write back", "unknown customer", "count",
                             "result"], text

    try:
        asyncio.run(run())
    finally:
        engine.stop(timeout=0)


PAIR_RECIPE = '''
from tinyo import DES, Config, Execution, TinyOConfig, meta_task

def echo(context):
    print(f"echo {context['config']['what']}")

@meta_task(root=True)
def pair(event):
    if event.startswith("pair_"):
        return (None, [DES(deps=[event], targs=[f"{side}.{event}"], ops=[(echo, Config(what=side))])
                       for side in ("left", "right")])
    return (None, [])

config = TinyOConfig(sql_conn=SQL, dirs=[], max_workers=2, execution=Execution.THREADS)
'''


def _pair_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "pair_recipe.py"
    path.write_text(PAIR_RECIPE.replace("SQL", repr(str(tmp_path / "state.db"))))
    return path


def _reruns(app: TinyoApp) -> list[str]:
    return [row.line for row in app.state.output if row.kind == "cmd" and " rerun " in row.line]


@sync
async def test_r_on_an_event_that_made_two_des_asks_which(tmp_path: Path) -> None:
    """r on the event: a picker with 'all 2 DES' and each DES; the picked one reruns, then all of them;
    r in the event's details asks too (it used to rerun the first DES without a word)."""
    from tinyo_tui.screens.des_picker import DesPicker
    from tinyo_tui.screens.details import DetailsScreen

    recipe = _pair_recipe(tmp_path)
    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            engine.inject("pair_a")
            await until(pilot, lambda: sum(1 for r in app.state.output if r.line.startswith("echo ")) == 2,
                        what="both DES ran")
            await pilot.press("1", "G", "r")
            assert isinstance(app.screen, DesPicker)
            right = des_for_target(app, "right.pair_a")
            left = des_for_target(app, "left.pair_a")
            await pilot.press("j", "j")  # all, left, right: sorted as the generator made them
            await pilot.press("enter")
            await until(pilot, lambda: len(_reruns(app)) == 1, what="one rerun")
            assert right in _reruns(app)[0] and left not in _reruns(app)[0]
            # back on pair_a's row (the first): at the bottom the cursor follows the stream, and the rerun's
            # notice may have become the last row by now
            await pilot.press("g", "r", "enter")  # 'all 2 DES' is the first option
            await until(pilot, lambda: len(_reruns(app)) == 3, what="both rerun")
            assert {left, right} <= {line.split()[-1] for line in _reruns(app)[1:]}
            await pilot.press("g", "enter")  # the first row: pair_a (reruns added rows after it)
            assert isinstance(app.screen, DetailsScreen)
            await until(pilot, lambda: len(app.screen.des_ids) == 2, what="the details list both DES")
            await pilot.press("r")
            assert isinstance(app.screen, DesPicker)
            await pilot.press("escape")
            assert len(_reruns(app)) == 3, "esc reruns nothing"
    finally:
        engine.stop(timeout=2.0)


def _demo_engine(tmp_path: Path, monkeypatch: Any) -> Engine:
    """examples/demo.py on a folder and state file of the test's own (ops in threads: quicker to start)."""
    from tinyo.model import Execution

    monkeypatch.setenv("TINYO_DEMO_DIR", str(tmp_path / "demo"))
    return Engine.from_path(str(Path(__file__).parent.parent / "examples" / "demo.py"),
                            db=str(tmp_path / "demo.db"), execution=Execution.THREADS)


@sync
async def test_the_demo_demonstrates_every_key_it_advertises(tmp_path: Path, monkeypatch: Any) -> None:
    """examples/demo.py as its docstring walks it: t fires a tick that makes DES (it made none: the
    generator wanted a whole second), r fixes the report that fails on purpose (it failed on every
    rerun), i rebuild starts an op that c cancels, p pauses and resumes."""
    from tinyo_tui.screens.timer_picker import TimerPicker
    from tinyo_tui.widgets.workers_table import WorkersTable

    engine = _demo_engine(tmp_path, monkeypatch)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            await pilot.press("t")
            assert isinstance(app.screen, TimerPicker)
            await pilot.press("enter")  # tick
            await until(pilot, lambda: any(r.source == "timer" and r.des_count and not r.name.endswith(".0")
                                           for r in app.state.events), what="t's tick made DES")
            await pilot.pause(0.3)
            assert not any(r.errors for r in app.state.events), [r.errors for r in app.state.events if r.errors]
            await pilot.press("i", *"tick_18", "enter")
            await until(pilot, lambda: app.state.docs.get("report.9") is not None
                        and app.state.docs["report.9"].state == "failed", timeout=90, what="report 9 failed")
            await pilot.press("2", "slash", *"report.9", "enter")
            await until(pilot, lambda: (tree := app.screen.query_one("#documents")).cursor_node is not None
                        and tree.cursor_node.data[1] in ("report.9", "report.*"), what="jump to report.9")
            await pilot.press("r")
            await until(pilot, lambda: app.state.docs["report.9"].state == "up to date", timeout=90,
                        what="the rerun of report 9 succeeds")
            await pilot.press("i", *"rebuild", "enter")
            await until(pilot, lambda: any(w.op == "rebuild_warehouse" for w in app.state.workers.values()),
                        what="the rebuild running")
            await pilot.press("3")
            table = app.screen.query_one(WorkersTable)
            for _ in range(len(app.state.workers)):
                worker = table.selected_worker
                if worker is not None and worker.op == "rebuild_warehouse":
                    break
                await pilot.press("j")
            await pilot.press("c", "y")
            await until(pilot, lambda: any(r.line == "cancelled" and r.op == "rebuild_warehouse"
                                           for r in app.state.output), what="the rebuild cancelled")
            await pilot.press("p")
            await until(pilot, lambda: app.state.paused, what="paused")
            await pilot.press("p")
            await until(pilot, lambda: not app.state.paused, what="resumed")
    finally:
        engine.stop(timeout=0)


@sync
async def test_worker_details_list_the_workers_runs(recipe: Path) -> None:
    from test_tui_pilot import render_text
    from textual.widgets import Static

    from tinyo_tui.screens.details import DetailsScreen

    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await started(pilot, app)
            for n in range(4):
                engine.inject(f"echo_{n}")
            await until(pilot, lambda: sum(1 for run in app.state.runs if run.status == "ok") == 4, what="4 runs")
            busiest = max(app.state.workers, key=lambda w: len(app.state.runs.of_worker(w)))
            await pilot.press("3")
            table = app.screen.query_one("#workers")
            while table.selected_worker is None or table.selected_worker.name != busiest:
                await pilot.press("j")
            await pilot.press("enter")
            assert isinstance(app.screen, DetailsScreen)
            await app.workers.wait_for_complete()
            await pilot.pause()
            body = render_text(app.screen.query_one("#body", Static).content)
            mine = app.state.runs.of_worker(busiest)
            assert f"runs (last {len(mine)})" in body, body
            assert all(str(run.run_id) in body for run in mine) and "echo" in body and " ok " in body, body
    finally:
        engine.stop(timeout=2.0)


@sync
async def test_new_rows_count_goes_when_a_filter_changes_the_view(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot, app)
        for n in range(3):
            engine.inject(f"echo_{n}")
        await until(pilot, lambda: len(app.state.events) >= 3, what="events")
        await pilot.press("1", "k")
        for n in range(3, 6):
            engine.inject(f"echo_{n}")
        stream = app.screen.query_one("#events")
        await until(pilot, lambda: "new" in str(stream.border_subtitle), what="the new-rows count")
        await pilot.press("slash", *"echo_4", "enter")
        assert "new" not in str(stream.border_subtitle), stream.border_subtitle


@sync
async def test_a_click_on_the_tab_strip_switches_pane(console: tuple[Engine, TinyoApp]) -> None:
    from tinyo_tui.widgets.pane_tabs import PaneTabs

    engine, app = console
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        tabs = app.screen.query_one(PaneTabs)
        text = tabs.render().plain
        await pilot.click(PaneTabs, offset=(text.index("3 Workers") + 2, 0))
        await pilot.pause()
        assert app.screen.active_pane == "workers" and app.screen.query_one("#workers").display
        await pilot.click(PaneTabs, offset=(text.index("5 Output") + 2, 0))
        await pilot.pause()
        assert app.screen.active_pane == "output"


@sync
async def test_the_event_time_is_when_it_happened_not_when_it_was_processed(console: tuple[Engine, TinyoApp]) -> None:
    """Paused, an event waits; once resumed, its row shows when it was taken in, not when it ran."""
    import time as wall

    from tinyo import events as ev

    engine, app = console
    received: list[ev.EventReceived] = []
    engine.bus.subscribe(lambda e: received.append(e) if isinstance(e, ev.EventReceived) else None)
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot, app)
        await pilot.press("p")
        await until(pilot, lambda: app.state.paused, what="paused")
        engine.inject("echo_late")
        waited = wall.time()
        await until(pilot, lambda: app.state.buffered >= 1 or wall.time() - waited > 1.2, what="buffered")
        await pilot.pause(1.2)
        await pilot.press("p")
        await until(pilot, lambda: any(r.name == "echo_late" for r in app.state.events), what="the event's row")
        [event] = [e for e in received if e.name == "echo_late"]
        [row] = [r for r in app.state.events if r.name == "echo_late"]
        assert event.taken is not None and event.ts - event.taken >= 1.0, (event.ts, event.taken)
        assert row.ts == event.taken


@sync
async def test_j_and_k_move_in_every_picker_as_in_the_panes(tmp_path: Path, monkeypatch: Any) -> None:
    """The help lists j and k for down and up: the timer picker takes them too (it took only the arrows)."""
    from textual.widgets import OptionList

    from tinyo_tui.screens.timer_picker import TimerPicker

    engine = _demo_engine(tmp_path, monkeypatch)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await started(pilot, app)
            await pilot.press("t")
            assert isinstance(app.screen, TimerPicker)
            options = app.screen.query_one(OptionList)
            assert options.get_option_at_index(options.highlighted or 0).id == "tick"
            await pilot.press("j")
            assert options.get_option_at_index(options.highlighted or 0).id == "calendar"
            await pilot.press("k")
            assert options.get_option_at_index(options.highlighted or 0).id == "tick"
            await pilot.press("escape")
            assert not isinstance(app.screen, TimerPicker)
    finally:
        engine.stop(timeout=2.0)
