"""A state file written with schema 3 is upgraded in place, in one transaction, and the engine goes on
from it: every document, group, DES, run and unprocessed event is kept, ``tinyo status`` and ``tinyo why``
answer as the schema 3 engine did, and a file touched afterwards rebuilds exactly what is stale.

The file is real: ``tests/data/make_state_v3.py`` made it with the engine of schema 3 (three files built,
one of them failing, a fourth one's run open when the engine was killed with SIGKILL, a fifth file's
event stored but not processed) and kept it as SQL (``state_v3.sql``, its folder as ``@ROOT@``), with its
files and what ``tinyo status --json`` and ``tinyo why`` answered then (``state_v3.json``)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tinyo.errors import StoreError
from tinyo.store import SCHEMA_VERSION, Store, dump_ops, load_ops

DATA = Path(__file__).resolve().parent / "data"
FIXTURE = json.loads((DATA / "state_v3.json").read_text())


def restore_v3(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """The schema 3 state file and its files under ``root``: (recipe, state file, old DES id -> id here).

    A DES id hashes the absolute paths in its deps, targets and op config, so under another folder the
    generator gives each DES another id: the file's ids (and the stored ops) are made those, as if the
    schema 3 engine had run here."""
    (root / "in").mkdir()
    recipe = root / "recipe.py"
    shutil.copy(DATA / "state_v3_recipe.py", recipe)
    for rel, f in FIXTURE["files"].items():
        path = root / rel
        path.parent.mkdir(exist_ok=True)
        path.write_text(f["text"])
        os.utime(path, ns=(f["mtime_ns"], f["mtime_ns"]))
    db = root / "state.db"
    conn = sqlite3.connect(db)
    conn.executescript((DATA / "state_v3.sql").read_text().replace("@ROOT@", str(root)))
    emitted = {}
    module = _recipe_module(recipe, root)
    for name in ("a.txt", "b.txt", "bad.txt", "slow.txt", "d.txt"):
        for des in module.on_file(str(root / "in" / name))[1]:
            emitted[des.targs] = des
    ids = {}
    for n, old, targs, blob in conn.execute("SELECT n, id, targs, ops FROM des").fetchall():
        des = emitted[frozenset(json.loads(targs))]
        ops = [(ref, cfg) for (ref, _), (_, cfg) in zip(load_ops(blob), des.ops)]
        conn.execute("UPDATE des SET id = ?, ops = ? WHERE n = ?", (des.id, dump_ops(ops), n))
        for table, column in (("producers", "des_id"), ("consumers", "des_id"), ("runs", "des_id"),
                              ("documents", "by")):
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (des.id, old))
        ids[old] = des.id
    conn.commit()
    conn.close()
    return recipe, db, ids


def _recipe_module(recipe: Path, root: Path) -> Any:
    os.environ["TINYO_V3_ROOT"] = str(root)
    try:
        spec = importlib.util.spec_from_file_location(f"tinyo_recipe_v3_{uuid.uuid4().hex}", recipe)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        del os.environ["TINYO_V3_ROOT"]
    return module


def tinyo(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINYO_V3_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def v3_rows(db: Path) -> dict[str, Any]:
    """What the schema 3 file holds, read with plain SQL."""
    conn = sqlite3.connect(db)
    try:
        return {
            "documents": sorted(conn.execute("SELECT name, version, hash, mtime_ns, size FROM documents")),
            "names": sorted(conn.execute(
                "SELECT n.name, n.grp, d.version, p.des_id FROM names n LEFT JOIN documents d ON d.name = n.name "
                "LEFT JOIN producers p ON p.doc = n.name")),
            "producers": dict(conn.execute("SELECT doc, des_id FROM producers")),
            "consumers": sorted(conn.execute("SELECT doc, des_id FROM consumers")),
            "files_seen": {r[0]: tuple(r[1:]) for r in conn.execute("SELECT path, mtime_ns, size, hash FROM files_seen")},
            "des": sorted(conn.execute("SELECT id, deps, targs, state, trace, failed_trace, forced, attempt FROM des")),
            "runs": conn.execute("SELECT id, des_id, attempt, worker, start, end, status, error FROM runs "
                                 "ORDER BY id").fetchall(),
            "events": conn.execute("SELECT id, ts, source, name, status, detail FROM events ORDER BY id").fetchall(),
            "version": conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0],
        }
    finally:
        conn.close()


def test_a_schema_3_file_is_upgraded_in_place_and_keeps_everything(tmp_path: Path) -> None:
    recipe, db, ids = restore_v3(tmp_path)
    before = v3_rows(db)
    assert before["version"] == "3" and len(before["des"]) == 8 and before["events"][-1][4] == "new"
    store = Store(str(db))
    try:
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"names", "producers", "files_seen"}.isdisjoint(tables) and "documents" in tables
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION)
        assert sorted(store.load_documents()) == before["documents"]
        assert sorted(store.all_names()) == before["names"]
        every = [name for name, *_ in before["names"]]
        assert store.producers_many(every) == before["producers"]
        assert sorted((doc, d) for doc, des in store.consumers_many(every).items() for d in des) == before["consumers"]
        assert store.files_seen_many(list(before["files_seen"])) == before["files_seen"]
        assert store.files_seen_under(str(tmp_path / "in")) == before["files_seen"]
        assert sorted(store.conn.execute(
            "SELECT id, deps, targs, state, trace, failed_trace, forced, attempt FROM des")) == before["des"]
        assert [(r.id, r.des_id, r.attempt, r.worker, r.start, r.end, r.status, r.error)
                for r in store.recent_runs(10)] == before["runs"]
        assert store.recent_events(10) == before["events"]
        assert store.pending_events() == 1
        assert [r[0] for r in store.new_events(0, 10)] == [5]
        assert store.count("names") == len(before["names"]) and store.count("documents") == len(before["documents"])
    finally:
        store.close()
    # the same answers as the schema 3 engine gave on this file
    for command, expected in FIXTURE["answers"].items():
        args = command.replace("@ROOT@", str(tmp_path)).split(" ")
        result = tinyo(tmp_path, args[0], str(recipe), *args[1:])
        assert result.returncode == 0, result.stderr
        expected = expected.replace("@ROOT@", str(tmp_path))
        for old, new in ids.items():
            expected = expected.replace(old, new)
        assert result.stdout == expected, command


def test_after_the_upgrade_the_engine_goes_on_where_schema_3_left_off(tmp_path: Path) -> None:
    """The run open at the kill is interrupted and run again, the stored event is processed, nothing
    already built runs again; then a changed input rebuilds exactly its two DES."""
    recipe, db, _ = restore_v3(tmp_path)
    (tmp_path / "gate").write_text("")  # the slow op may finish now
    first = tinyo(tmp_path, "run", str(recipe), "--idle-exit", "0.5")
    assert "1 run(s) were interrupted by the last stop" in first.stdout, first.stdout + first.stderr
    out = tmp_path / "out"
    assert (out / "slow.txt.up").read_text() == "SIERRA" and (out / "d.txt.up").read_text() == "DELTA"

    def runs() -> list[tuple[int, str, str]]:
        store = Store(str(db), read_only=True, lock=False)
        try:
            return [(r.id, store.des_lookup(r.des_id).ops_desc[0] + " " + sorted(store.des_lookup(r.des_id).targs)[0]
                     .replace(str(tmp_path), ""), r.status) for r in store.recent_runs(100)]
        finally:
            store.close()

    after_first = runs()
    assert after_first[:6] == [(1, "upper /out/b.txt.up", "ok"), (2, "upper /out/bad.txt.up", "failed"),
                               (3, "upper /out/a.txt.up", "ok"), (4, "count len.b.txt", "ok"),
                               (5, "count len.a.txt", "ok"), (6, "upper /out/slow.txt.up", "interrupted")]
    assert sorted(r[1:] for r in after_first[6:]) == [
        ("count len.d.txt", "ok"), ("count len.slow.txt", "ok"), ("upper /out/d.txt.up", "ok"),
        ("upper /out/slow.txt.up", "ok")], after_first

    (tmp_path / "in" / "a.txt").write_text("alpha, again")
    second = tinyo(tmp_path, "run", str(recipe), "--idle-exit", "0.5")
    assert second.returncode == 0, second.stderr
    new = sorted(r[1:] for r in runs() if r[0] > len(after_first))
    assert new == [("count len.a.txt", "ok"), ("upper /out/a.txt.up", "ok")]
    assert (out / "a.txt.up").read_text() == "ALPHA, AGAIN"


def test_an_upgrade_that_fails_leaves_the_schema_3_file_as_it_was(tmp_path: Path) -> None:
    """One transaction: a step that fails half-way (here a table in the way of a rename) undoes the steps
    before it, and the error names the file."""
    _, db, _ = restore_v3(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE events_v3(x)")
    conn.commit()
    conn.close()
    before = v3_rows(db)
    with pytest.raises(StoreError, match=str(db)):
        Store(str(db))
    assert v3_rows(db) == before


def test_schema_6_is_what_this_tinyo_writes() -> None:
    assert SCHEMA_VERSION == 6


def test_a_schema_4_file_is_upgraded_and_keeps_its_open_runs(tmp_path: Path) -> None:
    """Schema 4 found the open runs through an index of them; schema 5 through the last run's ``open_from``. A
    schema 4 file (this tinyo's, with the index back, the column gone and its version 4) with an old run still
    open behind finished ones, and a newer one open, is upgraded: the index is gone, both open runs found."""
    db = tmp_path / "state.db"
    store = Store(str(db))
    store.add_des([(f"d{i}", frozenset(["a"]), frozenset([f"b{i}"]), ("op",), None, "gen", "ev", 1.0)
                   for i in range(1, 6)])
    store.add_runs([(i, f"d{i}", 1, '{"a": 1}') for i in range(1, 6)], 1)
    store.runs_ok([(2.0, "", None, "w1", 1.0, i) for i in (2, 3, 5)])
    store.commit()
    store.close()
    conn = sqlite3.connect(db)
    conn.executescript("ALTER TABLE runs DROP COLUMN open_from;"
                       "CREATE INDEX runs_open ON runs(id) WHERE status IN ('queued', 'running');"
                       "UPDATE meta SET value = '4' WHERE key = 'schema_version';")
    conn.close()
    with pytest.raises(StoreError, match="run the recipe once"):
        Store(str(db), read_only=True, lock=False)
    store = Store(str(db))
    try:
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION)
        assert store.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs_open'").fetchone()[0] == 0
        assert store.open_runs_full() == [(1, "d1", 1, {"a": 1}), (4, "d4", 1, {"a": 1})]
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_a_name_that_is_not_utf8_keeps_its_bytes_through_the_upgrade(tmp_path: Path) -> None:
    """A file name with an undecodable byte (as schema 3 stored it: its bytes, as TEXT) is the same name after."""
    _, db, _ = restore_v3(tmp_path)
    raw = os.fsencode(str(tmp_path / "in")) + b"/caf\xe9.txt"
    name = os.fsdecode(raw)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO documents VALUES (CAST(? AS TEXT), 1, 'h', 5, 6, 1.0, 'event')", (raw,))
    conn.execute("INSERT INTO names VALUES (CAST(? AS TEXT), CAST(? AS TEXT))", (raw, raw))
    conn.execute("INSERT INTO files_seen VALUES (CAST(? AS TEXT), 5, 6, 'h')", (raw,))
    conn.commit()
    conn.close()
    store = Store(str(db))
    try:
        assert store.names_known([name]) == {name}
        assert store.doc_files_many([name]) == {name: (1, "h", 5, 6)}
        assert store.files_seen_many([name]) == {name: (5, 6, "h")}
        assert (name, name, 1, None) in set(store.all_names())
        stored = store.conn.execute("SELECT CAST(name AS BLOB) FROM documents WHERE name = CAST(? AS TEXT)",
                                    (raw,)).fetchone()
        assert stored == (raw,)
    finally:
        store.close()


def test_a_schema_5_file_is_upgraded_and_each_des_keeps_its_runs_in_order(tmp_path: Path) -> None:
    """Schema 5 found a DES's runs through the index ``runs_des_n``; schema 6 through a chain of run ids (the DES's
    last run to end, each run's one before). A schema 5 file (this tinyo's, with the index back, the columns gone
    and its version 5) with runs of two DES interleaved, one failed and one still open, is upgraded in place: the
    index is gone, every DES's runs and last error read as before, and the runs after it join the chain."""
    db = tmp_path / "state.db"
    store = Store(str(db))
    store.add_des([(f"d{i}", frozenset(["a"]), frozenset([f"b{i}"]), ("op",), None, "gen", "ev", 1.0)
                   for i in (1, 2, 3)])
    store.commit()
    store.close()
    conn = sqlite3.connect(db)
    conn.executescript(
        "ALTER TABLE runs DROP COLUMN prev_run; ALTER TABLE des DROP COLUMN last_run;"
        "CREATE INDEX runs_des_n ON runs(des_n, id);"
        "UPDATE meta SET value = '5' WHERE key = 'schema_version';")
    runs = [(1, "d1", "ok", None), (2, "d2", "ok", None), (3, "d1", "failed", "boom"), (4, "d2", "interrupted", "stop"),
            (5, "d1", "ok", None), (6, "d2", "queued", None)]  # d3 never ran
    conn.executemany("INSERT INTO runs(id, des_id, attempt, status, error, des_n, open_from) "
                     "VALUES (?, ?, 1, ?, ?, (SELECT n FROM des WHERE id = ?2), 6)", runs)
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="run the recipe once"):
        Store(str(db), read_only=True, lock=False)
    store = Store(str(db))
    try:
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "6"
        assert store.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs_des_n'").fetchone()[0] == 0
        assert [(r.id, r.status) for r in store.runs_for("d1")] == [(1, "ok"), (3, "failed"), (5, "ok")]
        assert [(r.id, r.status) for r in store.runs_for("d2")] == [(2, "ok"), (4, "interrupted"), (6, "queued")]
        assert [r.id for r in store.runs_for("d1", limit=2)] == [3, 5]
        assert store.runs_for("d3") == []
        assert (store.last_error("d1"), store.last_error("d2"), store.last_error("d3")) == ("", "stop", "")
        store.runs_ok([(2.0, "", None, "w1", 1.0, 6)])  # a run the last engine queued ends in this one
        store.add_runs([(7, "d1", 1, '{"a": 1}')], 7)
        store.commit()
        store.finish_runs([("failed", 3.0, "again", None, None, None, "w1", 2.5, 7)])
        store.commit()
        assert [r.id for r in store.runs_for("d1")] == [1, 3, 5, 7]
        assert [r.id for r in store.runs_for("d2")] == [2, 4, 6]
        assert store.last_error("d1") == "again"
        assert store.integrity_check() == "ok"
    finally:
        store.close()
