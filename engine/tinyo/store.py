"""Provides the SQLite state store: events, documents, DES and traces, runs, timers.

Its parts: the connection, transactions and deferred writes (``store_base``), the schema
(``store_schema``) and the opening checks and upgrades of older files (``store_migrate``), WAL
checkpoints (``store_wal``), records and column encodings (``store_rows``), and the code per kind of
row: events, timers and requests (``store_events``), documents (``store_docs``), DES and runs
(``store_des``).
"""

from __future__ import annotations

from typing import Any

from .store_des import DESPart
from .store_events import EventsPart
from .store_rows import RunRow, StoredDES, dump_ops, load_ops
from .store_schema import APP_ID, SCHEMA, SCHEMA_VERSION
from .store_wal import CHECKPOINT_BYTES, KICK_BYTES, RESET_BYTES

__all__ = ["APP_ID", "CHECKPOINT_BYTES", "KICK_BYTES", "RESET_BYTES", "SCHEMA", "SCHEMA_VERSION", "RunRow", "Store",
           "StoredDES", "dump_ops", "load_ops"]

_COUNTS = {
    "events": "SELECT count(*) FROM events",
    "des": "SELECT count(*) FROM des",
    "runs": "SELECT count(*) FROM runs",
    "requests": "SELECT count(*) FROM requests",
    "documents": "SELECT count(*) FROM documents WHERE version IS NOT NULL",
    "names": "SELECT count(*) FROM documents WHERE grp IS NOT NULL",
    "files_seen": "SELECT count(*) FROM documents WHERE seen_size IS NOT NULL",
}


class Store(EventsPart, DESPart):
    """The engine's state file. Not thread-safe: one thread (the engine loop) uses it."""

    def count(self, what: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
        """How many rows of a kind: events, des, runs, requests, documents (with a version), names (documents
        named in the DAG), files_seen (files taken in as events); ``where`` narrows a plain table's count."""
        sql = _COUNTS[what]
        if where:
            assert what in {"events", "des", "runs", "requests"}, what
            sql += " " + where
        return self._r(sql, params).fetchone()[0]

    def prune(self, keep_events: int | None, keep_runs: int | None) -> tuple[int, int]:
        """Delete the oldest processed events / finished runs beyond the kept counts."""
        return (self.prune_events(keep_events) if keep_events else 0,
                self.prune_runs(keep_runs) if keep_runs else 0)
