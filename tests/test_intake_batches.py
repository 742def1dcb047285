"""The intake half of the loop per batch, at its seams, on real state files and real files without a loop
thread or worker processes: a batch's file events (``Documents.from_events``) and emissions
(``Registration.register_batch``) leave the rows, groups, graph and facts that the same events and
emissions leave one by one (``from_event``, ``apply_emission``), for a batch mixing the short paths' shapes
(new files, new DES reading them) with everything else: a known DES, a drifted target, a gone file, a
target conflict, a DES whose dep has no version, a generator error, two events for one file, a timer-like
name. And group joins counted per batch give the counts joined one by one."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tinyo.core.loop import Loop
from tinyo.filedigest import digest_file
from tinyo.groups import DOC_STATES, Groups
from tinyo.intake import FileState
from tinyo.model import DES, Config

from test_engine_parts import wire_loop

RECIPE = '''
import os
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def step(context):
    return None


def des(deps, targs):
    return DES(deps=deps, targs=targs, ops=[(step, Config({}))])


@meta_task(root=True)
def mixed(event):
    base = os.path.basename(event)
    if base.startswith("new") or base == "known.txt" or base == "gone.txt":
        return (None, [des([event], ["made " + event])])  # the common shape (known.txt's is known by now)
    if base == "clash.txt":  # a target another DES produces: refused
        return (None, [des([event], ["made " + event.replace("clash", "known")])])
    if base == "chain.txt":  # the second reads what the first makes: no version yet
        return (None, [des([event], ["chain mid"]), des(["chain mid"], ["chain end"])])
    if base == "pair.txt":  # a dep nothing names yet
        return (None, [des([event, "later"], ["pair out"])])
    if base == "later.txt":  # a target a DES of the batch reads already (pair's "later"): no longer new
        return (None, [des([event], ["later"])])
    if base == "wants.txt":  # a file dep whose file has not come yet
        return (None, [des([event, os.path.join(os.path.dirname(event), "wanted.txt")], ["wants out"])])
    if base == "broken.txt":
        raise ValueError("broken on purpose")
    if event == "tick":
        return (None, [des(["tick"], ["tick out"])])
    return (None, [])


config = TinyOConfig(sql_conn=DB_PATH, dirs=[], execution=Execution.INLINE)
'''


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[Callable[[str], Loop]]:
    loops: list[Loop] = []

    def make(name: str) -> Loop:
        folder = tmp_path / name
        folder.mkdir()
        loop = wire_loop(folder, RECIPE)
        loop.inflow.holding = False
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.store.close()


def one_by_one(loop: Loop) -> None:
    """The loop's batch seams replaced by the general per-item calls (what they were before the short paths)."""
    documents, registration = loop.documents, loop.registration

    def from_events(batch: list[Any]) -> None:
        documents.prefetch_files([name for _, _, name, *_ in batch if name[:1] == "/"])
        told = documents.event_versions  # each event's version kept for its EventReceived, as the batch keeps it
        told.clear()
        for event_id, _, name, state, _ in batch:
            given: list[tuple[str, int]] = []
            documents.from_event(name, state, into=given)
            if given:
                told[event_id] = given[0][1]

    documents.from_events = from_events  # type: ignore[method-assign]
    registration.register_batch = lambda emissions, flush: [  # type: ignore[method-assign]
        registration.apply_emission(emission, flush) for emission in emissions]


_writes = [0]


def write(path: Path, text: str) -> tuple[str, str, FileState]:
    """Write ``path`` and return its event as the watcher hands it over (its state read there). Each write's
    mtime is the next of a fixed sequence, so that two runs of the scenario record the same states."""
    path.write_text(text)
    _writes[0] += 1
    os.utime(path, ns=(_writes[0] * 10**9, _writes[0] * 10**9))
    st = path.stat()
    return ("file", str(path), FileState(st.st_mtime_ns, st.st_size, digest_file(str(path), st.st_size)))


def take_in(loop: Loop, items: list[tuple[str, str, Any]]) -> None:
    for item in items:
        loop.inflow.queue.put(item)
    loop.inflow.store_events(loop._take_many)


def process(loop: Loop) -> None:
    """One batch of the backlog through the generators and registration, settled and committed."""
    loop._process_backlog()
    loop._finish_cycle()


def snapshot(loop: Loop) -> dict[str, Any]:
    conn = loop.store.conn
    facts = [(type(f).__name__, *[getattr(f, x.name) for x in dataclasses.fields(f)
                                  if x.name != "traceback"])  # it names each loop's own recipe file
             for f in loop.published]  # type: ignore[attr-defined]
    graph = loop.graph
    return {
        "documents": conn.execute("SELECT * FROM documents ORDER BY name").fetchall(),
        "des": conn.execute("SELECT id, deps, targs, ops_desc, generator, event, state, trace FROM des ORDER BY id"
                            ).fetchall(),
        "consumers": conn.execute("SELECT doc, des_id FROM consumers ORDER BY doc, des_id").fetchall(),
        "events": conn.execute("SELECT * FROM events ORDER BY id").fetchall(),
        "processed": conn.execute("SELECT * FROM processed ORDER BY last_id").fetchall(),
        "groups": loop.documents.groups.summaries(),
        "documents known": loop.documents.total,
        "DES known": loop.registration.total,
        "nodes": {i: (n.state, n.reason, n.deps, n.targs, n.event) for i, n in graph.nodes.items()},
        "versions": {d: v for d, v in graph.versions.items() if v},
        "producers": {d: p for d, p in graph.producer.items() if p},
        "readers": {d: sorted(c) for d, c in graph.consumers.items() if c},
        "gone": sorted(graph.gone),
        "drifted": dict(graph.drifted),
        "ready": list(loop.dispatch.ready),
        "facts": facts,
    }


def scenario(loop: Loop, folder: Path) -> None:
    """Two batches: the first makes a known DES and a built target; the second mixes every shape."""
    folder.mkdir()
    _writes[0] = 0
    built = folder / "built.txt"
    take_in(loop, [write(folder / "known.txt", "k1"), write(folder / "new0.txt", "n0")])
    process(loop)
    # a DES whose target file exists, run and recorded as built
    producer = DES(deps=["raw"], targs=[str(built)], ops=[(loop.recipe.module.step, Config({}))])
    assert loop.registration.register(producer, "mixed", "raw", "raw")
    write(built, "as built")
    loop.documents.bump("raw", by="event")
    loop.dispatch.settle()
    tasks = loop.dispatch.take(5)
    assert str(built) in {t for task in tasks for t in task.targs}
    loop.runbook.on_reports("w1", [message for task in tasks for message in (
        ("start", task.run_id, ("w1", 1.0)), ("done", task.run_id, (True, None, None, None, 0.1)))])
    loop._finish_cycle()
    # the mixed batch: new files twice over (one of them with two events), the known DES again, a drifted
    # target, a file gone by the time it is processed, a conflict, a chain, a dep without a version, a
    # generator error and a name that is not a file
    twice = folder / "new_twice.txt"
    take_in(loop, [write(folder / f"new{i}.txt", f"n{i}") for i in range(1, 4)]
            + [write(twice, "first"), write(folder / "known.txt", "k2"), write(folder / "gone.txt", "g"),
                      write(folder / "lost.txt", "nobody reads it")])
    take_in(loop, [write(twice, "second"), write(built, "changed by hand"), write(folder / "clash.txt", "c"),
                   write(folder / "chain.txt", "ch"), write(folder / "pair.txt", "p"), write(folder / "later.txt", "l"),
                   write(folder / "wants.txt", "w"), write(folder / "broken.txt", "b"), ("manual", "tick", None)]
            + [write(folder / f"new{i}.txt", f"n{i}") for i in range(4, 7)])
    (folder / "gone.txt").unlink()
    (folder / "lost.txt").unlink()
    process(loop)
    assert sorted(loop.graph.gone) == [str(folder / "gone.txt"), str(folder / "lost.txt")]
    assert not loop.inflow.has_backlog()
    # a file read before it came, the gone file back, and new files beside them
    take_in(loop, [write(folder / "wanted.txt", "at last"), write(folder / "gone.txt", "back"), write(folder / "lost.txt", "back"),
                   write(folder / "new7.txt", "n7")])
    process(loop)


def test_a_mixed_batch_leaves_what_the_same_events_one_by_one_leave(make_loop, tmp_path, monkeypatch):
    batched, single = make_loop("batched"), make_loop("single")
    one_by_one(single)
    general: list[str] = []
    register = batched.registration.register
    monkeypatch.setattr(batched.registration, "register",
                        lambda des, *a, **k: general.append(sorted(des.deps)[0]) or register(des, *a, **k))
    refresh = batched.documents.refresh_file
    monkeypatch.setattr(batched.documents, "refresh_file",
                        lambda path, *a, **k: general.append(path) or refresh(path, *a, **k))
    folder = tmp_path / "in"  # the same names in both runs (a DES's id is made of them)
    scenario(batched, folder)
    shutil.rmtree(folder)
    scenario(single, folder)
    a, b = snapshot(batched), snapshot(single)
    assert a["drifted"] == {f"{folder}/built.txt": "changed since it was built"}
    assert a["gone"] == [] and a["versions"][f"{folder}/gone.txt"] == 1, "the gone file came back"
    assert a["nodes"][[i for i, n in a["nodes"].items() if n[3] == ("wants out",)][0]][0] == "queued"
    assert ("GeneratorError" in {f[0] for f in a["facts"]}) and ("DESRejectedEvent" in {f[0] for f in a["facts"]})
    for key in a:
        assert a[key] == b[key], key
    # the short paths were taken: the new files and the DES reading them, never the general calls
    short = [p for p in general if "/new" in p and "twice" not in p]
    assert short == [], f"new files or their DES took the general path: {short}"
    assert any("known.txt" in p for p in general), "a known DES and a changed file take the general path"


def test_group_joins_counted_per_batch_give_the_counts_joined_one_by_one():
    """``join_many`` against ``join`` name by name: the same groups, counts per state, first names and touched
    groups, also past the bound on groups (coarse patterns) and with a name joined in an existing group."""
    rng = random.Random(7)
    for max_groups in (3, 2000):
        batch, single = Groups(max_groups), Groups(max_groups)
        for group in (batch, single):
            group.join("seed_1", "source")
            group.touched.clear()
        joins = [(rng.choice(["/d/a_%d.csv", "/d/b%d", "x_%d", "seed_%d", "/e/%d.txt", "run%d.log"]) % rng.randint(0, 99),
                  rng.choice(DOC_STATES)) for _ in range(300)]
        patterns = batch.join_many(joins)
        assert patterns == [single.join(name, state) for name, state in joins]
        assert batch.summaries() == single.summaries()
        assert batch.touched == single.touched


def test_a_name_s_group_folds_its_numbers_as_one_fold_over_the_whole_name_does():
    """``group_key`` folds the part of a name before its last "/" once for the names that share it: the
    pattern is the one a single fold over the whole name gives (no fold spans a "/"), for any name."""
    from tinyo.groups import _NUMBERS, group_key

    rng = random.Random(11)
    for _ in range(20_000):
        name = "".join(rng.choice("ab09/._:- 1٣") for _ in range(rng.randint(1, 16)))
        if name.startswith("/"):  # a path: its folder as it is, its last part folded as a name of its own
            folder, _, base = name.rpartition("/")
            assert group_key(name) == f"{folder}/{group_key(base)}", name
        else:
            assert group_key(name) == _NUMBERS.sub("*", name), name
    assert group_key("done /srv/run2/a_1.csv") == "done /srv/run*/a_*.csv"
    assert group_key("/srv/run2/a_1.csv") == "/srv/run2/a_*.csv"
