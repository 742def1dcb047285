"""The bus facts of a file's life, through a real engine (a real watcher, a real process pool, a real state
file): each state change is told once, and a reader of the facts (the console's state) derives from them
the states the engine has."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import drop, write_recipe

from tinyo import events as ev
from tinyo.dag import UP_TO_DATE
from tinyo_tui.state import ConsoleState

ONE_OP = """
def mark(context):
    pass

@meta_task(root=True)
def on_file(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['done ' + event]), ops=[(mark, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.PROCESSES)
"""

_LIFE = frozenset({"event_received", "document_updated", "des_registered", "des_state", "op_started",
                   "op_output", "op_finished", "op_failed", "op_cancelled"})
"""Fact kinds about a file's event, its DES and their documents (not the engine's, workers' or groups')."""


def _lines(stream, into: queue.Queue[dict]) -> None:
    for line in stream:
        if line.startswith("{"):
            into.put(json.loads(line))
    into.put({"type": "<eof>"})


def _until(facts: queue.Queue[dict], seen: list[dict], done, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done(seen):
        fact = facts.get(timeout=max(0.1, deadline - time.monotonic()))
        assert fact["type"] != "<eof>", f"the engine exited: {seen[-5:]}"
        seen.append(fact)


def test_a_file_dropped_into_a_watched_folder_is_told_in_four_facts_each_state_change_once(tmp_path, inbox):
    recipe = write_recipe(tmp_path, ONE_OP, db=tmp_path / "state.db", inbox=inbox)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--json"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    facts: queue.Queue[dict] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, facts), daemon=True).start()
    seen: list[dict] = []
    try:
        _until(facts, seen, lambda s: any(f["type"] == "engine_state" and f["state"] == "running" for f in s))
        path = str(drop(inbox, "a.csv"))
        mark = len(seen)
        _until(facts, seen, lambda s: any(f["type"] == "op_finished" for f in s[mark:]))
        time.sleep(0.3)  # anything told late would show up now
        while not facts.empty():
            seen.append(facts.get())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    life = [f for f in seen[mark:] if f["type"] in _LIFE]
    assert [f["type"] for f in life] == ["event_received", "des_registered", "op_started", "op_finished"], life
    received, registered, started, finished = life
    # the file's new version told by its event's fact, the DES's first state by its registration's, the
    # target's new version by its run's: no document_updated or des_state beside them
    assert (received["name"], received["source"], received["des_count"], received["errors"], received["version"]) \
        == (path, "file", 1, 0, 1)
    des_id = registered["des_id"]
    assert (registered["state"], registered["reason"]) == ("queued", "queued: never built")
    assert started["des_id"] == finished["des_id"] == des_id  # running, then ok: told by the run facts alone
    assert (finished["made"], finished["versions"]) == (["done " + path], [1])
    assert proc.returncode == 0


CHAIN = """
def load(context):
    dep = sorted(context['deps'])[0]
    if dep.endswith('bad.csv'):
        raise RuntimeError('bad input')
    while dep.endswith('slow.csv') and not os.path.exists('{gate}'):
        time.sleep(0.02)

def report(context):
    pass

@meta_task(root=True)
def on_file(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['loaded ' + event]), ops=[(load, Config({}))]),
                   DES(deps=frozenset(['loaded ' + event]), targs=frozenset(['report ' + event]),
                       ops=[(report, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.PROCESSES)
"""


def _views(h, state: ConsoleState) -> tuple[tuple, tuple]:
    """What the console shows and what the engine says: the header's counts, every DES the console heard of
    (state, reason), and its documents' states."""
    stats = h.engine.stats()
    des = {info.des_id: (info.state, info.reason) for info in h.engine.des_infos(list(state.des))}
    names = [n for n in state.docs if n not in state.guessed]
    docs = {info.name: info.state for info in h.engine.doc_infos(names)}
    shown = ((state.queued, state.running, state.failed), {i: (d.state, d.reason) for i, d in state.des.items()},
             {n: state.docs[n].state for n in names})
    return shown, ((stats.queued, stats.running, stats.failed), des, docs)


def _agrees(h, state: ConsoleState, applied: int) -> int:
    """Fold the facts published since ``applied`` into ``state`` until it shows the engine's states (the
    engine may still be telling the last of them); returns how many facts were folded."""
    deadline = time.monotonic() + 10
    while True:
        batch = h.events[applied:]  # a slice of the list the bus appends to: a consistent prefix
        state.apply(batch)
        applied += len(batch)
        shown, engine = _views(h, state)
        if shown == engine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert shown == engine
    return applied


def test_the_console_derives_the_engines_states_from_the_facts(tmp_path, inbox, harness):
    """Every DES the console heard of shows the engine's state and reason, its documents the engine's
    document states, and its header the engine's counts: while an op runs, and once all is done (ok,
    failed, and a chain's second DES run after the first)."""
    gate = tmp_path / "gate"
    recipe = write_recipe(tmp_path, CHAIN, db=tmp_path / "state.db", inbox=inbox, gate=gate)
    state = ConsoleState()
    with harness(recipe) as h:
        h.wait_for(lambda: h.engine.state == "running", what="the engine running")
        for name in ("a.csv", "b.csv", "bad.csv", "slow.csv"):
            drop(inbox, name)
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 4 and len(h.of(ev.OpFailed)) == 1
                   and len(h.of(ev.OpStarted)) == 6, what="all but the slow op done, it running")
        applied = _agrees(h, state, 0)
        assert (state.queued, state.running, state.failed) == (0, 1, 1)
        gate.write_text("open")
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 6, what="the slow chain done")
        _agrees(h, state, applied)
        assert (state.queued, state.running, state.failed) == (0, 0, 1)
        oks = [d for d in state.des.values() if d.state == "ok"]
        assert len(oks) == 6 and all(d.reason == UP_TO_DATE for d in oks)


def test_every_fact_class_builds_frozen_equal_instances_with_its_declared_fields_and_defaults():
    """The facts a file's life publishes have a quicker ``__init__`` than the dataclass's own: built by
    position or keyword, with or without their defaults, they are the same frozen dataclass instances."""
    import dataclasses
    import pickle

    facts = [c for c in vars(ev).values()
             if isinstance(c, type) and issubclass(c, ev.BusEvent) and c is not ev.BusEvent]
    assert ev.DESStateChanged in facts and len(facts) > 10
    for cls in facts:
        fields = dataclasses.fields(cls)
        required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        values = {f.name: f"v_{f.name}" for f in fields}
        by_position = cls(*values.values())
        by_name = cls(**values)
        assert by_position == by_name and pickle.loads(pickle.dumps(by_name)) == by_name
        assert {f.name: getattr(by_name, f.name) for f in fields} == values
        shortest = cls(**{f.name: values[f.name] for f in required})
        for f in fields:
            if f not in required:
                assert getattr(shortest, f.name) == (f.default if f.default is not dataclasses.MISSING
                                                     else f.default_factory())  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(by_name, fields[0].name, "changed")
        with pytest.raises(TypeError):
            cls(*values.values(), "one too many")
        if required:
            with pytest.raises(TypeError):
                cls()
