"""The facts that tell more than their own news (an event's fact its document's new version, a new DES's fact
its first state, a run's end its targets' new versions) lose nothing: through a real engine (a real watcher, a
real process pool, a real state file, a real control socket), a console fed the engine's facts, a console
attached over the socket, and a console fed the same facts unfolded (each told by a fact of its own, as the
engine told them before the fold) show the same documents, versions, DES, states and counts, and those are
the engine's own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import drop, write_recipe

from tinyo import events as ev
from tinyo.control.handle import RemoteEngine
from tinyo.control.server import ControlServer
from tinyo.engine import Engine
from tinyo.recipe import load_recipe
from tinyo_tui.state import ConsoleState

RECIPE = """
import os

def load(context):
    dep = sorted(context['deps'])[0]
    if dep.endswith('bad.csv'):
        raise RuntimeError('bad input')
    if dep.endswith('flaky.csv') and not os.path.exists(dep + '.tried'):
        open(dep + '.tried', 'w').close()
        raise RuntimeError('flaky, the first time')

def report(context):
    pass

@meta_task(root=True)
def on_file(event):
    if event.endswith('.tried'):
        return (None, [])
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['loaded ' + event]), ops=[(load, Config({}))]),
                   DES(deps=frozenset(['loaded ' + event]), targs=frozenset(['report ' + event]),
                       ops=[(report, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.PROCESSES,
                     retries=1, retry_delay=0.05)
"""

BURST = 40


@pytest.fixture(autouse=True)
def _no_xdg(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def shown(state: ConsoleState) -> tuple:
    """What a console shows of the facts: the header's counts, each document (version, state, detail, producer),
    each DES (state, reason, error, runs), each event row (name, DES made of it)."""
    return ((state.queued, state.running, state.failed),
            {n: (d.version, d.state, d.detail, d.producer) for n, d in state.docs.items()},
            {i: (d.state, d.reason, d.error, d.runs) for i, d in state.des.items()},
            sorted((row.name, row.des_count) for row in state.events if row.kind == "event"))


def engine_says(engine: Engine, state: ConsoleState) -> tuple:
    """The engine's own answers about what ``state`` holds: versions and states of its documents, states and
    reasons of its DES, and its counts."""
    stats = engine.stats()
    names = [n for n in state.docs if n not in state.guessed]
    return ((stats.queued, stats.running, stats.failed),
            {info.name: (info.version, info.state) for info in engine.doc_infos(names)},
            {info.des_id: (info.state, info.reason) for info in engine.des_infos(list(state.des))})


def console_says(state: ConsoleState) -> tuple:
    _, docs, des, _ = shown(state)
    names = [n for n in state.docs if n not in state.guessed]
    return ((state.queued, state.running, state.failed), {n: docs[n][:2] for n in names},
            {i: d[:2] for i, d in des.items()})


def test_a_burst_with_a_failing_and_a_retried_op_shows_the_same_in_every_console_as_unfolded(
        tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "state.db", inbox=inbox)
    engine = Engine.from_path(recipe)
    here: list[ev.BusEvent] = []
    engine.bus.subscribe(here.append)
    server = ControlServer(engine).start()
    engine.start()
    remote = RemoteEngine(load_recipe(recipe), tmp_path / "state.db")
    there: list[ev.BusEvent] = []
    remote.bus.subscribe(there.append)
    remote.start()
    try:
        deadline = time.monotonic() + 60

        def settled(runs: int) -> None:
            """Until ``runs`` runs ended here and over the socket, and the engine is idle."""
            while True:
                ended = [f for f in here if type(f) in (ev.OpFinished, ev.OpFailed)]
                if len(ended) >= runs and engine.is_idle() and \
                        len([f for f in there if type(f) in (ev.OpFinished, ev.OpFailed)]) == len(ended):
                    return
                assert time.monotonic() < deadline, f"{len(ended)} runs ended, wanted {runs}"
                time.sleep(0.05)

        names = [f"f{i:03d}.csv" for i in range(BURST)] + ["bad.csv", "flaky.csv"]
        for name in names:  # dropped at once: taken in together, in batches
            drop(inbox, name)
        # each good file: two runs; flaky: a failure, then its two runs; bad: a failure and its retry's
        settled(2 * BURST + 3 + 2)
        drop(inbox, "f000.csv", "changed")  # a new version of a file built already: its chain runs again
        settled(2 * BURST + 3 + 2 + 2)
        time.sleep(0.3)  # anything told late would show up now
        settled(0)

        folded = [type(f) for f in here]
        assert ev.DocumentUpdated not in folded  # every version here told by its event's or its run's fact
        assert sum(1 for f in here if type(f) is ev.DESRegistered and f.state) == 2 * len(names)
        consoles = []
        for facts in (here, there, ev.unfold(here)):
            state = ConsoleState()
            state.apply(facts)
            consoles.append(state)
        local, attached, before = consoles
        assert shown(local) == shown(attached) == shown(before)
        assert console_says(local) == engine_says(engine, local)
        docs = shown(local)[1]
        assert docs[str(inbox / "f000.csv")][0] == 2 and docs[str(inbox / "f001.csv")][0] == 1
        assert docs["report " + str(inbox / "f000.csv")][:2] == (2, "up to date")
        assert docs["loaded " + str(inbox / "bad.csv")][1] == "failed"
        assert docs["report " + str(inbox / "flaky.csv")][:2] == (1, "up to date")
        assert (local.queued, local.running, local.failed) == (0, 0, 1)
    finally:
        remote.stop()
        server.close()
        engine.stop(timeout=5)
