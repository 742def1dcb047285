"""Snapshot tests of the console, driven by a scripted engine run on a ManualClock (deterministic).

Each docstring says what you should see. Update with ``pytest tests/test_tui_snapshots.py --snapshot-update``
after checking the report (``snapshot_report.html``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from test_tui_fixtures import ScriptedEngine, flow_lanes, retail_scenario
from tinyo import events as ev
from tinyo_tui.app import TinyoApp, build_app

WIDE = (140, 40)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times render in UTC, whatever the machine's zone; no NO_COLOR unless a test sets it."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def console(theme: str = "dark", *, timers: int = 2) -> tuple[ScriptedEngine, TinyoApp]:
    engine = ScriptedEngine(timers=timers)
    return engine, build_app(engine, clock=engine.clock, theme=theme)


def scripted(app: TinyoApp, script: Callable[[], Any] | None = None) -> Callable[[Any], Any]:
    """A run_before that plays ``script`` on the engine and drains the bridge at once."""

    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        if script is not None:
            script()
        app.drain_all()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


def test_empty_start(snap_compare: Any) -> None:
    """The engine is running with nothing seen yet: header 'retail_dynamic_demo ● running', two idle
    workers (w1, w2) in the Workers pane, 'no flow running' in Lanes, empty Events/Documents/Output,
    and the footer keys r t i p c / q ?."""
    _engine, app = console()
    assert snap_compare(app, terminal_size=WIDE, run_before=scripted(app))


def test_retail_scenario(snap_compare: Any) -> None:
    """After the retail run: seven events (one with a generator error in red), document groups
    'facts_with_* (2)' with one ✓ and one ✗, two loads and two transforms in Output, the failed
    transform's error line, and 'failed 1' in the header."""
    engine, app = console()
    assert snap_compare(app, terminal_size=WIDE, run_before=scripted(app, lambda: retail_scenario(engine, fail=True)))


def test_failed_op_details(snap_compare: Any) -> None:
    """The details screen of the failed transform: state failed with the ValueError as the reason,
    why, deps (staging.fact_table_20241028, dimensional_table), targs, ops with config, one failed
    run on w2, the traceback and the op's output."""
    engine, app = console()
    ids: dict[str, str] = {}

    def script() -> None:
        ids.update(retail_scenario(engine, fail=True))

    async def run_before(pilot: Any) -> None:
        await scripted(app, script)(pilot)
        app.open_details("des", ids["facts_20241028"], ids["facts_20241028"])
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)


def test_help(snap_compare: Any) -> None:
    """The key reference over the main screen: r, t, i, p, c, /, q, ? first, then the navigation
    keys, ctrl+p, and the pane keys."""
    engine, app = console()
    assert snap_compare(app, press=["question_mark"], terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine)))


def test_inject_dialog(snap_compare: Any) -> None:
    """The inject dialog with '20241029' typed in, over the dimmed main screen."""
    engine, app = console()
    assert snap_compare(app, press=["i", *"20241029"], terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine)))


def test_cancel_confirmation(snap_compare: Any) -> None:
    """With the second transform running on w2, the Workers pane selected on w2 and 'c' pressed: a
    dialog names run 5 of the DES, op transform, worker w2 and its target; 'Cancel (esc)' is focused."""
    engine, app = console()
    assert snap_compare(app, press=["3", "down", "c"], terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine, leave_running=True)))


def test_timer_picker(snap_compare: Any) -> None:
    """'t' with two timers opens a picker listing ten_seconds (every 0:00:10) and nightly."""
    engine, app = console()
    assert snap_compare(app, press=["t"], terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine)))


def test_filter_active(snap_compare: Any) -> None:
    """'/fact' in the Events pane: only the three fact_file events remain, the border says
    'filter: fact (3)', and the filter bar at the bottom shows 'fact'."""
    engine, app = console()
    assert snap_compare(app, press=["slash", *"fact"], terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine)))


def test_paused_badge(snap_compare: Any) -> None:
    """Intake paused with 12 events buffered: the header shows '⏸ paused' and a reversed
    ' paused: 12 buffered ' badge."""
    engine, app = console()

    def script() -> None:
        retail_scenario(engine)
        engine.pub(ev.EngineState, state="paused", detail="paused: 12 buffered", buffered=12)

    assert snap_compare(app, terminal_size=WIDE, run_before=scripted(app, script))


def test_80x24(snap_compare: Any) -> None:
    """At 80x24 one pane shows at a time: header (with 'failed 1' kept), the pane tabs with
    '1 Events' highlighted, the Events pane, and a footer that fits."""
    engine, app = console()
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=scripted(app, lambda: retail_scenario(engine, fail=True)))


def test_80x24_documents_expanded(snap_compare: Any) -> None:
    """At 80x24 on the Documents tab, the 'facts_with_*' group expanded: facts_with_20241027 ✓ up to
    date and facts_with_20241028 ✗ failed with its reason."""
    engine, app = console()
    assert snap_compare(app, press=["2", "down", "down", "down", "down", "space"],
                        terminal_size=(80, 24),
                        run_before=scripted(app, lambda: retail_scenario(engine, fail=True)))


def test_too_small(snap_compare: Any) -> None:
    """At 70x20: only 'terminal too small: need 80x24', centred."""
    engine, app = console()
    assert snap_compare(app, terminal_size=(70, 20),
                        run_before=scripted(app, lambda: retail_scenario(engine)))


@pytest.mark.parametrize("theme", ["dark", "light", "high-contrast"])
def test_theme(snap_compare: Any, theme: str) -> None:
    """The retail run in each theme: same layout; state colours from the theme (✓ green, ✗ red,
    ● accent), the focused Events pane's border in the accent colour."""
    engine, app = console(theme)
    assert snap_compare(app, terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine, fail=True, leave_running=False)))


def test_no_color(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR=1: the same screen in greys only; states still readable by their glyphs (✓ ✗ ● ○ ▪)."""
    monkeypatch.setenv("NO_COLOR", "1")
    engine, app = console()
    assert snap_compare(app, terminal_size=WIDE,
                        run_before=scripted(app, lambda: retail_scenario(engine, fail=True)))


HOSTILE = [
    "/tmp/data/[red]alert[/red].csv",
    "/tmp/data/[/]closing[bold]",
    "/tmp/data/\x1b[31mansi\x1b[0m.csv",
    "/tmp/data/line\nbreak\r.csv",
    "/tmp/data/bell\x07tab\tdel\x7f.csv",
    "/tmp/data/rtl\u202eoverride.csv",
    "/tmp/data/ünïcødé_日本語_🚀.csv",
]


def test_hostile_names(snap_compare: Any) -> None:
    """Events, documents and output lines named with markup, ANSI escapes, newlines, control chars,
    a bidi override and wide unicode show literally: '[red]alert[/red]', '\\x1b[31m', '\\n', '\\x07',
    '\\u202e' appear as text, nothing is coloured by them, and the frame is intact."""
    engine, app = console()

    def script() -> None:
        for name in HOSTILE:
            [des_id] = engine.receive(name, des=[("gen[bold]", [name], [f"out.{name}"], ["op[red]"])])
            engine.run(des_id, "w1", [f"printed {name}", "[link=http://x]click[/link] \x1b[2J cleared?"])

    assert snap_compare(app, terminal_size=WIDE, run_before=scripted(app, script))


def test_lanes(snap_compare: Any) -> None:
    """At 80x24 on the Lanes tab with a flow running: enrich_orders/read_orders 1/2 and 2/2 finished
    (2500 and 2430 rows out), lookup_customer running at 1830 rows/s with main=4090 miss=9, 1 error in
    red and a 75% buffer bar, write_enriched ⧖ blocked with a full buffer."""
    engine, app = console()
    assert snap_compare(app, press=["4"], terminal_size=(80, 24),
                        run_before=scripted(app, lambda: flow_lanes(engine)))
