"""The engine's inbox and intake never block its own loop: a full intake queue while a timer fires or a
CLI request is polled (both feed the intake from the loop's thread) does not hang the engine; other
threads only send typed messages, and the idle mark follows what they sent."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

import tinyo.engine as engine_module
from tinyo import events as ev
from tinyo.engine import Engine
from tinyo.messages import Pause, Query, Rescan, Resume, Stop
from tinyo.store import Store

RECIPE = '''
from datetime import datetime, timedelta
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def note(context):
    return None


@meta_task(root=True)
def every(event):
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["seen." + event]), ops=[(note, Config({}))])])


config = TinyOConfig(sql_conn=DB_PATH, dirs=[], maxevents=50, max_workers=1, execution=Execution.INLINE,
                     timers=[{"name": "hourly", "initial": datetime(2024, 1, 1), "interval": timedelta(hours=1)}])
'''

INTAKE_CAP = 8
"""The intake queue's size in these tests: small, so that it is easy to fill."""


def _engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, list[ev.BusEvent]]:
    monkeypatch.setattr(engine_module, "INTAKE_MAX", INTAKE_CAP)
    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE.replace("DB_PATH", repr(str(tmp_path / "state.db"))))
    engine = Engine.from_path(recipe)
    seen: list[ev.BusEvent] = []
    engine.bus.subscribe(seen.append)
    return engine, seen


def _fill_intake(engine: Engine) -> None:
    """Fill the intake queue to the brim before the loop runs (as a flood from the watcher would)."""
    for i in range(INTAKE_CAP):
        engine.inject(f"flood_{i}")
    assert engine.loop.inflow.queue.full()


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    # a deadlock detector, not a speed bound: the loop either gets there or never does
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"the engine did not get to: {what} (its loop is stuck)")


def test_a_timer_fired_while_the_intake_is_full_does_not_hang_the_loop(tmp_path, monkeypatch):
    engine, seen = _engine(tmp_path, monkeypatch)
    _fill_intake(engine)
    engine.fire_timer("hourly")  # queued before the start: the first cycle fires it on a full intake
    engine.start()
    try:
        processed = lambda: {e.name for e in seen if isinstance(e, ev.EventReceived)}  # noqa: E731
        _wait(lambda: any(name.startswith("hourly_") for name in processed()), "the timer's event processed")
        assert {f"flood_{i}" for i in range(INTAKE_CAP)} <= processed()
        assert [e for e in seen if isinstance(e, ev.TimerFired) and e.manual]
    finally:
        engine.stop(timeout=5)
    assert engine.wait(5)
    assert engine.fatal is None


def test_a_cli_request_polled_while_the_intake_is_full_does_not_hang_the_loop(tmp_path, monkeypatch):
    engine, seen = _engine(tmp_path, monkeypatch)
    # what `tinyo inject` and `tinyo fire` leave in the state file for a running engine
    side = Store(str(tmp_path / "state.db"), lock=False)
    side.add_request(time.time(), "inject", "from_the_cli")
    side.add_request(time.time(), "fire", "hourly")
    side.close()
    _fill_intake(engine)
    engine.start()  # the first cycle polls the requests with the intake still full
    try:
        processed = lambda: {e.name for e in seen if isinstance(e, ev.EventReceived)}  # noqa: E731
        _wait(lambda: "from_the_cli" in processed() and any(n.startswith("hourly_") for n in processed()),
              "the requested events processed")
    finally:
        engine.stop(timeout=5)
    assert engine.wait(5)
    check = Store(str(tmp_path / "state.db"))
    try:
        assert check.pending_requests() == []
    finally:
        check.close()


def test_other_threads_send_typed_messages_and_the_idle_mark_follows_them(tmp_path, monkeypatch):
    engine, seen = _engine(tmp_path, monkeypatch)
    engine.start()
    try:
        _wait(lambda: engine.idle_since is not None, "idle after start-up")
        engine.pause()
        engine.inject("while_paused")
        assert engine.idle_since is None, "an event sent but not yet taken in must count as busy"
        _wait(lambda: engine.paused, "paused")
        # paused with an event kept: busy (it waits, stored), never idle
        time.sleep(0.2)
        assert engine.idle_since is None
        engine.resume()
        _wait(lambda: engine.idle_since is not None and not engine.paused, "idle again after resume")
        processed = [e.name for e in seen if isinstance(e, ev.EventReceived)]
        assert "while_paused" in processed
    finally:
        engine.stop(timeout=5)
    assert engine.wait(5)


def test_the_inbox_carries_frozen_messages():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Stop(1.0).grace = 0  # type: ignore[misc]
    assert Stop(0.0) != Stop(1.0) and Stop(1.0) == Stop(1.0) and Pause() == Pause() != Resume() != Rescan()
    for kind in (Pause, Resume, Rescan, Stop, Query):
        assert kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
