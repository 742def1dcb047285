"""Snapshot tests of the operator views: the header's counts and sparklines, and the run timeline.

Driven by the scripted engine on a ManualClock, so every bar and sparkline cell is deterministic.
Each docstring says what you should see. Update with ``--snapshot-update`` after checking the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from test_tui_fixtures import ScriptedEngine, shift_work
from tinyo import events as ev
from tinyo_tui.app import TinyoApp, build_app

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times render in UTC, whatever the machine's zone; no NO_COLOR."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def console() -> tuple[ScriptedEngine, TinyoApp]:
    engine = ScriptedEngine()
    return engine, build_app(engine, clock=engine.clock, theme="dark")


def scripted(app: TinyoApp, script: Callable[[], Any]) -> Callable[[Any], Any]:
    """A run_before that plays ``script`` on the engine and drains the bridge at once."""

    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        script()
        app.drain_all()
        await pilot.pause()
        await app.workers.wait_for_complete()  # the document tree asks the engine in a thread
        await pilot.pause()

    return run_before


def crowded(engine: ScriptedEngine) -> None:
    """The shift's work, then counts past what fits in long form: 12,345 events received,
    1,234 DES queued, 56 running, 2,345 failed."""
    begin = engine.clock.time()
    shift_work(engine)
    for n in range(12_345 - engine._event_id):  # a backlog taken in at the start, before the sparkline's window
        engine.bus.publish(ev.EventReceived(ts=begin, event_id=10_000 + n,
                                            name=f"/srv/in/bulk_{n}.csv", source="file"))
    for state, count in (("queued", 1234), ("running", 55), ("failed", 2343)):
        for n in range(count):
            engine.bus.publish(ev.DESStateChanged(ts=engine.clock.time(), des_id=f"{state}{n:06d}",
                                                  state=state, reason="", previous="waiting"))


@pytest.mark.parametrize("size", SIZES)
def test_header_fits_every_count(snap_compare: Any, size: tuple[int, int]) -> None:
    """Every count in the header, abbreviated where needed: 'up 50s', 'ev 12k' (or 'events 12,345'
    when wide), the events/s figure with its sparkline, 'q 1.2k', 'run 56', 'fail 2.3k'. At 80x24
    the recipe name stays whole and nothing is cut off; at 120x40 the runs/s sparkline shows too."""
    engine, app = console()
    assert snap_compare(app, terminal_size=size, run_before=scripted(app, lambda: crowded(engine)))


@pytest.mark.parametrize("size", SIZES)
def test_header_paused_keeps_uptime(snap_compare: Any, size: tuple[int, int]) -> None:
    """Paused with 23,456 events buffered: the reversed '⏸ paused 23k' badge (': 23,456 buffered'
    when wide), and the uptime 'up 50s' and every count still shown beside it."""
    engine, app = console()

    def script() -> None:
        crowded(engine)
        engine.pub(ev.EngineState, state="paused", detail="paused", buffered=23_456)

    assert snap_compare(app, terminal_size=size, run_before=scripted(app, script))


def test_header_wide_sparklines(snap_compare: Any) -> None:
    """At 200x50 the widest header: the 'tinyo' badge, long labels, and 30-cell sparklines of
    events/s (rising to the middle of the shift and falling) and runs/s (a run ending every few
    seconds)."""
    engine, app = console()
    assert snap_compare(app, terminal_size=(200, 50), run_before=scripted(app, lambda: shift_work(engine)))


@pytest.mark.parametrize("size", SIZES)
def test_timeline(snap_compare: Any, size: tuple[int, int]) -> None:
    """The Timeline pane (6), focused, over the last minute: w1's 3 s loads as █ bars with one ✗✗✗
    failed load in the middle; w2's long transforms, one ✗ failed, and a ▒ bar still running up to
    'now'. The axis reads '-1m00s ... -30s ... now'. 'left' twice selected w2's fourth run (reversed
    on the bar); the last lines describe it (run, op transform, DES, start, 6.0s) and give the
    transform durations p50/p95 over 4 runs."""
    engine, app = console()
    assert snap_compare(app, press=["6", "down", "left", "left"], terminal_size=size,
                        run_before=scripted(app, lambda: shift_work(engine)))


def test_timeline_failed_run_selected(snap_compare: Any) -> None:
    """At 80x24, w1's failed load selected (left from its newest run six times): reversed ✗ cells
    and 'failed: OSError: disk full' in red on the description line."""
    engine, app = console()
    assert snap_compare(app, press=["6", *["left"] * 6], terminal_size=(80, 24),
                        run_before=scripted(app, lambda: shift_work(engine)))
