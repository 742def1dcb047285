"""Pilot tests of the operator keys: sorting, copying (OSC 52), the timeline's keys, clicks, and `?`.

Sorting and the timeline use the scripted engine, whose worker states and run times are exact; copying
an event uses the real engine.
"""

from __future__ import annotations

import asyncio
import base64
import re
import textwrap
from pathlib import Path
from typing import Any

from test_tui_fixtures import ScriptedEngine, retail_scenario, shift_work
from tinyo import events as ev
from tinyo.engine import Engine
from tinyo_tui.app import TinyoApp, build_app
from tinyo_tui.screens.confirm import ConfirmDialog
from tinyo_tui.screens.details import DetailsScreen
from tinyo_tui.screens.help import HelpScreen
from tinyo_tui.widgets.document_tree import DocumentTree
from tinyo_tui.widgets.run_timeline import RunTimeline
from tinyo_tui.widgets.stream_log import StreamLog
from tinyo_tui.widgets.workers_table import WorkersTable

README = Path(__file__).resolve().parent.parent / "README.md"


def scripted_console() -> tuple[ScriptedEngine, TinyoApp]:
    engine = ScriptedEngine()
    return engine, build_app(engine, clock=engine.clock, theme="dark")


async def settle(app: TinyoApp, pilot: Any) -> None:
    app.drain_all()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def spy_osc52(app: TinyoApp) -> list[str]:
    """Record what the app writes to its terminal and return the texts sent by OSC 52."""
    written: list[str] = []
    driver = app._driver
    assert driver is not None
    original = driver.write

    def write(data: str) -> None:
        written.append(data)
        original(data)

    driver.write = write  # type: ignore[method-assign]
    return written


def osc52_texts(written: list[str]) -> list[str]:
    return [base64.b64decode(m).decode() for chunk in written for m in re.findall(r"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07", chunk)]


def row_order(table: WorkersTable) -> list[str]:
    return [str(table.coordinate_to_cell_key((row, 0)).row_key.value) for row in range(table.row_count)]


def test_s_sorts_workers_by_name_state_and_duration() -> None:
    async def run() -> None:
        engine, app = scripted_console()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            engine.pub(ev.WorkerChanged, worker="w3", pid=4103, state="idle")
            [long_des] = engine.receive("/in/a.csv", des=[("g", ["/in/a.csv"], ["a"], ["slow"])])
            [short_des] = engine.receive("/in/b.csv", des=[("g", ["/in/b.csv"], ["b"], ["quick"])])
            engine.pub(ev.OpStarted, run_id=1, des_id=long_des, op="slow", worker="w3", attempt=1,
                       targs=frozenset({"a"}))
            engine.clock.advance(15)
            engine.pub(ev.OpStarted, run_id=2, des_id=short_des, op="quick", worker="w2", attempt=1,
                       targs=frozenset({"b"}))
            engine.clock.advance(5)
            await settle(app, pilot)
            await pilot.press("3")
            table = app.screen.query_one(WorkersTable)
            assert row_order(table) == ["w1", "w2", "w3"]
            await pilot.press("down")  # w2
            await pilot.press("s")
            assert table.sort_mode == "state" and row_order(table) == ["w2", "w3", "w1"]  # busy first
            assert table.selected_worker is not None and table.selected_worker.name == "w2"
            await pilot.press("s")
            assert table.sort_mode == "duration" and row_order(table) == ["w3", "w2", "w1"]  # 20 s, 5 s, idle
            assert "by duration" in str(table.border_subtitle)
            await pilot.press("s")
            assert table.sort_mode == "name" and row_order(table) == ["w1", "w2", "w3"]
            assert table.selected_worker is not None and table.selected_worker.name == "w2"

    asyncio.run(run())


def test_s_sorts_a_document_groups_members_by_state() -> None:
    async def run() -> None:
        engine, app = scripted_console()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            retail_scenario(engine, fail=True)
            await settle(app, pilot)
            await pilot.press("2")
            tree = app.screen.query_one(DocumentTree)
            group = tree._groups["facts_with_*"]
            group.expand()
            await pilot.pause()

            def members() -> list[str]:
                return [child.data[1] for child in group.children if child.data is not None]

            assert members() == ["facts_with_20241027", "facts_with_20241028"]
            await pilot.press("s")
            assert tree.sort_mode == "state"
            assert members() == ["facts_with_20241028", "facts_with_20241027"]  # the failed one first
            assert group.is_expanded

    asyncio.run(run())


def test_y_copies_the_selected_event_name_by_osc52(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    recipe = tmp_path / "copy_recipe.py"
    recipe.write_text(textwrap.dedent(f'''
        from tinyo import TinyOConfig, Execution, meta_task

        @meta_task(root=True)
        def nothing(event):
            return (None, [])

        config = TinyOConfig(sql_conn={str(tmp_path / "state.db")!r}, dirs=[{str(data)!r}], max_workers=1,
                             execution=Execution.THREADS, debounce=0.05)
    '''))

    async def run() -> None:
        engine = Engine.from_path(recipe)
        app = build_app(engine, theme="dark")
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 15
                while app.state.engine_state != "running" and loop.time() < deadline:
                    await pilot.pause(0.05)
                written = spy_osc52(app)
                engine.inject("report [red]2024[/red] ünï")
                while not any(r.name.startswith("report") for r in app.state.events) and loop.time() < deadline:
                    await pilot.pause(0.05)
                events = app.screen.query_one("#events", StreamLog)
                events.focus()
                await pilot.press("end")
                assert events.selected is not None and events.selected.name == "report [red]2024[/red] ünï"
                await pilot.press("y")
                assert app.clipboard == "report [red]2024[/red] ünï"
                assert osc52_texts(written) == ["report [red]2024[/red] ünï"]
        finally:
            engine.stop(timeout=5)

    asyncio.run(run())


def test_y_in_details_copies_the_traceback() -> None:
    async def run() -> None:
        engine, app = scripted_console()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            ids = retail_scenario(engine, fail=True)
            await settle(app, pilot)
            written = spy_osc52(app)
            app.open_details("des", ids["facts_20241028"], ids["facts_20241028"])
            await settle(app, pilot)
            assert isinstance(app.screen, DetailsScreen)
            await pilot.press("y")
            traceback = engine._des[ids["facts_20241028"]].traceback
            assert traceback and app.clipboard == traceback
            assert osc52_texts(written) == [traceback]

    asyncio.run(run())


def test_timeline_keys_select_runs_open_them_and_cancel_the_running_one() -> None:
    async def run() -> None:
        engine, app = scripted_console()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            runs = shift_work(engine)
            await settle(app, pilot)
            await pilot.press("6")
            timeline = app.screen.query_one(RunTimeline)
            assert app.focused is timeline and timeline.selected_worker == "w1"
            assert timeline.selected_run is not None and timeline.selected_run.run_id == runs["load_11"]
            await pilot.press("left", "left")
            assert timeline.selected_run is not None and timeline.selected_run.run_id == runs["load_9"]
            await pilot.press("right")
            assert timeline.selected_run is not None and timeline.selected_run.run_id == runs["load_10"]
            written = spy_osc52(app)
            await pilot.press("y")
            assert osc52_texts(written) and f"run {runs['load_10']} load on w1" in osc52_texts(written)[0]
            await pilot.press("j")  # w2, whose newest run is still running
            record = timeline.selected_run
            assert record is not None and record.run_id == runs["t_5"] and record.status == "running"
            await pilot.press("minus")
            assert timeline.window == 300
            await pilot.press("plus")
            assert timeline.window == 60
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("escape")
            await pilot.press("enter")
            assert isinstance(app.screen, DetailsScreen) and app.screen.des_id == record.des_id

    asyncio.run(run())


def test_clicks_on_a_tab_and_on_rows_select_them() -> None:
    async def run() -> None:
        engine, app = scripted_console()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            runs = shift_work(engine)
            await settle(app, pilot)
            screen = app.screen
            # tabs: " 1 Events " " 2 Documents " " 3 Workers " ..., one space apart
            assert await pilot.click("PaneTabs", offset=(27, 0))
            await pilot.pause()
            assert screen.active_pane == "workers"
            assert await pilot.click("PaneTabs", offset=(3, 0))
            await pilot.pause()
            events = screen.query_one("#events", StreamLog)
            assert screen.active_pane == "events"
            assert await pilot.click("#events", offset=(5, 3))  # the third row (under the border)
            await pilot.pause()
            assert events.cursor == events.scroll_offset.y + 2 and not events.follow
            await pilot.press("6")
            timeline = screen.query_one(RunTimeline)
            name_width, track = timeline._geometry()
            # w2's row; the column where its failed transform (t_2, 10-15 s of 50) is drawn
            column = int((10 + 2.5 - (50 - 60)) / 60 * track)
            # offsets count the pane's border: row 2 is w2, the track starts after the name and '│'
            assert await pilot.click("#timeline", offset=(1 + name_width + 1 + column, 2))
            await pilot.pause()
            assert timeline.selected_worker == "w2"
            assert timeline.selected_run is not None and timeline.selected_run.run_id == runs["t_2"]

    asyncio.run(run())


def test_every_new_key_is_in_help_and_in_the_readme() -> None:
    async def run() -> None:
        engine, app = scripted_console()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            keys = {k.strip() for key, _ in app.screen._rows for k in key.split(",")}
            assert {"6", "y"} <= keys
            pane_keys = " ".join(key for key, _ in app.screen._pane_rows)
            for key in ("s", "left/right", "+ / -", "mouse", "pgup/pgdn"):
                assert key in pane_keys

    asyncio.run(run())
    table = README.read_text().split("| key | action |", 1)[1].split("\n\n", 1)[0]
    for key in ("`6`", "`y`", "`s`", "`+` / `-`", "`left` / `right`", "mouse"):
        assert key in table, f"README key table lacks {key}"
