"""Provides the checks made on opening a state file (ours, not newer) and the in-place upgrade of files
written by an older tinyo, in one transaction: all of it, or nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .errors import StoreError
from .store_schema import APP_ID, PAGE_SIZE, SCHEMA, SCHEMA_VERSION, statement, statements

SCHEMA_3_TABLES = """
CREATE TABLE IF NOT EXISTS des(
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, deps TEXT NOT NULL, targs TEXT NOT NULL, ops_desc TEXT NOT NULL, ops BLOB,
    generator TEXT, event TEXT, created REAL NOT NULL, state TEXT NOT NULL, trace TEXT,
    failed_trace TEXT, forced INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS producers(doc TEXT PRIMARY KEY, des_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumers(doc TEXT NOT NULL, des_id TEXT NOT NULL, PRIMARY KEY(doc, des_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names(name TEXT PRIMARY KEY, grp TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files_seen(
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, hash TEXT);
"""
"""The schema 3 tables an older file may lack (schema 1 had no reverse index and no groups)."""


def init_schema(conn: sqlite3.Connection, path: str, read_only: bool, pragmas: Callable[[], None]) -> None:
    """Check the file is ours and current; create the schema in a new file, upgrade an older one in place.
    ``pragmas``: set up the connection for writing (called before any write)."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a SQLite database, or a corrupt one ({exc})") from exc
    if tables and app_id != APP_ID:
        raise StoreError(
            f"{path}: this SQLite file belongs to another program (tables: {', '.join(sorted(tables)[:5])}); "
            "point sql_conn or --db at a new file"
        )
    if app_id == APP_ID:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written by a newer tinyo (schema {version}, this one reads {SCHEMA_VERSION}); "
                "upgrade tinyo or use another file"
            )
        if version == SCHEMA_VERSION:
            if not read_only:
                pragmas()
            return
        if version in (1, 2, 3, 4, 5) and not read_only:
            pragmas()
            migrate(conn, version)
            return
        if version in (1, 2, 3, 4, 5):
            raise StoreError(f"{path}: written by an older tinyo (schema {version}, this one reads "
                             f"{SCHEMA_VERSION}); run the recipe once (tinyo run) to upgrade the file")
    if read_only:
        raise StoreError(f"{path}: no tinyo state in this file yet")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before the file's first page is written (WAL mode writes it)
    pragmas()
    conn.executescript(
        "BEGIN IMMEDIATE;" + SCHEMA
        + f"INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
        + f"PRAGMA application_id = {APP_ID};"
        + "COMMIT;"
    )


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a schema 1, 2, 3, 4 or 5 file to the current schema, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 3:
            _to_3(conn, version)
        if version < 4:
            _to_4(conn)
        if version < 5:
            _to_5(conn)
        _to_6(conn)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise


def _to_3(conn: sqlite3.Connection, version: int) -> None:
    """1 and 2 to 3: the reverse index (producers, consumers) and document groups (names) as tables, so the
    engine keeps only the DES that matter now in memory (1 to 2); each DES numbered in insertion order
    (``des.n``, kept by VACUUM) and runs indexed by it (``runs.des_n``), so a new run's index entry lands at
    the end of the index, not on a random page (2 to 3)."""
    from .groups import Groups

    des_columns = [r[1] for r in conn.execute("PRAGMA table_info(des)")]
    if "attempt" not in des_columns:  # files from before the column existed
        conn.execute("ALTER TABLE des ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1")
        des_columns.append("attempt")
    if "des_n" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}:
        conn.execute("ALTER TABLE runs ADD COLUMN des_n INTEGER")
    if "n" not in des_columns:
        conn.execute("ALTER TABLE des RENAME TO des_before_v3")
        conn.execute(statement(SCHEMA_3_TABLES, "CREATE TABLE IF NOT EXISTS des("))
        columns = ", ".join(des_columns)
        conn.execute(f"INSERT INTO des(n, {columns}) SELECT rowid, {columns} FROM des_before_v3 ORDER BY rowid")
        conn.execute("DROP TABLE des_before_v3")
    for sql in statements(SCHEMA_3_TABLES):
        conn.execute(sql)
    if version == 1:
        conn.execute("INSERT OR REPLACE INTO producers(doc, des_id) "
                     "SELECT j.value, d.id FROM des d, json_each(d.targs) j")
        conn.execute("INSERT OR IGNORE INTO consumers(doc, des_id) "
                     "SELECT j.value, d.id FROM des d, json_each(d.deps) j")
        groups = Groups()
        rows = conn.execute("SELECT name FROM documents UNION SELECT doc FROM producers "
                            "UNION SELECT doc FROM consumers ORDER BY 1").fetchall()
        conn.executemany("INSERT OR IGNORE INTO names(name, grp) VALUES (?, ?)",
                         [(name, groups.join(name, "source")) for (name,) in rows])
    conn.execute("UPDATE runs SET des_n = (SELECT n FROM des WHERE des.id = runs.des_id) WHERE des_n IS NULL")
    conn.execute("DROP INDEX IF EXISTS runs_des")


def _to_4(conn: sqlite3.Connection) -> None:
    """3 to 4: fewer rows per file. A document's row takes in its group (was ``names``), its producer (was
    ``producers``) and its file's last-seen state (was ``files_seen``); events not yet processed are those
    past the watermark (the last ``processed`` row), so processing one no longer rewrites its row."""
    from .groups import Groups

    conn.execute("ALTER TABLE documents RENAME TO documents_v3")
    conn.execute(statement(SCHEMA, "CREATE TABLE IF NOT EXISTS documents("))
    conn.execute(
        "INSERT INTO documents(name, version, hash, mtime_ns, size, updated, by, grp, producer, "
        "seen_mtime_ns, seen_size, seen_hash) "
        "SELECT k.name, d.version, d.hash, d.mtime_ns, d.size, d.updated, d.by, n.grp, p.des_id, "
        "f.mtime_ns, f.size, f.hash FROM (SELECT name FROM documents_v3 UNION SELECT name FROM names "
        "UNION SELECT doc FROM producers UNION SELECT doc FROM consumers UNION SELECT path FROM files_seen) k "
        "LEFT JOIN documents_v3 d ON d.name = k.name LEFT JOIN names n ON n.name = k.name "
        "LEFT JOIN producers p ON p.doc = k.name LEFT JOIN files_seen f ON f.path = k.name")
    # a document the groups never counted (none should be): it gets its group now, as schema 1 files did
    unnamed = conn.execute("SELECT name FROM documents WHERE grp IS NULL AND (version IS NOT NULL OR "
                           "producer IS NOT NULL OR name IN (SELECT doc FROM consumers)) ORDER BY name").fetchall()
    if unnamed:
        groups = Groups()
        conn.executemany("UPDATE documents SET grp = ? WHERE name = ?",
                         [(groups.join(name, "source"), name) for (name,) in unnamed])
    for table in ("documents_v3", "names", "producers", "files_seen"):
        conn.execute(f"DROP TABLE {table}")
    done = conn.execute("SELECT coalesce((SELECT min(id) FROM events WHERE status = 'new') - 1, "
                        "(SELECT max(id) FROM events), 0)").fetchone()[0]
    conn.execute("ALTER TABLE events RENAME TO events_v3")
    conn.execute("DROP INDEX IF EXISTS events_new")
    conn.execute(statement(SCHEMA, "CREATE TABLE IF NOT EXISTS events("))
    conn.execute("INSERT INTO events(id, ts, source, name, status, detail) SELECT id, ts, source, name, "
                 "iif(status = 'new', NULL, status), detail FROM events_v3 ORDER BY id")
    conn.execute("DROP TABLE events_v3")
    for sql in statements(SCHEMA):
        conn.execute(sql)
    if done:  # the events up to it carry their own status and detail, as schema 3 wrote them
        conn.execute("INSERT INTO processed(last_id, first_id, counts) VALUES (?, ?, '')", (done, done))


def _to_5(conn: sqlite3.Connection) -> None:
    """4 to 5: the open runs are found from the last run's ``open_from`` (``store_schema.OPEN_RUNS``), not from an
    index of them, which every commit that opened or ended a run rewrote."""
    if "open_from" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}:
        conn.execute("ALTER TABLE runs ADD COLUMN open_from INTEGER")
    conn.execute("UPDATE runs SET open_from = coalesce((SELECT min(id) FROM runs WHERE status IN ('queued', 'running')), "
                 "id) WHERE id = (SELECT max(id) FROM runs)")
    conn.execute("DROP INDEX IF EXISTS runs_open")


def _to_6(conn: sqlite3.Connection) -> None:
    """5 to 6: a DES's runs are found through a chain of run ids (``store_schema.RUN_CHAIN``: its last run to end,
    each run's DES's run ended before it), written with the rows a run's end writes anyway, not through the index
    ``runs_des_n``, whose page every commit that queued a run wrote. The chain of the runs ended so far is made
    here, in id order per DES (one sort of the runs, not a look-up per run)."""
    if "last_run" not in {r[1] for r in conn.execute("PRAGMA table_info(des)")}:
        conn.execute("ALTER TABLE des ADD COLUMN last_run INTEGER")
    if "prev_run" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}:
        conn.execute("ALTER TABLE runs ADD COLUMN prev_run INTEGER")
    conn.execute("CREATE TEMP TABLE run_chain(id INTEGER PRIMARY KEY, des_id TEXT NOT NULL, prev INTEGER)")
    conn.execute("INSERT INTO run_chain(id, des_id, prev) SELECT id, des_id, lag(id) OVER (PARTITION BY des_id "
                 "ORDER BY id) FROM runs WHERE status NOT IN ('queued', 'running')")
    conn.execute("UPDATE runs SET prev_run = (SELECT prev FROM run_chain c WHERE c.id = runs.id) "
                 "WHERE status NOT IN ('queued', 'running')")
    conn.execute("CREATE TEMP TABLE des_last(des_id TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID")
    conn.execute("INSERT INTO des_last(des_id, id) SELECT des_id, max(id) FROM run_chain GROUP BY des_id")
    conn.execute("UPDATE des SET last_run = (SELECT l.id FROM des_last l WHERE l.des_id = des.id)")
    conn.execute("DROP TABLE temp.run_chain")
    conn.execute("DROP TABLE temp.des_last")
    conn.execute("DROP INDEX IF EXISTS runs_des_n")
