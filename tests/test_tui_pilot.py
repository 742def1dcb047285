"""Pilot tests: every key of the console against a real engine on a temp folder (threads executor)."""

from __future__ import annotations

import asyncio
import io
import functools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from tinyo.engine import Engine
from tinyo_tui.app import TinyoApp, build_app
from tinyo_tui.screens.confirm import ConfirmDialog
from tinyo_tui.state import group_key
from tinyo_tui.screens.inject import InjectDialog
from tinyo_tui.widgets.document_tree import DocumentTree
from tinyo_tui.widgets.workers_table import WorkersTable

RECIPE = '''
import re, time
from datetime import datetime, timedelta
from tinyo import DES, TinyOConfig, Config, Execution, meta_task

def load(context):
    print(f"loading {sorted(context['deps'])[0]}")

def transform(context):
    print(f"transforming for {context['config']['day']}")

def echo(context):
    print(f"echo {context['config']['what']}")

def slow(context):
    for _ in range(600):
        time.sleep(0.05)

@meta_task()
def facts(key):
    return (None, [DES(deps=[f"staging.{key}"], targs=[f"facts.{key}"], ops=[(transform, Config(day=key))])])

@meta_task(download=[facts], root=True)
def loader(event):
    m = re.match(r".*fact_file_(\\d{8})\\.csv$", event)
    if m:
        day = m.group(1)
        return (day, [DES(deps=[event], targs=[f"staging.{day}"], ops=[(load, Config(day=day))])])
    return (None, [])

@meta_task(root=True)
def manual(event):
    m = re.match(r"(echo|slow)_(\\w+)$", event)
    if m:
        op = echo if m.group(1) == "echo" else slow
        return (None, [DES(deps=[event], targs=[f"done.{event}"], ops=[(op, Config(what=m.group(2)))])])
    if event.startswith("tick_"):
        return (None, [DES(deps=[event], targs=[f"stamp.{event}"], ops=[(echo, Config(what=event))])])
    return (None, [])

config = TinyOConfig(
    sql_conn=SQL,
    dirs=[DATA],
    max_workers=2,
    execution=Execution.THREADS,
    debounce=0.05,
    timers=[{"name": "tick", "initial": datetime(2024, 1, 1), "interval": timedelta(hours=6)}],
)
'''


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "pilot_recipe.py"
    text = textwrap.dedent(RECIPE).replace("SQL", repr(str(tmp_path / "state.db"))).replace("DATA", repr(str(data)))
    path.write_text(text)
    return path


@pytest.fixture
def console(recipe: Path) -> Iterator[tuple[Engine, TinyoApp]]:
    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    yield engine, app
    engine.stop(timeout=2.0)


def render_text(renderable: Any) -> str:
    """Plain text of a rich renderable."""
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def sync(test: Callable[..., Any]) -> Callable[..., None]:
    """Run an async test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds (the bridge drains at ~12 Hz)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


async def started(pilot: Any, app: TinyoApp) -> None:
    await until(pilot, lambda: app.state.engine_state == "running", what="engine running")


def des_for_target(app: TinyoApp, target: str) -> str:
    doc = app.state.docs[target]
    assert doc.producer is not None
    return doc.producer


async def select_in_tree(pilot: Any, app: TinyoApp, key: str) -> None:
    """Press 2, then down until the tree's cursor is on the node for ``key`` (a group or document)."""
    await pilot.press("2")
    tree = app.screen.query_one(DocumentTree)
    for _ in range(60):
        node = tree.cursor_node
        if node is not None and node.data is not None and node.data[1] in (key, group_key(key)):
            return
        await pilot.press("down")
    raise AssertionError(f"{key} not found in the document tree")


async def drop_fact_file(pilot: Any, app: TinyoApp, recipe: Path, day: str) -> str:
    path = recipe.parent / "data" / f"fact_file_{day}.csv"
    path.write_text(f"sales {day}\n")
    await until(pilot, lambda: f"facts.{day}" in app.state.docs
                and app.state.docs[f"facts.{day}"].state == "up to date", what=f"facts.{day} built")
    return str(path)


@sync
async def test_r_reruns_the_selected_des(console: tuple[Engine, TinyoApp], recipe: Path) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await drop_fact_file(pilot, app, recipe, "20241027")
        des_id = des_for_target(app, "staging.20241027")
        assert app.state.des[des_id].runs == 1
        await select_in_tree(pilot, app, "staging.20241027")
        await pilot.press("r")
        await until(pilot, lambda: app.state.des[des_id].runs == 2 and app.state.des[des_id].state == "ok",
                    what="second run")
        details = await asyncio.to_thread(engine.des_details, des_id)
        assert [run.status for run in details.runs] == ["ok", "ok"]
        assert any(row.kind == "cmd" and row.line.startswith("tinyo rerun ") for row in app.state.output)


@sync
async def test_shift_r_reruns_downstream_too(console: tuple[Engine, TinyoApp], recipe: Path) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await drop_fact_file(pilot, app, recipe, "20241028")
        load_id = des_for_target(app, "staging.20241028")
        facts_id = des_for_target(app, "facts.20241028")
        await select_in_tree(pilot, app, "staging.20241028")
        await pilot.press("R")
        await until(pilot, lambda: app.state.des[load_id].runs == 2 and app.state.des[facts_id].runs == 2
                    and app.state.des[facts_id].state == "ok", what="both re-ran")
        assert any("--downstream" in row.line for row in app.state.output if row.kind == "cmd")


@sync
async def test_t_fires_the_timer_and_its_op_runs(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("t")
        await until(pilot, lambda: any(r.source == "timer" and r.name.startswith("tick_") for r in app.state.events),
                    what="timer event")
        await until(pilot, lambda: any(d.ops == ("echo",) and d.state == "ok" for d in app.state.des.values()),
                    what="timer op ran")
        assert any(row.line.startswith("echo tick_") for row in app.state.output)


@sync
async def test_i_injects_an_event_and_the_generator_runs(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("i")
        assert isinstance(app.screen, InjectDialog)
        await pilot.press(*"echo_hello", "enter")
        await until(pilot, lambda: any(r.name == "echo_hello" and r.source == "manual" for r in app.state.events),
                    what="manual event")
        await until(pilot, lambda: any(row.line == "echo hello" for row in app.state.output), what="op output")
        assert app.state.docs["done.echo_hello"].state == "up to date"


@sync
async def test_p_pauses_and_resume_releases_everything(console: tuple[Engine, TinyoApp], recipe: Path) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("p")
        await until(pilot, lambda: app.state.paused, what="paused")
        for name in ("echo_a", "echo_b", "echo_c"):
            engine.inject(name)
        await pilot.pause(0.8)
        assert not any(name.startswith("done.echo_") for name in app.state.docs), "nothing runs while paused"
        await pilot.press("p")
        await until(pilot, lambda: not app.state.paused, what="resumed")
        await until(pilot, lambda: all(app.state.docs.get(f"done.echo_{x}") is not None
                                       and app.state.docs[f"done.echo_{x}"].state == "up to date" for x in "abc"),
                    what="all three released")


@sync
async def test_c_cancels_the_running_op(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        engine.inject("slow_job")
        await until(pilot, lambda: app.state.running == 1, what="slow op running")
        await pilot.press("3")
        table = app.screen.query_one(WorkersTable)
        for _ in range(4):
            if table.selected_worker is not None and table.selected_worker.state == "busy":
                break
            await pilot.press("down")
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        des_id = des_for_target(app, "done.slow_job")
        await until(pilot, lambda: app.state.des[des_id].state == "cancelled", what="cancelled")
        details = await asyncio.to_thread(engine.des_details, des_id)
        assert details.runs[-1].status == "cancelled"


@sync
async def test_c_dialog_defaults_to_keeping_the_op(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        engine.inject("slow_keep")
        await until(pilot, lambda: app.state.running == 1, what="slow op running")
        await pilot.press("3", "down", "up")
        table = app.screen.query_one(WorkersTable)
        if table.selected_worker is None or table.selected_worker.state != "busy":
            await pilot.press("down")
        await pilot.press("c", "enter")
        await pilot.pause(0.3)
        assert app.state.running == 1, "enter takes the default button: Cancel, the op keeps running"


@sync
async def test_q_asks_when_ops_run_and_quits_leaving_a_consistent_store(console: tuple[Engine, TinyoApp],
                                                                        recipe: Path) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await drop_fact_file(pilot, app, recipe, "20241030")
        engine.inject("slow_quit")
        await until(pilot, lambda: app.state.running == 1, what="slow op running")
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmDialog)
        des_id = des_for_target(app, "done.slow_quit")
        app.commands.cancel(app.state.des[des_id].run_id or 0)
        await until(pilot, lambda: app.state.running == 0, what="op cancelled")
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, timeout=20, what="exit")
    assert app.return_code == 0
    engine.wait(10)
    again = Engine.from_path(recipe)
    again.start()
    try:
        docs = {d.name: d for d in again.documents(limit=100)}
        assert docs["staging.20241030"].version is not None
        assert docs["facts.20241030"].version is not None
        assert again.stats().failed == 0
    finally:
        again.stop(timeout=2.0)


@sync
async def test_filter_and_escape(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        for name in ("echo_one", "echo_two", "nomatch_three"):
            engine.inject(name)
        await until(pilot, lambda: len(app.state.events) >= 3, what="events")
        await pilot.press("1", "slash", *"echo")
        stream = app.screen.query_one("#events")
        assert len(stream.view) == 2
        await pilot.press("enter")
        assert stream.filter_text == "echo"
        await pilot.press("slash", "exclamation_mark", *"echo", "enter")
        assert len(stream.view) == 1
        await pilot.press("escape")
        assert stream.filter_text == ""


@sync
async def test_enter_opens_details_and_escape_goes_back(console: tuple[Engine, TinyoApp], recipe: Path) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await drop_fact_file(pilot, app, recipe, "20241031")
        await select_in_tree(pilot, app, "staging.20241031")
        await pilot.press("enter")
        from tinyo_tui.screens.details import DetailsScreen

        assert isinstance(app.screen, DetailsScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        body = render_text(app.screen.query_one("#body", Static).content)
        assert "runs (1)" in body and "staging.20241031" in body and "loading " in body
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailsScreen)


@sync
async def test_tab_and_number_keys_move_between_panes(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        screen = app.screen
        assert screen.active_pane == "events"
        await pilot.press("tab")
        assert screen.active_pane == "documents" and app.focused is screen.query_one("#documents")
        await pilot.press("shift+tab", "shift+tab")
        assert screen.active_pane == "timeline"
        await pilot.press("shift+tab")
        assert screen.active_pane == "output"
        await pilot.press("3")
        assert screen.active_pane == "workers" and screen.query_one("#workers").display
        assert not screen.query_one("#events").display


@sync
async def test_theme_switch_repaints_with_the_new_palette(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        dark_error = app.palette.style("failed").color
        app.theme = "tinyo-light"
        await pilot.pause()
        assert app.palette.style("failed").color != dark_error


@sync
async def test_help_lists_the_keys(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("question_mark")
        from tinyo_tui.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        keys = {key for key, _ in app.screen._rows}
        assert {"r", "R", "t", "i", "p", "c", "/", "q", "?"} <= {k for row in keys for k in row.split(", ")}
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@sync
async def test_command_palette_fires_a_timer(console: tuple[Engine, TinyoApp]) -> None:
    engine, app = console
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.press(*"fire timer tick")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: any(r.source == "timer" for r in app.state.events), what="timer event from palette")
        assert any(row.kind == "cmd" and row.line.startswith("tinyo fire ") for row in app.state.output)


HOSTILE_FILES = ["[bold]loud.txt", "x[red]y[dim].txt", "esc\x1b[31mred.txt", "new\nline.txt", "ünï ✓ 名前.txt",
                 "sp ace.txt"]


@sync
async def test_hostile_file_names_on_a_real_engine_show_literally(console: tuple[Engine, TinyoApp],
                                                                   recipe: Path) -> None:
    """Real files with markup, escapes, newlines and unicode in their names: each one event, shown literally."""
    from tinyo_tui.widgets.event_stream import EventStream

    engine, app = console
    data = recipe.parent / "data"
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        for name in HOSTILE_FILES:
            (data / name).write_text("x")
        await until(pilot, lambda: len([r for r in app.state.events if r.kind == "event"]) >= len(HOSTILE_FILES),
                    what="the hostile files' events")
        await pilot.pause(0.3)
        rows = [r for r in app.state.events if r.kind == "event"]
        assert sorted(Path(r.name).name for r in rows) == sorted(HOSTILE_FILES)  # each exactly once
        stream = app.screen.query_one(EventStream)
        shown = [render_text(stream.row_text(row)) for row in rows]
        text = "\n".join(shown)
        assert "\x1b" not in text, "an escape sequence would reach the terminal"
        assert "[bold]loud.txt" in text and "x[red]y[dim].txt" in text  # markup shown as text
        assert "esc\\x1b[31mred.txt" in text and "new\\nline.txt" in text  # control characters escaped
        assert "ünï ✓ 名前.txt" in text
        assert all(line.count("\n") == 1 for line in shown), "a name broke a row into several lines"


UNDECODABLE_FILES = [b"bad\xff\xfeutf8.csv", b"lone\x80cont.csv", b"trunc\xc3(.csv", b"surr\xed\xa0\x80.csv"]


@sync
async def test_undecodable_file_names_show_their_bytes_escaped(console: tuple[Engine, TinyoApp],
                                                               recipe: Path) -> None:
    """Files whose names are not UTF-8: the engine keeps running, each is one event, each undecodable byte
    shows as \\xNN in the event stream, the document tree and the details, and nothing on screen is unwritable."""
    import os

    from tinyo_tui.widgets.event_stream import EventStream

    engine, app = console
    data = bytes(recipe.parent / "data")
    async with app.run_test(size=(140, 40)) as pilot:
        await started(pilot, app)
        for raw in UNDECODABLE_FILES:
            with open(data + b"/" + raw, "wb") as fh:
                fh.write(b"x")
        await until(pilot, lambda: len([r for r in app.state.events if r.kind == "event"]) >= len(UNDECODABLE_FILES),
                    what="the undecodable files' events")
        await pilot.pause(0.3)
        assert engine.fatal is None and app.state.engine_state == "running"
        rows = [r for r in app.state.events if r.kind == "event"]
        assert sorted(os.fsencode(Path(r.name).name) for r in rows) == sorted(UNDECODABLE_FILES)
        text = "\n".join(render_text(app.screen.query_one(EventStream).row_text(row)) for row in rows)
        assert "bad\\xff\\xfeutf8.csv" in text and "lone\\x80cont.csv" in text and "trunc\\xc3(.csv" in text
        name = os.fsdecode(data + b"/" + UNDECODABLE_FILES[0])
        await until(pilot, lambda: name in app.state.docs, what="the document in the console's state")
        await select_in_tree(pilot, app, name)
        await pilot.pause(0.2)
        screen = app.export_screenshot()
        screen.encode("utf-8")  # every character on screen can be written to the terminal
        label = render_text(app.screen.query_one(DocumentTree).cursor_node.label)
        assert "bad\\xff\\xfeutf" in label, label
