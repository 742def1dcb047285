"""Provides the state file's schema: its tables, the statements deferred to each commit, and the
in-place upgrade of files written by an older tinyo."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .errors import StoreError

SCHEMA_VERSION = 3
APP_ID = 0x54494E59  # "TINY": PRAGMA application_id marks the file as ours

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS events_new ON events(id) WHERE status = 'new';
CREATE TABLE IF NOT EXISTS documents(
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, hash TEXT, mtime_ns INTEGER, size INTEGER,
    updated REAL NOT NULL, by TEXT);
CREATE TABLE IF NOT EXISTS files_seen(
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, hash TEXT);
CREATE TABLE IF NOT EXISTS des(
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, deps TEXT NOT NULL, targs TEXT NOT NULL, ops_desc TEXT NOT NULL, ops BLOB,
    generator TEXT, event TEXT, created REAL NOT NULL, state TEXT NOT NULL, trace TEXT,
    failed_trace TEXT, forced INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY, des_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT,
    start REAL, end REAL, status TEXT NOT NULL, error TEXT, traceback TEXT, output TEXT,
    dep_versions TEXT, result TEXT, des_n INTEGER);
CREATE INDEX IF NOT EXISTS runs_des_n ON runs(des_n, id);
CREATE INDEX IF NOT EXISTS runs_open ON runs(id) WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS timers(name TEXT PRIMARY KEY, last_tick REAL NOT NULL);
CREATE TABLE IF NOT EXISTS producers(doc TEXT PRIMARY KEY, des_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumers(doc TEXT NOT NULL, des_id TEXT NOT NULL, PRIMARY KEY(doc, des_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names(name TEXT PRIMARY KEY, grp TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_grp ON names(grp, name);
CREATE TABLE IF NOT EXISTS requests(
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, arg TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0);
"""


DEFERRED = {
    "events": "INSERT INTO events(id, ts, source, name, status, detail) VALUES (?, ?, ?, CAST(? AS TEXT), ?, CAST(? AS TEXT))",
    "events_mark": "UPDATE events SET status = ?, detail = CAST(? AS TEXT) WHERE id = ?",
    "files": "INSERT INTO files_seen(path, mtime_ns, size, hash) VALUES (CAST(? AS TEXT), ?, ?, ?) "
             "ON CONFLICT(path) DO UPDATE SET mtime_ns = excluded.mtime_ns, size = excluded.size, hash = excluded.hash",
    "docs": "INSERT INTO documents(name, version, hash, mtime_ns, size, updated, by) "
            "VALUES (CAST(? AS TEXT), ?, ?, ?, ?, ?, CAST(? AS TEXT)) "
            "ON CONFLICT(name) DO UPDATE SET version = excluded.version, hash = excluded.hash, "
            "mtime_ns = excluded.mtime_ns, size = excluded.size, updated = excluded.updated, by = excluded.by",
    "des": "INSERT OR IGNORE INTO des(id, deps, targs, ops_desc, ops, generator, event, created, state) "
           "VALUES (?, CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, CAST(? AS TEXT), CAST(? AS TEXT), ?, 'new')",
    "producers": "INSERT OR REPLACE INTO producers(doc, des_id) VALUES (CAST(? AS TEXT), ?)",
    "consumers": "INSERT OR IGNORE INTO consumers(doc, des_id) VALUES (CAST(? AS TEXT), ?)",
    "names": "INSERT OR IGNORE INTO names(name, grp) VALUES (CAST(? AS TEXT), CAST(? AS TEXT))",
    "des_update": "UPDATE des SET state = ?, trace = CAST(? AS TEXT), failed_trace = CAST(? AS TEXT), forced = ?, "
                  "attempt = ? WHERE id = ?",
    "runs": "INSERT INTO runs(id, des_id, attempt, worker, start, status, dep_versions, des_n) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, CAST(?7 AS TEXT), (SELECT n FROM des WHERE id = ?2))",
    "runs_start": "UPDATE runs SET status = 'running', worker = ?, start = ? WHERE id = ?",
    "runs_finish": "UPDATE runs SET status = ?, end = ?, error = CAST(? AS TEXT), traceback = CAST(? AS TEXT), "
                   "output = CAST(? AS TEXT), result = CAST(? AS TEXT), "
                   "worker = coalesce(?, worker), start = coalesce(?, start) WHERE id = ?",
    "timers": "INSERT INTO timers(name, last_tick) VALUES (CAST(? AS TEXT), ?) "
              "ON CONFLICT(name) DO UPDATE SET last_tick = max(last_tick, excluded.last_tick)",
}
"""Deferred statements, in the order they are flushed. Names and free text are bound in ``CAST(? AS TEXT)``
(see :mod:`tinyo.names`): the columns of each listed in TEXT_COLUMNS."""

TEXT_COLUMNS = {"events": (3, 5), "events_mark": (1,), "files": (0,), "docs": (0, 6), "des": (1, 2, 5, 6),
                 "producers": (0,), "consumers": (0,), "names": (0, 1), "des_update": (1, 2), "runs": (6,),
                 "runs_finish": (2, 3, 4, 5), "timers": (0,)}
"""The row positions of the deferred statements' names and free text (for :func:`tinyo.names.bindable`)."""


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
        if version in (1, 2) and not read_only:
            pragmas()
            migrate(conn, version)
            return
        if version in (1, 2):
            raise StoreError(f"{path}: written by an older tinyo (schema {version}, this one reads "
                             f"{SCHEMA_VERSION}); run the recipe once (tinyo run) to upgrade the file")
    if read_only:
        raise StoreError(f"{path}: no tinyo state in this file yet")
    pragmas()
    conn.executescript(
        "BEGIN IMMEDIATE;" + SCHEMA
        + f"INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
        + f"PRAGMA application_id = {APP_ID};"
        + "COMMIT;"
    )

def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a schema 1 or 2 file to schema 3, in one transaction (all of it, or nothing).

    - 1 to 2: the reverse index (producers, consumers) and document groups (names) as tables, so the
      engine can keep only the DES that matter now in memory;
    - 2 to 3: each DES gets a number in insertion order (``des.n``, kept by VACUUM), and runs are
      indexed by it (``runs.des_n``) instead of by the DES's hash id: a new run's index entry lands at
      the end of the index, not on a random page (a burst of new DES wrote a quarter of its WAL there).
    """
    from .groups import Groups

    conn.execute("BEGIN IMMEDIATE")
    try:
        des_columns = [r[1] for r in conn.execute("PRAGMA table_info(des)")]
        if "attempt" not in des_columns:  # files from before the column existed
            conn.execute("ALTER TABLE des ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1")
            des_columns.append("attempt")
        if "des_n" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}:
            conn.execute("ALTER TABLE runs ADD COLUMN des_n INTEGER")
        if "n" not in des_columns:
            conn.execute("ALTER TABLE des RENAME TO des_before_v3")
            conn.execute(_statement(SCHEMA, "CREATE TABLE IF NOT EXISTS des("))
            columns = ", ".join(des_columns)
            conn.execute(f"INSERT INTO des(n, {columns}) SELECT rowid, {columns} FROM des_before_v3 ORDER BY rowid")
            conn.execute("DROP TABLE des_before_v3")
        for statement in _statements(SCHEMA):
            conn.execute(statement)
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
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of a schema script (none of ours has a ';' inside a statement)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def _statement(script: str, head: str) -> str:
    """The one statement of ``script`` that starts with ``head``."""
    (found,) = [s for s in _statements(script) if s.startswith(head)]
    return found
