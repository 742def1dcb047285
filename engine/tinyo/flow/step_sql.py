"""Provides the SQLite steps and service: SQL Input (query to rows) and SQL Output (batched writes).

A service names a database: ``services={"db": "path/to.sqlite"}`` or ``{"db": Sqlite(path, ...)}``.
Every step instance opens its own connection. File databases are switched to WAL journaling by
default so that a flow may read a table while another step writes to the same database (with the
default rollback journal an open read would block the writer, and the bounded buffers would then
block the reader: a deadlock outside the flow graph).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .base import Output, Step
from .context import Row
from .errors import FlowDefinitionError, RowFailure, Stopped


class Sqlite:
    """A SQLite database service: its path, busy timeout and journal mode."""

    def __init__(self, path: str, *, timeout: float = 30.0, wal: bool = True) -> None:
        if not isinstance(path, str) or not path:
            raise FlowDefinitionError(f"Sqlite needs a database path, got {path!r}")
        self.path = path
        self.timeout = timeout
        self.wal = wal

    def __repr__(self) -> str:
        return f"Sqlite({self.path!r})"

    def connect(self) -> sqlite3.Connection:
        """A new connection (one per step instance)."""
        conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        if self.wal and self.path != ":memory:" and not self.path.startswith("file::memory"):
            try:
                _use_wal(conn, self.timeout)
            except BaseException:
                conn.close()
                raise
        return conn


_wal_lock = threading.Lock()


def _use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the database to WAL once. Changing the journal mode needs an exclusive lock and SQLite
    does not wait for it (no busy handler), so instances opening together retry for a bounded time."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + timeout
    delay = 0.005
    with _wal_lock:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def service_db(step: Step, name: str) -> Sqlite:
    """The Sqlite service ``name`` of the step's flow; FlowDefinitionError if it is missing or wrong."""
    ctx = step.ctx
    if name not in ctx.services:
        known = ", ".join(sorted(ctx.services)) or "none"
        raise FlowDefinitionError(f"{ctx.where}: service {name!r} is not defined (services: {known})")
    value = ctx.services[name]
    if isinstance(value, Sqlite):
        return value
    if isinstance(value, str):
        return Sqlite(value)
    if isinstance(value, Mapping) and isinstance(value.get("path"), str):
        return Sqlite(**dict(value))
    raise FlowDefinitionError(
        f"{ctx.where}: service {name!r} is {value!r}; a database service is a path string or Sqlite(path)"
    )


class SqlInput(Step):
    """SQL Input: run ``query`` (``${...}`` allowed, e.g. ``WHERE id % ${instance.count} = ${instance.index}``)
    once per input row and send the result rows in chunks.

    ``args`` binds ``?``/``:name`` placeholders: a sequence or dict of values (strings interpolated),
    or a function of the input row returning one.
    """

    settings = ("query", "args")

    def __init__(
        self, query: str, *, service: str = "db", args: Sequence[Any] | Mapping[str, Any] | Callable[[Row], Any] | None = None
    ) -> None:
        if not isinstance(query, str) or not query.strip():
            raise FlowDefinitionError(f"SqlInput needs a query, got {query!r}")
        self.query = query
        self.service = service
        self.args = args

    def describe(self) -> str:
        return f"SqlInput({' '.join(self.query.split())[:60]!r})"

    def setup(self) -> None:
        self.conn = service_db(self, self.service).connect()

    def process(self, rows: list[Row]) -> Output:
        return self._query(rows)

    def _query(self, rows: list[Row]) -> Iterator[list[Row]]:
        size = self.ctx.chunk_size
        for given in rows:
            args = self.args(given) if callable(self.args) else self.args
            cur = self.conn.execute(self.query, args if args is not None else ())
            try:
                names = [d[0] for d in cur.description or ()]
                while True:
                    batch = cur.fetchmany(size)
                    if not batch:
                        break
                    yield [dict(zip(names, values)) for values in batch]
            finally:
                cur.close()

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()


class SqlOutput(Step):
    """SQL Output: write rows in batches (one transaction per chunk); rows pass through to ``out``.

    Either ``table`` (with ``fields``, default the first row's keys; ``mode`` ``insert``, ``replace``
    or ``ignore``, the last two acting on the table's primary key or unique indexes; ``create=True``
    creates a missing table with those columns, untyped and without a key), or a ``statement``
    with ``:field`` placeholders (e.g. an UPDATE). A failing batch is rolled back and retried row by
    row, so only the failing rows go to the ``error`` gate (or fail the flow).
    """

    settings = ("table", "statement")

    def __init__(
        self,
        table: str | None = None,
        *,
        statement: str | None = None,
        service: str = "db",
        fields: Iterable[str] | None = None,
        mode: str = "insert",
        create: bool = False,
    ) -> None:
        if (table is None) == (statement is None):
            raise FlowDefinitionError("SqlOutput needs either table='name' or statement='...', not both")
        if mode not in ("insert", "replace", "ignore"):
            raise FlowDefinitionError(f"SqlOutput mode must be 'insert', 'replace' or 'ignore', got {mode!r}")
        self.table = table
        self.statement = statement
        self.service = service
        self.fields = list(fields) if fields is not None else None
        self.mode = mode
        self.create = create

    def describe(self) -> str:
        return f"SqlOutput({self.table or self.statement!r})"

    def setup(self) -> None:
        self.conn = service_db(self, self.service).connect()
        self._sql: str | None = self.statement
        self._names: list[str] | None = None

    def _prepare(self, first: Row) -> None:
        names = self.fields or list(first)
        cols = ", ".join(_quote(n) for n in names)
        if self.create:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {_quote(self.table or '')} ({cols})")
            self.conn.commit()
        verb = {"insert": "INSERT", "replace": "INSERT OR REPLACE", "ignore": "INSERT OR IGNORE"}[self.mode]
        marks = ", ".join("?" for _ in names)
        self._sql = f"{verb} INTO {_quote(self.table or '')} ({cols}) VALUES ({marks})"
        self._names = names

    def _args(self, row: Row) -> Any:
        if self._names is None:
            return row
        return tuple(row[n] for n in self._names)

    def process(self, rows: list[Row]) -> Output:
        if not rows:
            return rows
        if self._sql is None:
            self._prepare(rows[0])
        conn = self.conn
        sql = self._sql
        assert sql is not None
        try:
            conn.executemany(sql, [self._args(r) for r in rows])
            conn.commit()
            return rows
        except (sqlite3.Error, KeyError, TypeError, ValueError):
            conn.rollback()
        good: list[Row] = []
        for row in rows:
            try:
                conn.execute(sql, self._args(row))
                good.append(row)
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                self.ctx.row_failed(row, exc)
        conn.commit()
        return good

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
