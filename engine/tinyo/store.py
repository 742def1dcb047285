"""Provides the SQLite state store: events, documents, DES and traces, runs, timers, files seen (the
schema and its upgrades are in ``store_schema``, checkpoints in ``store_wal``, records and column
encodings in ``store_rows``).

One connection, owned by the engine thread. WAL mode, ``synchronous=NORMAL`` (a killed process loses
nothing committed), explicit transactions batched per engine cycle, a versioned schema, and a clear
StoreError for a foreign, corrupt, newer, read-only or locked file. Every statement is parameterised.

Writes are deferred and flushed per commit as one ``executemany`` per statement, in a fixed order
that follows every row's life (insert before update); a read flushes first, so reads always see the
writes before them. WAL checkpoints run on a thread of their own, not inside the engine's commits,
so the cost of a commit does not grow with the size of the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import StoreError
from .names import bindable, clean, from_sql, to_sql
from .store_rows import RunRow, StoredDES, dump_ops, jlist, jmap, jset, load_ops, stored_des
from .store_schema import APP_ID, DEFERRED, SCHEMA, SCHEMA_VERSION, TEXT_COLUMNS, init_schema
from .store_wal import CHECKPOINT_BYTES, KICK_BYTES, RESET_BYTES, Checkpointer

__all__ = ["APP_ID", "CHECKPOINT_BYTES", "RESET_BYTES", "SCHEMA", "SCHEMA_VERSION", "RunRow", "Store", "StoredDES",
           "dump_ops", "load_ops"]


class Store:
    """The engine's state file. Not thread-safe: one thread (the engine loop) uses it."""

    def __init__(self, path: str, *, read_only: bool = False, lock: bool = True) -> None:
        self.path = path
        self.memory = path == ":memory:"
        self._lock_fd: int | None = None
        self._pending: dict[str, list[Any]] = {}
        self._unflushed_events: dict[int, list[Any]] = {}
        self._next_event_id: int | None = None
        self._checkpointer: Checkpointer | None = None
        if not self.memory:
            abspath = Path(path).expanduser().resolve()
            self.path = str(abspath)
            if not read_only:
                abspath.parent.mkdir(parents=True, exist_ok=True)
                self._check_writable(abspath)
                if lock:
                    self._take_lock(abspath)
            elif not abspath.exists():
                raise StoreError(f"{abspath}: no state file here yet (run the recipe first)")
        try:
            self.conn = self._connect(read_only)
            init_schema(self.conn, self.path, read_only, self._pragmas)
        except StoreError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{self.path}: not a usable tinyo state file ({exc})") from exc

    # ------------------------------------------------------------ opening
    def _check_writable(self, path: Path) -> None:
        if path.exists() and not os.access(path, os.W_OK):
            raise StoreError(f"{path}: the state file is read-only; tinyo needs to write it")
        if not path.exists():
            if not os.access(path.parent, os.W_OK):
                raise StoreError(f"{path.parent}: cannot create the state file here (folder not writable)")
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)

    def _take_lock(self, path: Path) -> None:
        lock_path = str(path) + ".lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{path}: another tinyo engine is running on this state file") from None
        self._lock_fd = fd

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        if read_only:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                # a read-only folder: SQLite cannot make the WAL's shared-memory file beside it; read the
                # file as it is (a cleanly stopped engine leaves everything in it)
                conn.close()
                conn = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None,
                                       check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.text_factory = from_sql  # a name's undecodable bytes come back as os.fsdecode gives them
        return conn

    def _pragmas(self) -> None:
        if not self.memory:
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch the state file to WAL mode (got {mode})")
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            # when the WAL starts over (after a complete checkpoint) its file is cut back to this size, so
            # the file's size tells how much of it is in use
            self.conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_BYTES}").fetchall()
            self._checkpointer = Checkpointer(self.path)
            self._checkpointer.start()
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = OFF")

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stopping.set()
            self._checkpointer.kick.set()
            self._checkpointer.join(timeout=5)
            self._checkpointer = None
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                if self._pending:
                    self.flush()
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except (sqlite3.Error, StoreError):
                pass  # closing after a failed write: the failure was already reported
            try:
                conn.close()
            except sqlite3.Error:
                pass  # closing a broken connection: the error was already reported when it broke
            self.conn = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------ transactions
    def begin(self) -> None:
        """Open a write transaction if none is open (writes are batched until ``commit``).

        IMMEDIATE: the write lock is taken now (waiting, if need be, for the checkpoint thread), because the
        writes are deferred and the lookups that come first would otherwise make this a read transaction,
        which SQLite cannot upgrade while a checkpoint holds the lock: it fails at once as 'locked'."""
        if not self.conn.in_transaction:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                self._abort(exc)

    def _defer(self, kind: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self.begin()  # the transaction is open from the first write on: all of it commits, or none
        self._pending.setdefault(kind, []).extend(rows)

    def flush(self) -> None:
        """Write the deferred rows (inside the open transaction)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        self._unflushed_events.clear()
        try:
            self.begin()
            for kind, sql in DEFERRED.items():
                rows = pending.get(kind)
                if rows:
                    columns = TEXT_COLUMNS.get(kind)
                    self.conn.executemany(sql, bindable(rows, columns) if columns else rows)
        except sqlite3.OperationalError as exc:
            self._abort(exc)

    def commit(self) -> None:
        """Make everything written since the last commit durable, or nothing of it (StoreError)."""
        self.flush()
        if self.conn.in_transaction:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._abort(exc)
            self._bound_wal()

    def _bound_wal(self) -> None:
        """Keep the WAL from growing past RESET_BYTES under a steady stream of commits.

        The checkpoint thread copies the WAL back in the background, but SQLite rewinds the WAL only when
        a write starts right after a *complete* checkpoint, which a busy loop rarely leaves room for. Past
        the bound, the engine finishes the checkpoint itself (only the few frames the thread has not
        copied yet), so its next write starts the WAL over instead of appending to it."""
        if self._checkpointer is None:
            return
        try:
            size = os.path.getsize(self.path + "-wal")
            if size > KICK_BYTES:
                self._checkpointer.kick.set()  # it copies while the engine goes on (SQLite releases the GIL)
            if size > RESET_BYTES:
                with self._checkpointer.busy:  # after the thread's (which leaves this one little to copy)
                    self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (OSError, sqlite3.OperationalError):
            pass  # busy: the checkpoint thread or the next commit tries again

    def _abort(self, exc: sqlite3.Error) -> None:
        """A write failed (disk full, I/O error): drop the whole transaction and say why."""
        self._pending.clear()
        self._unflushed_events.clear()
        if self.conn.in_transaction:  # SQLite may already have rolled back by itself
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # nothing left to roll back: the transaction is gone either way
        hint = " (free some space, then start again: nothing of this cycle was written)" \
            if "full" in str(exc).lower() else ""
        raise StoreError(f"{self.path}: could not write the state file: {exc}{hint}") from exc

    def rollback(self) -> None:
        self._pending.clear()
        self._unflushed_events.clear()
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _w(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        self.flush()
        self.begin()
        return self.conn.execute(sql, tuple(params))

    def _r(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """A read, after the deferred writes (so it sees them)."""
        self.flush()
        return self.conn.execute(sql, tuple(params))

    # ------------------------------------------------------------ events
    def add_events(self, rows: list[tuple[float, str, str, str]]) -> list[int]:
        """Insert (ts, source, name, status) rows; return their ids in order."""
        if self._next_event_id is None:
            self._next_event_id = (self.conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1
        first = self._next_event_id
        self._next_event_id += len(rows)
        new = [[first + i, *row, None] for i, row in enumerate(rows)]
        self._defer("events", new)
        for row in new:
            self._unflushed_events[row[0]] = row
        return list(range(first, first + len(rows)))

    def mark_events(self, rows: list[tuple[str, str | None, int]]) -> None:
        """Set (status, detail) of events by id (in place while their insert is not flushed yet)."""
        later = []
        for status, detail, event_id in rows:
            pending = self._unflushed_events.get(event_id)
            if pending is not None:
                pending[4], pending[5] = status, detail
            else:
                later.append((status, detail, event_id))
        if later:
            self._defer("events_mark", later)

    def new_events(self, after_id: int, limit: int) -> list[tuple[int, float, str, str]]:
        """Stored events not yet processed, oldest first: (id, ts, source, name)."""
        return self._r(
            "SELECT id, ts, source, name FROM events WHERE status = 'new' AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()

    def recent_events(self, limit: int) -> list[tuple[int, float, str, str, str, str | None]]:
        rows = self._r(
            "SELECT id, ts, source, name, status, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return rows[::-1]

    def count(self, table: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
        assert table in {"events", "documents", "des", "runs", "files_seen", "requests", "names"}
        return self._r(f"SELECT count(*) FROM {table} {where}", params).fetchone()[0]

    # ------------------------------------------------------------ files and documents
    def files_seen_many(self, paths: list[str]) -> dict[str, tuple[int, int, str | None]]:
        """The last-evented state of each of ``paths`` that has one (in chunks of 500 per query)."""
        self.flush()
        return {r[0]: r[1:] for r in self._many("SELECT path, mtime_ns, size, hash FROM files_seen WHERE path IN ({})",
                                                paths)}

    def files_seen_under(self, folder: str) -> dict[str, tuple[int, int, str | None]]:
        prefix = folder.rstrip("/") + "/"
        rows = self._r(
            "SELECT path, mtime_ns, size, hash FROM files_seen WHERE path >= CAST(? AS TEXT) AND path < CAST(? AS TEXT)",
            (to_sql(prefix), to_sql(prefix[:-1] + "0")),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def set_file_seen(self, path: str, mtime_ns: int, size: int, digest: str | None) -> None:
        self._defer("files", [(path, mtime_ns, size, digest)])

    def load_documents(self) -> Iterator[tuple[str, int, str | None, int | None, int | None]]:
        yield from self._r("SELECT name, version, hash, mtime_ns, size FROM documents")

    def file_targets(self) -> Iterator[tuple[str, str | None, int, int, str]]:
        """Every produced document with a recorded file state: (name, hash, mtime_ns, size, producer)."""
        yield from self._r("SELECT d.name, d.hash, d.mtime_ns, d.size, p.des_id FROM documents d "
                           "JOIN producers p ON p.doc = d.name WHERE d.mtime_ns IS NOT NULL")

    def put_documents(self, rows: list[tuple[str, int, str | None, int | None, int | None, float, str]]) -> None:
        """Upsert (name, version, hash, mtime_ns, size, updated, by)."""
        self._defer("docs", rows)

    # ------------------------------------------------------------ DES
    def add_des(self, rows: list[tuple[str, frozenset[str], frozenset[str], tuple[str, ...], bytes | None, str, str, float]]) -> None:
        """Insert new DES: (id, deps, targs, ops_desc, ops_blob, generator, event, created), with the reverse
        index rows (document -> producer, document -> consumers)."""
        self._defer("des", [(i, jset(d), jset(t), jlist(o), b, g, e, c) for i, d, t, o, b, g, e, c in rows])
        self._defer("producers", [(t, row[0]) for row in rows for t in row[2]])
        self._defer("consumers", [(d, row[0]) for row in rows for d in row[1]])

    def add_names(self, rows: list[tuple[str, str]]) -> None:
        """Documents first named now, with their group: (name, group)."""
        self._defer("names", rows)

    # Point lookups for the engine's in-memory caches. They do not flush: whatever is still deferred is
    # also in the engine's memory (its caches are trimmed only right after a commit), so the engine never
    # asks the store for it. Reads that may not rely on that go through ``_r``.
    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row of a point lookup, with the statement finished (an unfinished one would hold a read
        snapshot open, and a later write from that old snapshot fails as 'database is locked')."""
        rows = self.conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def _many(self, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (with one ``IN ({})`` for the keys) for every key, in chunks of 500; no flush,
        like ``_one``."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), 500):
            chunk: list[Any] = keys[start:start + 500]
            if all(map(str.isascii, chunk)) or all(map(clean, chunk)):
                marks = ",".join("?" * len(chunk))
            else:  # a name with undecodable bytes: bound as those bytes (see tinyo.names)
                chunk = [to_sql(k) for k in chunk]
                marks = ",".join("CAST(? AS TEXT)" if k.__class__ is bytes else "?" for k in chunk)
            rows.extend(self.conn.execute(sql.format(marks), chunk).fetchall())
        return rows

    def doc_versions_many(self, names: list[str]) -> dict[str, int]:
        return dict(self._many("SELECT name, version FROM documents WHERE name IN ({})", names))

    def doc_files_many(self, names: list[str]) -> dict[str, tuple[int, str | None, int | None, int | None]]:
        """(version, hash, mtime_ns, size) of each of the documents that exists."""
        return {r[0]: r[1:] for r in self._many(
            "SELECT name, version, hash, mtime_ns, size FROM documents WHERE name IN ({})", names)}

    def producers_many(self, docs: list[str]) -> dict[str, str]:
        return dict(self._many("SELECT doc, des_id FROM producers WHERE doc IN ({})", docs))

    def consumers_many(self, docs: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for doc, des_id in self._many("SELECT doc, des_id FROM consumers WHERE doc IN ({})", docs):
            out.setdefault(doc, []).append(des_id)
        return out

    def names_known(self, names: list[str]) -> set[str]:
        """Which of ``names`` were ever named as documents (every document, producer and reader row has one)."""
        return {r[0] for r in self._many("SELECT name FROM names WHERE name IN ({})", names)}

    def des_existing(self, des_ids: list[str]) -> set[str]:
        return {r[0] for r in self._many("SELECT id FROM des WHERE id IN ({})", des_ids)}

    def des_lookup(self, des_id: str) -> StoredDES | None:
        row = self._one(f"SELECT {self._DES_COLUMNS} FROM des WHERE id = ?", (des_id,))
        return None if row is None else stored_des(row)

    def group_of(self, name: str) -> str | None:
        rows = self._r("SELECT grp FROM names WHERE name = CAST(? AS TEXT)", (to_sql(name),)).fetchall()
        return rows[0][0] if rows else None

    def group_members(self, group: str, offset: int, limit: int) -> list[tuple[str, int | None, str | None]]:
        """(name, version, producer) of a group's documents in name order, one page."""
        return self._r(
            "SELECT n.name, d.version, p.des_id FROM names n LEFT JOIN documents d ON d.name = n.name "
            "LEFT JOIN producers p ON p.doc = n.name WHERE n.grp = CAST(? AS TEXT) ORDER BY n.name LIMIT ? OFFSET ?",
            (to_sql(group), limit, offset),
        ).fetchall()

    def group_index(self, group: str, name: str) -> int:
        """How many documents of ``group`` sort before ``name``."""
        return self._r("SELECT count(*) FROM names WHERE grp = CAST(? AS TEXT) AND name < CAST(? AS TEXT)",
                       (to_sql(group), to_sql(name))).fetchone()[0]

    def find_names(self, match: Any, limit: int) -> list[str]:
        """The first ``limit`` document names (in name order) for which ``match(name)`` is true."""
        out: list[str] = []
        cur = self._r("SELECT name FROM names ORDER BY name")
        try:
            for (name,) in cur:
                if match(name):
                    out.append(name)
                    if len(out) >= limit:
                        break
        finally:
            cur.close()
        return out

    def names_from(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` document names starting with ``prefix``, in name order (an index range)."""
        rows = self._r("SELECT name FROM names WHERE name >= CAST(? AS TEXT) ORDER BY name LIMIT ?",
                       (to_sql(prefix), limit)).fetchall()
        return [name for (name,) in rows if name.startswith(prefix)]

    def all_names(self) -> Iterator[tuple[str, str, int | None, str | None]]:
        """Every document: (name, group, version, producer), for rebuilding group counts at start-up."""
        yield from self._r(
            "SELECT n.name, n.grp, d.version, p.des_id FROM names n LEFT JOIN documents d ON d.name = n.name "
            "LEFT JOIN producers p ON p.doc = n.name"
        )


    def update_des(self, rows: list[tuple[Any, ...]]) -> None:
        """Set the state of DES: rows are (state, trace, failed_trace, forced, id), or with the next attempt
        number before the id (a retry waiting for its backoff keeps its count across a restart)."""
        self._defer("des_update", [(r[0], jmap(r[1]), jmap(r[2]), int(r[3]), r[4] if len(r) == 6 else 1, r[-1])
                                   for r in rows])

    _DES_COLUMNS = "id, deps, targs, ops_desc, ops, generator, event, state, trace, failed_trace, forced, attempt"

    def load_des(self) -> Iterator[StoredDES]:
        for row in self._r(f"SELECT {self._DES_COLUMNS} FROM des"):
            yield stored_des(row)

    def load_open_des(self) -> Iterator[StoredDES]:
        """The DES that may need work: every one not up to date by its record (failed, cancelled, waiting to
        retry, never built, rerun asked for) and every up-to-date one whose deps changed since its last success
        (the comparison runs inside SQLite, so a start does not build the whole DAG in Python)."""
        cols = ", ".join(f"d.{c.strip()}" for c in self._DES_COLUMNS.split(","))
        yield from (stored_des(r) for r in self._r(
            f"SELECT {cols} FROM des d WHERE d.state != 'ok' OR d.forced != 0 OR d.trace IS NULL "
            "OR EXISTS (SELECT 1 FROM json_each(d.deps) j LEFT JOIN documents doc ON doc.name = j.value "
            "WHERE doc.version IS NOT (SELECT t.value FROM json_each(d.trace) t WHERE t.key = j.value))"))

    def des_row(self, des_id: str) -> StoredDES | None:
        """A DES as stored, after the deferred writes (``des_lookup`` without the flush)."""
        self.flush()
        return self.des_lookup(des_id)

    # ------------------------------------------------------------ runs
    def next_run_id(self) -> int:
        return (self._r("SELECT max(id) FROM runs").fetchone()[0] or 0) + 1

    def add_runs(self, rows: list[tuple[int, str, int, str | None, float | None, str, dict[str, int]]]) -> None:
        """Insert (id, des_id, attempt, worker, start, status, dep_versions)."""
        self._defer("runs", [(i, d, a, w, s, st, jmap(v)) for i, d, a, w, s, st, v in rows])

    def start_runs(self, rows: list[tuple[str, float, int]]) -> None:
        """Mark runs running: (worker, start, id)."""
        self._defer("runs_start", rows)

    def finish_runs(self, rows: list[tuple[Any, ...]]) -> None:
        """(status, end, error, traceback, output, result, worker, id), or with the start time before the id
        (when the run's start was not written yet)."""
        self._defer("runs_finish", [r if len(r) == 9 else (*r[:7], None, r[7]) for r in rows])

    def run_status(self, run_id: int) -> str | None:
        """The stored status of run ``run_id`` (None: no such run)."""
        row = self._r("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def open_runs(self) -> list[tuple[int, str]]:
        return self._r("SELECT id, des_id FROM runs WHERE status IN ('queued', 'running')").fetchall()

    def open_runs_full(self) -> list[tuple[int, str, int, dict[str, int]]]:
        """Open runs as (id, des_id, attempt, dep_versions)."""
        rows = self._r(
            "SELECT id, des_id, attempt, dep_versions FROM runs WHERE status IN ('queued', 'running') ORDER BY id"
        ).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3] or "{}")) for r in rows]

    def last_error(self, des_id: str) -> str:
        """The error of the DES's latest run ('' if none)."""
        row = self._r("SELECT error FROM runs WHERE des_n = (SELECT n FROM des WHERE id = ?) ORDER BY id DESC LIMIT 1",
                      (des_id,)).fetchone()
        return (row[0] or "") if row else ""

    def runs_for(self, des_id: str, limit: int = 50) -> list[RunRow]:
        rows = self._r(
            "SELECT id, des_id, attempt, worker, start, end, status, error, traceback, output, result "
            "FROM runs WHERE des_n = (SELECT n FROM des WHERE id = ?) ORDER BY id DESC LIMIT ?", (des_id, limit)
        ).fetchall()
        return [RunRow(*r) for r in rows[::-1]]

    def recent_runs(self, limit: int) -> list[RunRow]:
        rows = self._r(
            "SELECT id, des_id, attempt, worker, start, end, status, error, traceback, output, result "
            "FROM runs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [RunRow(*r) for r in rows[::-1]]

    def run_counts(self) -> dict[str, int]:
        return dict(self._r("SELECT status, count(*) FROM runs GROUP BY status").fetchall())

    # ------------------------------------------------------------ timers and requests
    def timer_ticks(self) -> dict[str, float]:
        return dict(self._r("SELECT name, last_tick FROM timers").fetchall())

    def set_timer_tick(self, name: str, tick: float) -> None:
        self._defer("timers", [(name, tick)])

    def add_request(self, ts: float, kind: str, arg: str) -> int:
        cur = self._w("INSERT INTO requests(ts, kind, arg) VALUES (?, ?, CAST(? AS TEXT))", (ts, kind, to_sql(arg)))
        self.commit()
        return cur.lastrowid or 0

    def pending_requests(self) -> list[tuple[int, str, str]]:
        return self._r("SELECT id, kind, arg FROM requests WHERE done = 0 ORDER BY id").fetchall()

    def mark_request(self, req_id: int) -> None:
        self._w("UPDATE requests SET done = 1 WHERE id = ?", (req_id,))

    # ------------------------------------------------------------ retention
    def prune(self, keep_events: int | None, keep_runs: int | None) -> tuple[int, int]:
        """Delete the oldest processed events / finished runs beyond the kept counts."""
        removed_events = removed_runs = 0
        if keep_events:
            cur = self._w(
                "DELETE FROM events WHERE status != 'new' AND id <= (SELECT max(id) FROM events) - ?", (keep_events,)
            )
            removed_events = cur.rowcount
        if keep_runs:
            cur = self._w(
                "DELETE FROM runs WHERE status NOT IN ('queued', 'running') AND id <= (SELECT max(id) FROM runs) - ?",
                (keep_runs,),
            )
            removed_runs = cur.rowcount
        return removed_events, removed_runs

    def integrity_check(self) -> str:
        return self._r("PRAGMA integrity_check").fetchone()[0]


