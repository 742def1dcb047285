"""Pilot tests of the console's pacing under a flood: the panes repaint at their own pace, not once per
drain tick; a key goes before the facts waiting to be folded in; moving the focus does not lay the whole
screen out again. The clock that paces is stepped by the test (no wall-clock thresholds)."""

from __future__ import annotations

import time
from typing import Any

from test_tui_fixtures import ScriptedEngine
from test_tui_pilot import sync, until
from textual import events

from tinyo import events as ev
from tinyo_tui import app_wiring
from tinyo_tui.app import TinyoApp, build_app
from tinyo_tui.pacing import FLOOD_FACTS, PAINT_INTERVAL
from tinyo_tui.state import Changes, ConsoleState
from tinyo_tui.widgets.document_tree import DocumentTree

FLOOD = FLOOD_FACTS + 100
"""Facts a drain tick takes in under a flood (more than a trickle)."""


class Stepped:
    """A clock the test moves by hand (from a minute past the real one: every earlier paint is long ago)."""

    def __init__(self) -> None:
        self.now = time.perf_counter() + 60.0

    def __call__(self) -> float:
        return self.now


def publish_events(engine: ScriptedEngine, first: int, count: int) -> None:
    """``count`` events with ids from ``first``, as one batch on the bus (an engine cycle's)."""
    engine.bus.publish_many([ev.EventReceived(engine.clock.time(), first + n, f"flood_{first + n}.csv", "watch",
                                              des_count=0) for n in range(count)])


async def paced_console(pilot: Any, app: TinyoApp) -> tuple[Stepped, list[int]]:
    """The console started and idle; its pacer on a stepped clock; the new event rows of each paint."""
    await until(pilot, lambda: app.state.engine_state == "running", what="engine running")
    app.drain_all()
    await pilot.pause()
    clock = Stepped()
    app.pacer.clock = clock
    painted: list[int] = []
    show = app._show

    def spy(changes: Changes) -> None:
        painted.append(changes.new_events)
        show(changes)

    app._show = spy  # type: ignore[method-assign]
    return clock, painted


@sync
async def test_under_a_flood_the_panes_repaint_once_per_interval_not_once_per_drain_tick(monkeypatch: Any) -> None:
    monkeypatch.setattr(app_wiring, "TICK_BUDGET", 60.0)  # each tick folds all it takes, even on a slow machine
    engine = ScriptedEngine()
    app = build_app(engine, clock=engine.clock, theme="dark")
    async with app.run_test(size=(120, 30)) as pilot:
        clock, painted = await paced_console(pilot, app)
        stream = app.screen.query_one("#events")
        rows = len(app.state.events)
        for tick in range(3):  # three drain ticks of a flood within one paint interval
            publish_events(engine, 1 + tick * FLOOD, FLOOD)
            app.drain()
            clock.now += PAINT_INTERVAL / 4
        assert len(app.state.events) == rows + 3 * FLOOD  # every fact is folded in ...
        assert painted == [FLOOD]  # ... the first tick painted at once, the next two wait for the next paint
        clock.now += PAINT_INTERVAL
        await until(pilot, lambda: painted == [FLOOD, 2 * FLOOD], what="one paint with both ticks' rows")
        await pilot.pause()
        assert stream.cursor == rows + 3 * FLOOD - 1
        assert stream.selected.name == f"flood_{3 * FLOOD}.csv"  # it follows the newest


@sync
async def test_a_trickle_of_facts_paints_at_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(app_wiring, "TICK_BUDGET", 60.0)
    engine = ScriptedEngine()
    app = build_app(engine, clock=engine.clock, theme="dark")
    async with app.run_test(size=(120, 30)) as pilot:
        _clock, painted = await paced_console(pilot, app)
        for tick in range(3):  # the clock stands still: only the number of facts decides
            publish_events(engine, 1 + tick * 5, 5)
            app.drain()
        assert painted == [5, 5, 5]


@sync
async def test_a_key_is_handled_and_painted_before_the_facts_waiting_for_the_ui_are_folded_in() -> None:
    engine = ScriptedEngine()
    app = build_app(engine, clock=engine.clock, theme="dark")
    async with app.run_test(size=(120, 30)) as pilot:
        await paced_console(pilot, app)  # its clock stands still: only the key's paint ends the hold
        folded_on: list[str] = []
        apply = app.state.apply

        def spy(*args: Any, **kwargs: Any) -> Changes:
            folded_on.append(app.screen.active_pane)
            return apply(*args, **kwargs)

        app.state.apply = spy  # type: ignore[method-assign]
        rows = len(app.state.events)
        publish_events(engine, 1, FLOOD)
        app.post_message(events.Key("2", "2"))  # as the driver posts a typed key
        app.drain()  # the drain tick comes before the key reached the screen: it waits for the key
        assert len(app.state.events) == rows and folded_on == []
        await until(pilot, lambda: len(app.state.events) == rows + FLOOD, what="the facts folded in after the key")
        assert app.screen.active_pane == "documents"
        assert folded_on and set(folded_on) == {"documents"}  # folded in only once the key had switched panes


@sync
async def test_moving_the_focus_to_and_from_the_documents_does_not_lay_the_screen_out_again() -> None:
    engine = ScriptedEngine()
    app = build_app(engine, clock=engine.clock, theme="dark")
    async with app.run_test(size=(120, 30)) as pilot:
        await paced_console(pilot, app)
        tree = app.screen.query_one(DocumentTree)
        laid_out: list[str] = []
        refresh = tree.refresh

        def spy(*regions: Any, **kwargs: Any) -> Any:
            if kwargs.get("layout"):
                laid_out.append("documents")
            return refresh(*regions, **kwargs)

        tree.refresh = spy  # type: ignore[method-assign]
        for key in ("2", "1", "2", "3"):
            await pilot.press(key)
            await pilot.pause()
        assert app.screen.active_pane == "workers"
        assert laid_out == []


def test_late_events_folded_in_several_steps_go_in_their_place_once_the_drain_settles() -> None:
    """A resync's answer showed newer events first; the facts that waited come after it in several steps
    of one drain: the stream is rebuilt once, at the end, with every row in event order."""
    state = ConsoleState()
    source = ScriptedEngine()

    def received(first: int, count: int) -> list[ev.BusEvent]:
        return [ev.EventReceived(source.clock.time(), first + n, f"e{first + n}", "watch") for n in range(count)]

    state.apply(received(1, 10))
    state.apply(received(100, 5))  # the answer: newer events
    ch = Changes()
    for first in (11, 21, 31):
        state.apply(received(first, 10), ch, settle=False)
        assert not ch.reloaded  # not yet: more steps of the same drain follow
    state.settle(ch)
    assert ch.reloaded
    ids = [row.event_id for row in state.events]
    assert ids == sorted(ids) and len(ids) == 45
