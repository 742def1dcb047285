"""RemoteEngine: the in-process Engine's calls, answered by an engine in another process over its socket."""

from __future__ import annotations

import os
import re
import signal
import threading

import pytest

from test_control import _no_xdg, alive, recipe, service, tinyo, wait_for  # noqa: F401 - fixtures
from tinyo import events as ev
from tinyo.control.client import running_engine
from tinyo.control.handle import RemoteEngine
from tinyo.control.paths import ControlError
from tinyo.engine_state import DESDetails, DESInfo, DocInfo, EngineStats, RunInfo
from tinyo.executors.base import WorkerInfo
from tinyo.groups import GroupSummary
from tinyo.queries import QueryError
from tinyo.recipe import load_recipe


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.BusEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: ev.BusEvent) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: type) -> list:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def test_attached_the_bus_carries_history_then_live_facts_and_commands_act(recipe, tmp_path, service):
    assert tinyo("inject", str(recipe), "go-before").returncode == 0
    engine = RemoteEngine(load_recipe(recipe), tmp_path / "s.db")
    seen = Recorder()
    engine.bus.subscribe(seen)
    engine.start()
    try:
        assert engine.pid == service
        wait_for(lambda: any(e.line == "loaded go-before" for e in seen.of(ev.OpOutput)), what="the history")
        assert seen.of(ev.EngineState)[0].state == "starting"  # from the engine's start, not from now
        engine.inject("go-live")
        wait_for(lambda: any(e.line == "loaded go-live" for e in seen.of(ev.OpOutput)), what="the live op")
        engine.pause()
        wait_for(lambda: engine.state == "paused", what="paused")
        engine.resume()
        with pytest.raises(ControlError, match="no timer named 'nope'"):
            engine.fire_timer("nope")
        engine.fire_timer("tick")
        wait_for(lambda: any(e.manual for e in seen.of(ev.TimerFired)), what="the timer")
    finally:
        engine.stop()
    # detaching left the engine running
    with running_engine(tmp_path / "s.db") as client:
        assert client.pid == service


def test_attached_queries_answer_with_the_engine_s_own_types(recipe, tmp_path, service):
    assert tinyo("inject", str(recipe), "go-q").returncode == 0
    engine = RemoteEngine(load_recipe(recipe), tmp_path / "s.db")
    try:
        wait_for(lambda: [d.state for d in engine.doc_infos(["out/go-q"])] == ["up to date"], what="the run")
        assert isinstance(engine.stats(), EngineStats)
        groups = engine.groups_summary()
        assert groups and all(isinstance(g, GroupSummary) for g in groups)
        out = next(g for g in groups if g.first == "out/go-q")
        members = engine.group_members(out.pattern)
        assert [m.name for m in members] == ["out/go-q"] and isinstance(members[0], DocInfo)
        (info,) = engine.doc_infos(["out/go-q", "no/such"])
        assert info.state == "up to date" and isinstance(info.readers, tuple)
        (des,) = engine.des_infos([info.producer])
        assert isinstance(des, DESInfo) and des.deps == ("go-q",) and des.ops == ("load",)
        details = engine.des_details(info.producer)
        assert isinstance(details, DESDetails) and details.targs == frozenset({"out/go-q"})
        assert isinstance(details.runs[0], RunInfo) and details.runs[0].status == "ok"
        assert engine.des_details("nope") is None
        assert "produced by DES" in engine.explain("out/go-q")
        assert engine.locate("out/go-q") == (out.pattern, 0)
        assert engine.find_documents(re.compile("OUT/GO", re.IGNORECASE).search, 5) == ["out/go-q"]
        assert engine.find_documents("go-q", 5) == ["go-q", "out/go-q"]
        with pytest.raises(QueryError, match="searched by pattern"):
            engine.find_documents(lambda name: True)
        assert all(isinstance(w, WorkerInfo) for w in engine.workers())
    finally:
        engine.stop()


@pytest.fixture
def attached(recipe, tmp_path, service):
    """A RemoteEngine attached to the service, its bus recorded from the history on."""
    engine = RemoteEngine(load_recipe(recipe), tmp_path / "s.db")
    seen = Recorder()
    engine.bus.subscribe(seen)
    engine.start()
    try:
        wait_for(lambda: seen.of(ev.EngineState), what="the history")
        yield engine, seen
    finally:
        engine.stop()


def test_the_bus_says_when_the_engine_is_gone_and_stop_engine_ends_it(attached, service):
    engine, seen = attached
    engine.stop_engine()
    wait_for(lambda: any(e.state == "stopped" for e in seen.of(ev.EngineState)), what="the engine's stop")
    wait_for(lambda: not alive(service), what="the engine process to end")
    assert engine.state == "stopped"


def test_a_killed_engine_shows_up_as_stopped_on_the_bus(attached, service):
    engine, seen = attached
    os.killpg(service, signal.SIGKILL)
    gone = wait_for(lambda: [e for e in seen.of(ev.EngineState) if "is gone" in e.detail], what="the loss")
    assert gone[0].state == "stopped" and f"pid {service}" in gone[0].detail
    with pytest.raises(ControlError, match="gone"):
        engine.stats()
