"""The state file: created 0600, WAL, versioned; foreign, corrupt, newer, read-only and locked files
give clear errors and are left untouched."""

import os
import sqlite3
import stat

import pytest

from tinyo.errors import StoreError
from tinyo.store import SCHEMA_VERSION, Store


def test_new_store_is_private_wal_and_versioned(tmp_path):
    path = tmp_path / "state.db"
    store = Store(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(path) + ".lock").st_mode) == 0o600
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    store.close()
    Store(str(path)).close()  # reopens fine


def test_foreign_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices(id INTEGER, total REAL)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="belongs to another program.*invoices"):
        Store(str(path))
    assert path.read_bytes() == before


def test_corrupt_or_truncated_file_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a SQLite database|not a usable tinyo state file"):
        Store(str(path))
    good = tmp_path / "good.db"
    Store(str(good)).close()
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3] + b"\0garbage")
    with pytest.raises(StoreError):
        Store(str(good))


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Store(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer tinyo"):
        Store(str(path))


def test_read_only_file_is_refused(tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits; a read-only folder mount is what a user would hit
        pytest.skip("running as root: permission bits do not apply")
    path = tmp_path / "ro.db"
    Store(str(path)).close()
    os.chmod(path, 0o400)
    with pytest.raises(StoreError, match="read-only"):
        Store(str(path))


def test_second_engine_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "s.db"
    first = Store(str(path))
    with pytest.raises(StoreError, match="another tinyo engine is running"):
        Store(str(path))
    first.close()
    Store(str(path)).close()


def test_sql_is_parameterised_for_hostile_names(tmp_path):
    store = Store(str(tmp_path / "h.db"))
    name = "x'); DROP TABLE events; --\n[bold]\x1b[31m"
    store.add_events([(1.0, "manual", name, "new")])
    store.commit()
    assert store.recent_events(1)[0][3] == name
    store.close()


def test_the_wal_stays_bounded_under_a_steady_stream_of_commits(tmp_path):
    from tinyo.store import CHECKPOINT_BYTES, RESET_BYTES

    store = Store(str(tmp_path / "s.db"))
    wal = tmp_path / "s.db-wal"
    sizes = []
    try:
        for i in range(300):  # about 25 MB written, one commit after another, with no pause
            store.add_names([(f"doc_{i}_{j}_" + "x" * 200, "g") for j in range(100)])
            store.commit()
            sizes.append(wal.stat().st_size)
    finally:
        store.close()
    one_commit = max(b - a for a, b in zip(sizes, sizes[1:]))
    assert max(sizes) <= RESET_BYTES + one_commit, f"the WAL grew to {max(sizes):,} bytes"
    # once it has started over, the file is cut back: its size says how much of it is in use
    assert min(sizes[len(sizes) // 2:]) <= CHECKPOINT_BYTES


def test_the_wal_in_use_is_read_from_the_wal_index_as_sqlite_counts_it(tmp_path):
    import sqlite3

    from tinyo.store_wal import WalMeter

    store = Store(str(tmp_path / "s.db"))
    wal = tmp_path / "s.db-wal"
    meter = WalMeter(store.path)
    try:
        for i in range(20):  # the WAL grows: what is in use is the whole file
            store.add_names([(f"doc_{i}_{j}_" + "x" * 200, "g") for j in range(50)])
            store.commit()
            assert meter.in_use() == wal.stat().st_size > 0
        # a complete checkpoint, then a write: the WAL starts over, its file keeps its size
        store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        store.add_names([("one more", "g")])
        store.commit()
        frames = sqlite3.connect(store.path).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        page = store.conn.execute("PRAGMA page_size").fetchone()[0]
        assert meter.in_use() == 32 + frames * (page + 24) < wal.stat().st_size
    finally:
        meter.close()
        store.close()
    # no WAL index beside the file (the engine closed it): the WAL file's size stands in
    (tmp_path / "t.db-wal").write_bytes(b"w" * 100)
    assert WalMeter(str(tmp_path / "t.db")).in_use() == 100
    # a WAL index in a format it does not know: the same, and it is not mapped again at each commit
    (tmp_path / "t.db-shm").write_bytes(b"\x01" * 32768)
    other = WalMeter(str(tmp_path / "t.db"))
    assert other.in_use() == 100 and other.in_use() == 100 and other._header is None and other._unreadable


def test_the_checkpoint_thread_is_woken_once_per_step_of_growth_past_the_kick_size(tmp_path):
    import threading

    from tinyo.store import KICK_BYTES, RESET_BYTES
    from tinyo.store_wal import KICK_STEP

    class CountedEvent(threading.Event):
        sets = 0

        def set(self) -> None:
            CountedEvent.sets += 1
            super().set()

    store = Store(str(tmp_path / "s.db"))
    store._checkpointer.kick = CountedEvent()  # the thread takes it at its next round
    wal = tmp_path / "s.db-wal"
    growing = 0
    try:
        for i in range(200):  # ~17 MB, one commit after another: past KICK_BYTES to the reset, twice
            before = wal.stat().st_size if wal.exists() else 0
            store.add_names([(f"doc_{i}_{j}_" + "x" * 200, "g") for j in range(100)])
            store.commit()
            growing += wal.stat().st_size > max(before, KICK_BYTES)
    finally:
        store.close()
    assert growing > 30  # the commits that each grew the WAL past the kick size: each woke the thread before
    # once per KICK_STEP of growth from KICK_BYTES to the reset, two or three times over (and the close's own)
    steps = (RESET_BYTES - KICK_BYTES) // KICK_STEP + 1
    assert 2 <= CountedEvent.sets <= 3 * steps + 1 < growing, CountedEvent.sets


def test_the_fast_json_forms_are_exactly_what_json_dumps_writes():
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tinyo.store_rows import jlist as _jlist, jmap as _jmap, jset as _jset

    names = st.text(max_size=30)  # any text: quotes, backslashes, control characters, emoji

    @settings(max_examples=300, deadline=None)
    @given(st.frozensets(names, max_size=6), st.dictionaries(names, st.integers(), max_size=6))
    def check(values, trace):
        assert _jset(values) == json.dumps(sorted(values))
        assert _jlist(sorted(values)) == json.dumps(sorted(values))
        assert _jmap(trace) == json.dumps(trace, sort_keys=True)
        assert json.loads(_jmap(trace)) == trace

    check()
    assert _jmap(None) is None
    assert _jmap({"flag": True}) == json.dumps({"flag": True})


SCHEMA_2 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events(id INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT);
CREATE INDEX events_new ON events(id) WHERE status = 'new';
CREATE TABLE documents(name TEXT PRIMARY KEY, version INTEGER NOT NULL, hash TEXT, mtime_ns INTEGER, size INTEGER,
    updated REAL NOT NULL, by TEXT);
CREATE TABLE files_seen(path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, hash TEXT);
CREATE TABLE des(id TEXT PRIMARY KEY, deps TEXT NOT NULL, targs TEXT NOT NULL, ops_desc TEXT NOT NULL, ops BLOB,
    generator TEXT, event TEXT, created REAL NOT NULL, state TEXT NOT NULL, trace TEXT,
    failed_trace TEXT, forced INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 1);
CREATE TABLE runs(id INTEGER PRIMARY KEY, des_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT,
    start REAL, end REAL, status TEXT NOT NULL, error TEXT, traceback TEXT, output TEXT,
    dep_versions TEXT, result TEXT);
CREATE INDEX runs_des ON runs(des_id, id);
CREATE INDEX runs_open ON runs(id) WHERE status IN ('queued', 'running');
CREATE TABLE timers(name TEXT PRIMARY KEY, last_tick REAL NOT NULL);
CREATE TABLE producers(doc TEXT PRIMARY KEY, des_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE consumers(doc TEXT NOT NULL, des_id TEXT NOT NULL, PRIMARY KEY(doc, des_id)) WITHOUT ROWID;
CREATE TABLE names(name TEXT PRIMARY KEY, grp TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX names_grp ON names(grp, name);
CREATE TABLE requests(id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, arg TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0);
INSERT INTO meta VALUES ('schema_version', '2');
PRAGMA application_id = 1414090329;
"""
"""A state file as tinyo wrote it before schema 3 (DES keyed by their hash id only, runs indexed by it)."""


def _schema_2_file(path):
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_2)
    for des_id, targ in (("bbbb000000000002", "b"), ("aaaa000000000001", "a")):
        conn.execute("INSERT INTO des(id, deps, targs, ops_desc, created, state) VALUES (?, '[\"x\"]', ?, '[\"op\"]', 1.0, 'ok')",
                     (des_id, f'["{targ}"]'))
    conn.executemany("INSERT INTO runs(id, des_id, attempt, status, error) VALUES (?, ?, 1, ?, ?)",
                     [(1, "bbbb000000000002", "failed", "boom"), (2, "aaaa000000000001", "ok", None),
                      (3, "bbbb000000000002", "ok", None)])
    conn.commit()
    conn.close()


def test_a_schema_2_file_is_upgraded_in_place_and_keeps_every_des_and_run(tmp_path):
    """DES keep their insertion order as their number, each run finds its DES by it, the old hash-keyed
    runs index is gone (and so is the index by DES number, schema 6: a DES's runs are a chain of ids), and runs
    written after the upgrade are found the same way."""
    path = tmp_path / "old.db"
    _schema_2_file(path)
    store = Store(str(path))
    try:
        conn = store.conn
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert conn.execute("SELECT n, id FROM des ORDER BY n").fetchall() == [(1, "bbbb000000000002"),
                                                                                (2, "aaaa000000000001")]
        assert conn.execute("SELECT id, des_n FROM runs ORDER BY id").fetchall() == [(1, 1), (2, 2), (3, 1)]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "runs_des" not in indexes and "runs_des_n" not in indexes
        assert [r.id for r in store.runs_for("bbbb000000000002")] == [1, 3]
        assert store.last_error("aaaa000000000001") == ""
        assert store.last_error("bbbb000000000002") == ""  # its last run (3) ended ok, after the one that failed
        assert store.des_lookup("aaaa000000000001").targs == frozenset({"a"})
        store.add_des([("cccc000000000003", frozenset({"a"}), frozenset({"c"}), ("op",), None, "gen", "ev", 2.0)])
        store.add_runs([(4, "cccc000000000003", 1, '{"a": 1}')])
        store.commit()
        assert conn.execute("SELECT n FROM des WHERE id = 'cccc000000000003'").fetchone() == (3,)
        assert [(r.id, r.status) for r in store.runs_for("cccc000000000003")] == [(4, "queued")]
        store.runs_ok([(3.0, "", None, "w1", 2.5, 4)])
        store.commit()
        assert [(r.id, r.status) for r in store.runs_for("cccc000000000003")] == [(4, "ok")]
        assert [r.id for r in store.runs_for("bbbb000000000002")] == [1, 3]
    finally:
        store.close()
    Store(str(path)).close()  # opens again as it is


def test_a_schema_2_file_opened_read_only_says_to_upgrade_it(tmp_path):
    path = tmp_path / "old.db"
    _schema_2_file(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"older tinyo \(schema 2.*run the recipe once"):
        Store(str(path), read_only=True)
    assert path.read_bytes() == before


def test_a_schema_1_file_is_upgraded_too(tmp_path):
    """The oldest files (no reverse index, no document groups, no attempt column) come up to date in the
    same single step: reverse index and names filled from the DES, DES numbered, runs indexed by them."""
    path = tmp_path / "v1.db"
    schema_1 = "\n".join(line for line in SCHEMA_2.splitlines()
                         if not line.startswith(("CREATE TABLE producers", "CREATE TABLE consumers",
                                                 "CREATE TABLE names", "CREATE INDEX names_grp")))
    schema_1 = schema_1.replace(", attempt INTEGER NOT NULL DEFAULT 1);", ");").replace("'schema_version', '2'",
                                                                                      "'schema_version', '1'")
    conn = sqlite3.connect(path)
    conn.executescript(schema_1)
    conn.execute("INSERT INTO des(id, deps, targs, ops_desc, created, state) VALUES "
                 "('aaaa000000000001', '[\"in.csv\"]', '[\"out\"]', '[\"op\"]', 1.0, 'ok')")
    conn.execute("INSERT INTO runs(id, des_id, attempt, status) VALUES (1, 'aaaa000000000001', 1, 'ok')")
    conn.commit()
    conn.close()
    store = Store(str(path))
    try:
        c = store.conn
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert store.producers_many(["out", "in.csv"]) == {"out": "aaaa000000000001"}
        assert c.execute("SELECT doc, des_id FROM consumers").fetchall() == [("in.csv", "aaaa000000000001")]
        assert sorted(r[0] for r in store.all_names()) == ["in.csv", "out"]
        assert c.execute("SELECT n, attempt FROM des").fetchall() == [(1, 1)]
        assert [r.id for r in store.runs_for("aaaa000000000001")] == [1]
    finally:
        store.close()


def test_a_new_state_file_has_the_store_s_page_size_and_an_older_one_keeps_its_own(tmp_path):
    """A new file is made with ``PAGE_SIZE`` pages (a chain link's commit copies each page it changes into the
    WAL whole); a file made with other pages is opened and written as it is, its pages unchanged."""
    from tinyo.store_schema import PAGE_SIZE

    store = Store(str(tmp_path / "new.db"))
    try:
        assert store.conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE != 4096
    finally:
        store.close()
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE t(x)")  # the file's first page: its size is fixed now
    conn.execute("DROP TABLE t")
    conn.commit()
    conn.close()
    store = Store(str(old))
    try:
        store.add_des([("d1", frozenset(["a"]), frozenset(["b"]), ("op",), None, "gen", "ev", 1.0)])
        store.commit()
        assert store.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert store.des_lookup("d1").targs == frozenset({"b"})
    finally:
        store.close()
