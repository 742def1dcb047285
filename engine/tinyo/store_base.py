"""Provides the state file's connection: opening it (lock, permissions, WAL), its transactions, and the
writes deferred to each commit.

One connection, owned by the engine thread. WAL mode, ``synchronous=NORMAL`` (a killed process loses
nothing committed), explicit transactions batched per engine cycle, a versioned schema, and a clear
StoreError for a foreign, corrupt, newer, read-only or locked file. Every statement is parameterised.

Writes are deferred and flushed per commit as one ``executemany`` per statement, in a fixed order
that follows every row's life (insert before update); a read flushes first, so reads always see the
writes before them. WAL checkpoints run on a thread of their own (``store_wal``), not inside the
engine's commits, so the cost of a commit does not grow with the size of the file.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import StoreError
from .names import bindable, clean, from_sql, to_sql, unbindable_from
from .store_migrate import init_schema
from .store_schema import DEFERRED, TEXT_COLUMNS, doc_statements
from .store_wal import CHECKPOINT_BYTES, KICK_BYTES, KICK_STEP, RESET_BYTES, Checkpointer, WalMeter

DES_OK = DEFERRED["des_ok"]
_RANK = {kind: rank for rank, kind in enumerate(DEFERRED)}

MANY_CHUNK = 512
"""Keys per ``IN (...)`` lookup at most."""
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, MANY_CHUNK)
_MARKS = {size: ",".join("?" * size) for size in _SIZES}


def padded_size(n: int) -> int:
    """The fixed number of marks an ``IN`` list of ``n`` keys is padded to. A lookup's statement is compiled
    once per size, not once per length: a statement per length would compile one per batch (of any size up
    to the chunk) and push the commit's statements out of the connection's statement cache."""
    for size in _SIZES:
        if n <= size:
            return size
    raise ValueError(f"more than {MANY_CHUNK} keys in one lookup: {n}")

# Python's sqlite3 binds an int, float or str as it is, but for None and bytes it looks for an adapter first: a
# missed lookup and two failed attribute lookups, about 0.3 us per value (a run's row binds three or four
# Nones). An adapter that gives the value back makes that one lookup that hits, and binds the same NULL or
# BLOB. Not where the process (a recipe's own code) registered one already.
for _type, _same in ((type(None), {}.get), (bytes, bytes)):  # {}.get(None) is None, bytes(b) is b
    if (_type, sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(_type, _same)


class StoreBase:
    """The connection and its transactions. Not thread-safe: one thread (the engine loop) uses it."""

    def __init__(self, path: str, *, read_only: bool = False, lock: bool = True) -> None:
        self.path = path
        self.memory = path == ":memory:"
        self._lock_fd: int | None = None
        self._pending: dict[str, Any] = {}
        """Deferred rows per kind of statement: a list, or a dict of rows by key (one row per key)."""
        self._checkpointer: Checkpointer | None = None
        self._wal_meter: WalMeter | None = None
        self._kicked_at = 0
        """How much of the WAL was in use when the checkpoint thread was last woken (0: not since the WAL
        started over)."""
        self._reset_pending()
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
            self._opened()
        except StoreError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{self.path}: not a usable tinyo state file ({exc})") from exc

    def _opened(self) -> None:
        """Read what the parts keep in memory from the file (after the schema is checked)."""

    def _reset_pending(self) -> None:
        """Forget what is deferred (a flush took it, or the transaction is gone)."""
        self._pending = {}

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
            # the statement cache holds the commit's deferred statements, the document upserts' shapes and the
            # lookups at each padded size (see padded_size) with room to spare: none is compiled twice
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=256)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.text_factory = from_sql  # a name's undecodable bytes come back as os.fsdecode gives them
        return conn

    def _pragmas(self) -> None:
        if not self.memory:
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch the state file to WAL mode (got {mode})")
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            # when the WAL starts over (after a complete checkpoint) its file is cut back to this size: a long
            # run of commits does not leave a long file behind
            self.conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_BYTES}").fetchall()
            self._wal_meter = WalMeter(self.path)
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
        if self._wal_meter is not None:
            self._wal_meter.close()
            self._wal_meter = None
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

    def _keyed(self, kind: str) -> dict[Any, Any]:
        """The deferred rows of ``kind`` by key (one row per key and commit: the last one given wins)."""
        rows = self._pending.get(kind)
        if rows is None:
            self.begin()
            rows = self._pending[kind] = {}
        return rows

    def flush(self) -> None:
        """Write the deferred rows (inside the open transaction)."""
        if not self._pending:
            return
        pending = self._pending
        self._reset_pending()
        try:
            self.begin()
            # the kinds deferred, in DEFERRED's order (a chain link's commit has five of its fifteen)
            for kind in sorted(pending, key=_RANK.__getitem__) if len(pending) > 1 else pending:
                rows = pending[kind]
                if not rows:
                    continue
                sql = DEFERRED[kind]
                if kind == "docs":
                    for sql, text, shaped, update in doc_statements(rows.values()):
                        if update is not None:
                            # rows that most likely exist: updated in place, and upserted all again (the same
                            # values: the same end) only when some did not
                            before = self.conn.total_changes
                            self._write_rows(update, shaped, text)
                            if self.conn.total_changes - before == len(shaped):
                                continue
                        self._write_rows(sql, shaped, text)
                    continue
                if kind == "des_update":  # keyed with the DES made up to date (``des_ok``): one row per DES
                    self._write_des(rows, pending.get("ended"))
                    continue
                if rows.__class__ is dict:
                    rows = [(run_id, des_id) for des_id, run_id in rows.items()] if kind == "ended" else list(rows.values())
                self._write_rows(sql, rows, TEXT_COLUMNS.get(kind, ()))
        except sqlite3.OperationalError as exc:
            self._abort(exc)

    def _write_des(self, rows: dict[str, tuple[Any, ...]], ended: dict[str, int] | None) -> None:
        """The DES updates, each with the run of its DES that ended in this commit, if any (taken out of
        ``ended``: what is left there is written on its own)."""
        ok: list[tuple[Any, ...]] = []
        other: list[tuple[Any, ...]] = []
        for des_id, row in rows.items():
            run_id = ended.pop(des_id, None) if ended else None
            if len(row) == 2:
                ok.append((row[0], run_id, des_id))
            else:
                other.append((*row[:-1], run_id, des_id))
        if ok:
            self._write_rows(DES_OK, ok, TEXT_COLUMNS["des_ok"])
        if other:
            self._write_rows(DEFERRED["des_update"], other, TEXT_COLUMNS["des_update"])

    def _write_rows(self, sql: str, rows: list[Any], text: tuple[int, ...]) -> None:
        """``executemany``, the rows as given. A name that is not valid UTF-8 (rare) fails to bind: SQLite has
        written the rows before it, and the rows from it on are written with the names in ``text`` bound as
        their bytes (see :mod:`tinyo.names`)."""
        try:
            self.conn.executemany(sql, rows)
        except UnicodeEncodeError:
            start = unbindable_from(rows)
            if start is None or not text:
                raise
            self.conn.executemany(sql, [bindable(row, text) for row in rows[start:]])

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
        if self._checkpointer is None or self._wal_meter is None:
            return
        try:
            size = self._wal_meter.in_use()
            if size < self._kicked_at:
                self._kicked_at = 0  # the WAL started over
            if size > KICK_BYTES and size >= self._kicked_at + KICK_STEP:
                # it copies while the engine goes on (SQLite releases the GIL): a round per KICK_STEP of growth
                # (a kick per commit would mean a checkpoint, with its syncs, per commit)
                self._kicked_at = size
                self._checkpointer.kick.set()
            if size > RESET_BYTES:
                with self._checkpointer.busy:  # after the thread's (which leaves this one little to copy)
                    self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (OSError, sqlite3.OperationalError):
            pass  # busy: the checkpoint thread or the next commit tries again

    def _abort(self, exc: sqlite3.Error) -> None:
        """A write failed (disk full, I/O error): drop the whole transaction and say why."""
        self._reset_pending()
        if self.conn.in_transaction:  # SQLite may already have rolled back by itself
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # nothing left to roll back: the transaction is gone either way
        self._rolled_back()
        hint = " (free some space, then start again: nothing of this cycle was written)" \
            if "full" in str(exc).lower() else ""
        raise StoreError(f"{self.path}: could not write the state file: {exc}{hint}") from exc

    def rollback(self) -> None:
        self._reset_pending()
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._rolled_back()

    def _rolled_back(self) -> None:
        """What the parts keep in memory goes back to what the file holds (the transaction is dropped)."""

    def _w(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        self.flush()
        self.begin()
        return self.conn.execute(sql, tuple(params))

    def _r(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """A read, after the deferred writes (so it sees them)."""
        self.flush()
        return self.conn.execute(sql, tuple(params))

    # Point lookups for the engine's in-memory caches. They do not flush: whatever is still deferred is
    # also in the engine's memory (its caches are trimmed only right after a commit), so the engine never
    # asks the store for it. Reads that may not rely on that go through ``_r``.
    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row of a point lookup, with the statement finished (an unfinished one would hold a read
        snapshot open, and a later write from that old snapshot fails as 'database is locked')."""
        rows = self.conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def _many(self, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (with one ``IN ({})`` for the keys) for every key, in chunks of MANY_CHUNK; no flush,
        like ``_one``."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), MANY_CHUNK):
            chunk: list[Any] = keys[start:start + MANY_CHUNK]
            if all(map(str.isascii, chunk)) or all(map(clean, chunk)):
                size = padded_size(len(chunk))
                chunk.extend(chunk[-1:] * (size - len(chunk)))  # the last key again: IN matches it once
                marks = _MARKS[size]
            else:  # a name with undecodable bytes: bound as those bytes (see tinyo.names)
                chunk = [to_sql(k) for k in chunk]
                marks = ",".join("CAST(? AS TEXT)" if k.__class__ is bytes else "?" for k in chunk)
            rows.extend(self.conn.execute(sql.format(marks), chunk).fetchall())
        return rows

    def integrity_check(self) -> str:
        return self._r("PRAGMA integrity_check").fetchone()[0]
