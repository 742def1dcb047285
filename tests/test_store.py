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


def test_the_fast_json_forms_are_exactly_what_json_dumps_writes():
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tinyo.store import _jlist, _jmap, _jset

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
