"""Pilot tests of the console against a real engine: quitting, restarts, selection and navigation keys."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

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
            await until(pilot, lambda: not app.is_running or app._exit_renderables is not None, timeout=30,
                        what="the app to exit without waiting for the grace")
        assert app.return_code == 0
        engine.wait(10)
        with sqlite3.connect(recipe.parent / "state.db") as db:
            runs = db.execute("SELECT status FROM runs").fetchall()
        assert ("interrupted",) in runs, runs
    finally:
        engine.stop(timeout=0)
