"""The loop's per-batch seams, on a real state file without a loop thread or worker processes: a worker's
batch of reports leaves what the same reports one by one leave; rows a batch holds are in the commit
that releases its facts; a queued DES whose upstream became pending is not run before it."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tinyo import events as ev
from tinyo.core.loop import Loop
from tinyo.core.registration import REGISTER_SLICE
from tinyo.generators import Emission
from tinyo.model import DES, Config
from tinyo.store import Store

from test_engine_parts import RECIPE, wire_loop


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[Callable[[str], Loop]]:
    """Loops wired as the engine wires them, each on its own real state file, never started."""
    stores: list[Store] = []

    def make(name: str) -> Loop:
        folder = tmp_path / name
        folder.mkdir()
        loop = wire_loop(folder, RECIPE)
        stores.append(loop.store)
        return loop

    yield make
    for store in stores:
        store.close()


def _register(loop: Loop, deps: list[str], targs: list[str]) -> str:
    des = DES(deps=deps, targs=targs, ops=[(loop.recipe.module.step, Config({}))])
    assert loop.registration.register(des, "nothing", "e1", "e1")
    return des.id


def _take(loop: Loop, slots: int = 10) -> list[Any]:
    loop.dispatch.settle()
    return loop.dispatch.take(slots)


def _facts(loop: Loop) -> list[tuple[Any, ...]]:
    """The published facts without their times (two loops on two clocks are compared)."""
    return [(type(f).__name__, *[getattr(f, x.name) for x in dataclasses.fields(f) if x.name != "ts"])
            for f in loop.published]  # type: ignore[attr-defined]


def _state(loop: Loop, des_ids: list[str], docs: list[str]) -> dict[str, Any]:
    """What the loop holds in memory and in its state file about the DES, documents and runs."""
    store = loop.store
    rows = {i: store.des_row(i) for i in des_ids}
    return {
        "nodes": {i: (n.state, n.status, n.reason, n.trace, n.failed_trace) for i in des_ids
                  if (n := loop.graph.nodes.get(i)) is not None},
        "des rows": {i: (r.state, r.trace, r.failed_trace, r.attempt) for i, r in rows.items() if r is not None},
        "runs": {i: [(r.id, r.status, r.error) for r in store.runs_for(i)] for i in des_ids},
        "versions": store.doc_versions_many(docs),
        "names": sorted(store.all_names()),
        "groups": loop.documents.groups.summaries(),
        "failures": loop.runbook.failures,
        "retries": [d for _, d in loop.runbook.retries],
    }


def test_a_batch_of_worker_reports_leaves_what_the_same_reports_one_by_one_leave(make_loop, tmp_path):
    """A worker's reports come in batches: the runs that end in one (ok, failed with a retry, a target file
    written) are recorded together, and the facts, memory, rows and group counts are those of one by one."""
    outcomes: dict[str, dict[str, Any]] = {}
    made = tmp_path / "made.txt"  # the file target both loops' op "wrote"
    made.write_text("built")
    for name in ("batched", "one_by_one"):
        loop = make_loop(name)
        ids = [_register(loop, ["raw"], [f"out{i}"]) for i in range(4)]
        ids.append(_register(loop, ["raw"], [str(made)]))
        ids.append(_register(loop, ["out0"], ["final"]))
        loop.documents.bump("raw", by="event")
        tasks = _take(loop)
        assert [t.des_id for t in tasks] == ids[:5], "every DES reading only raw is ready"
        messages: list[tuple[str, int, Any]] = []
        for task in tasks:
            ok = task.des_id != ids[2]
            messages.append(("start", task.run_id, ("w1", 10.0)))
            messages.append(("done", task.run_id, (ok, None if ok else "boom", None if ok else "Traceback", None,
                                                   0.5)))
        if name == "batched":
            loop.runbook.on_reports("w1", messages)
        else:
            for kind, run_id, payload in messages:
                loop.runbook.on_message("w1", kind, run_id, payload)
        then = _take(loop)
        assert [t.des_id for t in then] == [ids[5]], "what reads a built target is ready next"
        loop._commit_and_publish(then)
        outcomes[name] = {"state": _state(loop, ids, ["raw", "out0", "out1", "final", str(made)]),
                          "facts": _facts(loop)}
    batched, one_by_one = outcomes["batched"], outcomes["one_by_one"]
    assert batched["state"]["des rows"], "the rows are in the state file"
    assert batched["state"]["failures"] == 0 and len(batched["state"]["retries"]) == 1, "the failed run waits to retry"
    assert [r[1] for r in batched["state"]["runs"][next(iter(batched["state"]["runs"]))]] == ["ok"]
    assert batched["state"] == one_by_one["state"]
    assert batched["facts"] == one_by_one["facts"]


def test_a_batch_of_reports_settles_in_place_only_what_dispatch_would_settle_the_same_way(make_loop):
    """The run book settles a batch's DES at its end, in place, where nothing reads them and they end running
    or up to date; the rest (a DES with a reader, one failed or waiting to retry, one whose dep changed while
    it ran) is left to dispatch. Either way the states, reasons, rows, group counts, facts and ready queue are
    those the same reports leave one by one, each settled by dispatch."""
    outcomes: dict[str, dict[str, Any]] = {}
    for name in ("batched", "one_by_one"):
        loop = make_loop(name)
        ok = _register(loop, ["raw"], ["out_ok"])  # nothing reads it: settled in place
        read = _register(loop, ["raw"], ["out_read"])  # starts only; its reader must hear it is running
        reader = _register(loop, ["out_read"], ["final"])
        starts = _register(loop, ["raw"], ["out_starts"])  # starts only, nothing reads it: running in place
        retry = _register(loop, ["raw"], ["out_retry"])  # fails, runs again after its back-off
        lost = _register(loop, ["raw"], ["out_lost"])  # fails on its last attempt
        moved = _register(loop, ["raw2"], ["out_moved"])  # ends ok on a dep changed since: runs again
        ids = [ok, read, reader, starts, retry, lost, moved]
        loop.runbook.attempts[lost] = 3  # RECIPE's retries=2: this run is the last
        loop.documents.bump("raw", by="event")
        loop.documents.bump("raw2", by="event")
        tasks = {t.des_id: t for t in _take(loop)}
        assert set(tasks) == {ok, read, starts, retry, lost, moved}
        loop._commit_and_publish([])
        loop.documents.bump("raw2", by="event")  # while ``moved`` runs
        loop.dispatch.settle()
        loop.published.clear()
        messages: list[tuple[str, int, Any]] = []
        for des_id, task in tasks.items():
            messages.append(("start", task.run_id, ("w1", 10.0)))
            if des_id in (read, starts):
                continue
            good = des_id not in (retry, lost)
            messages.append(("done", task.run_id, (good, None if good else "boom", None if good else "Traceback",
                                                   None, 0.5)))
        if name == "batched":
            loop.runbook.on_reports("w1", messages)
            nodes = loop.graph.nodes
            assert (nodes[ok].state, nodes[starts].state) == ("ok", "running"), "settled in place"
            assert ok not in loop.touched and starts not in loop.touched
            assert {read, retry, lost, moved} <= set(loop.touched), "left to dispatch"
        else:
            for kind, run_id, payload in messages:
                loop.runbook.on_message("w1", kind, run_id, payload)
        then = _take(loop)
        loop._commit_and_publish(then)
        state = _state(loop, ids, ["raw", "raw2", "out_ok", "out_read", "out_moved", "final"])
        state["ready"] = [t.des_id for t in then] + list(loop.dispatch.ready)
        state["told"] = dict(loop.runbook.told)
        state["failed"] = sorted(loop.dispatch.failed)
        outcomes[name] = {"state": state, "facts": _facts(loop)}
    batched, one_by_one = outcomes["batched"], outcomes["one_by_one"]
    nodes = batched["state"]["nodes"]
    assert nodes[ok][0] == "ok" and nodes[starts][0] == nodes[read][0] == "running"
    assert "DES " + read + " is running" in nodes[reader][2], "the reader of a DES that started was told"
    assert nodes[retry][0] == "retry" and nodes[lost][0] == "failed" and batched["state"]["failed"] == [lost]
    assert batched["state"]["ready"] == [moved], "a DES whose dep changed while it ran runs again"
    assert batched["state"]["told"] == {}
    assert batched["state"] == one_by_one["state"]
    assert batched["facts"] == one_by_one["facts"]


def test_rows_a_batch_holds_are_in_the_commit_that_releases_its_facts(make_loop):
    """Registration and documents hand a batch's rows to the store together; a commit in the middle of a
    batch (a huge emission dispatches what is ready before it is all registered) takes them with it, so no
    released fact speaks of a row another reader of the state file cannot see."""
    loop = make_loop("one")
    reader = sqlite3.connect(loop.store.path)

    def committed() -> tuple[int, list[tuple[str, int]]]:
        des = reader.execute("SELECT count(*) FROM des").fetchone()[0]
        docs = reader.execute("SELECT name, version FROM documents WHERE version IS NOT NULL ORDER BY name").fetchall()
        return des, docs

    loop.registration.begin_batch()
    loop.documents.begin_batch()
    des_id = _register(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    assert committed() == (0, [])
    loop._commit_and_publish(_take(loop))
    assert committed() == (1, [("raw", 1)]), "the open batch's rows went with the commit"
    released = [f for f in loop.published if isinstance(f, (ev.DESRegistered, ev.DocumentUpdated, ev.DESStateChanged))]
    assert [type(f) for f in released] == [ev.DESRegistered, ev.DocumentUpdated]
    assert released[0].state == "queued"  # its first state, told in its registration
    assert released[0].des_id == des_id
    _register(loop, ["raw"], ["other"])  # the batch is still open: its next rows wait for the next commit
    assert committed()[0] == 1
    loop.registration.end_batch()
    loop.documents.end_batch()
    loop.store.commit()
    assert committed()[0] == 2
    reader.close()


def test_a_huge_emission_is_looked_up_once_not_per_des_across_its_slices(make_loop):
    """An emission of several REGISTER_SLICE DES is committed and dispatched slice by slice; what the batch's
    one prefetch found in the state file stays in memory until the batch is registered, so no DES of a later
    slice is looked up on its own (a chain: each DES reads the target of the one before)."""
    loop = make_loop("one")
    loop.inflow.queue.put(("manual", "go", None))
    assert loop.inflow.store_events(loop._take_many) == 1
    batch = loop.inflow.next_batch(10)
    step = loop.recipe.module.step
    count = 2 * REGISTER_SLICE + 500
    chain = [DES(deps=[f"t{i - 1}" if i else "go"], targs=[f"t{i}"], ops=[(step, Config({}))]) for i in range(count)]
    emission = Emission(batch[0][0], "go", [("nothing", "go", des) for des in chain])
    statements: list[str] = []
    loop.store.conn.set_trace_callback(statements.append)
    loop._apply_batch(batch, [emission], None)
    loop._commit_and_publish([])
    loop.store.conn.set_trace_callback(None)
    lookups = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(lookups) <= 10, f"{len(lookups)} lookups for {count} DES, e.g. {lookups[-1][:80]!r}"
    assert statements.count("COMMIT") >= 3, "each slice was committed (and dispatched) on its way"
    assert loop.store.count("des") == count
    registered = [f.des_id for f in loop.published if isinstance(f, ev.DESRegistered)]
    assert registered == [des.id for des in chain]
    assert [loop.graph.nodes[des.id].state for des in chain[:3]] == ["waiting"] * 3, "go has no version"


def test_a_queued_des_whose_upstream_became_pending_runs_after_it_once(make_loop):
    """A DES queued on its input goes back to waiting when that input's producer must run again first (a
    later event changed what it reads): it runs once, after it, on what it makes."""
    loop = make_loop("one")
    first = _register(loop, ["raw"], ["mid"])
    second = _register(loop, ["mid"], ["out"])
    loop.documents.bump("raw", by="event")
    (task,) = _take(loop)
    loop.runbook.on_reports("w1", [("start", task.run_id, ("w1", 1.0)), ("done", task.run_id, (True, None, None, None, 0.1))])
    loop.dispatch.settle()
    assert list(loop.dispatch.ready) == [second], "queued on mid v1"
    loop.documents.bump("raw", by="event")  # raw v2: first is stale again before second ran
    tasks = _take(loop)
    assert [t.des_id for t in tasks] == [first], "second waits behind first"
    assert loop.graph.nodes[second].status is None
    loop.runbook.on_reports("w1", [("start", tasks[0].run_id, ("w1", 2.0)),
                                   ("done", tasks[0].run_id, (True, None, None, None, 0.1))])
    (last,) = _take(loop)
    assert last.des_id == second
    assert loop.runbook.open[last.run_id].dep_versions == {"mid": 2}, "it runs on what first made the second time"
    assert _take(loop) == []


def test_a_settles_group_moves_together_count_as_the_same_moves_one_by_one():
    """Groups moved per settle (names, old, new) end with the counts ``move`` gives name by name, including
    a count taken to zero (dropped) and a name whose group is not counted (ignored)."""
    import random

    from tinyo.groups import DOC_STATES, Groups

    rng = random.Random(7)
    names = [f"print.{i}" for i in range(30)] + [f"/d/fact_{i}.csv" for i in range(30)] + ["lonely"]
    one_by_one, together = Groups(), Groups()
    for groups in (one_by_one, together):
        for name in names[:-1]:
            groups.join(name, "never built")
    now = {name: "never built" for name in names}
    for _ in range(40):
        settle: list[tuple[list[str], str, str]] = []
        for name in rng.sample(names, 8):
            new = rng.choice(DOC_STATES)
            settle.append(([name], now[name], new))
            now[name] = new
        for moved, old, new in settle:
            for name in moved:
                one_by_one.move(name, old, new)
        together.move_many(settle)
        assert together.take_touched() == one_by_one.take_touched()
    assert together.summaries() == one_by_one.summaries()
    assert sum(n for s in together.summaries() for _, n in s.states) == len(names) - 1


def test_equal_plain_configs_made_anew_per_des_share_one_op_entry_and_unequal_kinds_stay_apart(make_loop):
    """A generator that makes a new ``Config({...})`` per DES: its ops are worked out and stored once per
    distinct value, not once per DES; values told apart only by their type (1, 1.0, True) keep their own."""
    from tinyo.store import load_ops

    loop = make_loop("one")
    step = loop.recipe.module.step
    made = [DES(deps=["raw"], targs=[f"t{i}"], ops=[(step, Config({"n": 1}))]) for i in range(50)]
    for des in made:
        assert loop.registration.register(des, "nothing", "e1", "e1")
    assert len(loop.registration._op_cache) == 1, "one entry for fifty equal Configs"
    kinds = [(value, DES(deps=["raw"], targs=[f"k{value!r}"], ops=[(step, Config({"n": value}))]))
             for value in (True, 1.0, "1", None)]
    for _, des in kinds:
        assert loop.registration.register(des, "nothing", "e1", "e1")
    loop.registration.write_batch()
    for value, des in kinds:
        ((_, cfg),) = load_ops(loop.store.des_row(des.id).ops_blob)
        assert type(cfg["n"]) is type(value) and cfg["n"] == value
    ((_, cfg),) = load_ops(loop.store.des_row(made[-1].id).ops_blob)
    assert type(cfg["n"]) is int
    listed = [DES(deps=["raw"], targs=[f"l{i}"], ops=[(step, Config({"n": [i]}))]) for i in range(3)]
    for des in listed:  # not plain (a list): an entry per Config object, as before
        loop.registration.register(des, "nothing", "e1", "e1")
    assert len(loop.registration._op_cache) == 1 + len(kinds) + len(listed)
