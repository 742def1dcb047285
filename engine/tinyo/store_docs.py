"""Provides the store's documents: one row per name with its version and file state, its group, its
producer and its file as last taken in, written once per commit whatever parts of it changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .names import to_sql
from .store_base import StoreBase
from .store_schema import GROUP_PART, PRODUCER_PART, SEEN_PART, VERSION_PART

_NAMED = "grp IS NOT NULL"
"""A document the DAG names (every versioned, produced or read document has a group)."""


_UNSET = (None, None, None, None, None, None, None, None, None, None, None, 0)
"""A deferred row for a document in this commit is ``[name, *_UNSET]``: every part NULL (kept as stored) until
given (see ``store_schema.DOC_PARTS``); its last item says which parts are (``store_schema.DOC_SHAPE``). Made in
place by each setter (a row per file of a burst: no call for it)."""


class DocumentsPart(StoreBase):
    """Documents, their groups, producers and consumers, and files as last seen (see :class:`tinyo.store.Store`)."""

    # ------------------------------------------------------------ files as taken in
    def files_seen_many(self, paths: list[str], flush: bool = True) -> dict[str, tuple[int, int, str | None]]:
        """The last-evented state of each of ``paths`` that has one (in chunks of up to 512 per query).
        ``flush=False``: the deferred rows are not written first (a point lookup, as ``_many``: for a caller
        that holds every state it deferred in memory, and asks only for the others)."""
        if flush:
            self.flush()
        return {r[0]: r[1:] for r in self._many(
            "SELECT name, seen_mtime_ns, seen_size, seen_hash FROM documents "
            "WHERE name IN ({}) AND seen_size IS NOT NULL", paths)}

    def files_seen_under(self, folder: str) -> dict[str, tuple[int, int, str | None]]:
        prefix = folder.rstrip("/") + "/"
        rows = self._r(
            "SELECT name, seen_mtime_ns, seen_size, seen_hash FROM documents "
            "WHERE name >= CAST(? AS TEXT) AND name < CAST(? AS TEXT) AND seen_size IS NOT NULL",
            (to_sql(prefix), to_sql(prefix[:-1] + "0")),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def set_file_seen(self, path: str, mtime_ns: int, size: int, digest: str | None) -> None:
        docs = self._keyed("docs")
        row = docs.get(path)
        if row is None:
            row = docs[path] = [path, *_UNSET]
        row[9] = mtime_ns
        row[10] = size
        row[11] = digest
        row[12] |= SEEN_PART

    # ------------------------------------------------------------ versions
    def load_documents(self) -> Iterator[tuple[str, int, str | None, int | None, int | None]]:
        yield from self._r("SELECT name, version, hash, mtime_ns, size FROM documents WHERE version IS NOT NULL")

    def file_targets(self) -> Iterator[tuple[str, str | None, int, int, str]]:
        """Every produced document with a recorded file state: (name, hash, mtime_ns, size, producer)."""
        yield from self._r("SELECT name, hash, mtime_ns, size, producer FROM documents "
                           "WHERE producer IS NOT NULL AND mtime_ns IS NOT NULL")

    def put_documents(self, rows: list[tuple[str, int, str | None, int | None, int | None, float, str]]) -> None:
        """Upsert (name, version, hash, mtime_ns, size, updated, by)."""
        docs = self._keyed("docs")
        for new in rows:
            row = docs.get(new[0])
            if row is None:
                row = docs[new[0]] = [new[0], *_UNSET]
            row[1:7] = new[1:]
            row[12] |= VERSION_PART

    def doc_versions_many(self, names: list[str]) -> dict[str, int]:
        return dict(self._many("SELECT name, version FROM documents WHERE name IN ({}) AND version IS NOT NULL",
                               names))

    def doc_files_many(self, names: list[str]) -> dict[str, tuple[int, str | None, int | None, int | None]]:
        """(version, hash, mtime_ns, size) of each of the documents that exists."""
        return {r[0]: r[1:] for r in self._many(
            "SELECT name, version, hash, mtime_ns, size FROM documents WHERE name IN ({}) AND version IS NOT NULL",
            names)}

    # ------------------------------------------------------------ producers and readers
    def add_producers(self, rows: list[tuple[str, str]]) -> None:
        """(document, id of the DES that produces it)."""
        docs = self._keyed("docs")
        for doc, des_id in rows:
            row = docs.get(doc)
            if row is None:
                row = docs[doc] = [doc, *_UNSET]
            row[8] = des_id
            row[12] |= PRODUCER_PART

    def add_consumers(self, rows: list[tuple[str, str]]) -> None:
        """(document, id of a DES that reads it)."""
        self._defer("consumers", rows)

    def producers_many(self, docs: list[str]) -> dict[str, str]:
        return dict(self._many("SELECT name, producer FROM documents WHERE name IN ({}) AND producer IS NOT NULL",
                               docs))

    def consumers_many(self, docs: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for doc, des_id in self._many("SELECT doc, des_id FROM consumers WHERE doc IN ({})", docs):
            out.setdefault(doc, []).append(des_id)
        return out

    # ------------------------------------------------------------ names and groups
    def add_names(self, rows: list[tuple[str, str]]) -> None:
        """Documents first named now, with their group: (name, group). A name keeps its first group."""
        docs = self._keyed("docs")
        for name, group in rows:
            row = docs.get(name)
            if row is None:
                row = docs[name] = [name, *_UNSET]
            if row[7] is None:
                row[7] = group
                row[12] |= GROUP_PART

    def names_known(self, names: list[str]) -> set[str]:
        """Which of ``names`` were ever named as documents (every document, producer and reader row has one)."""
        return {r[0] for r in self._many(f"SELECT name FROM documents WHERE name IN ({{}}) AND {_NAMED}", names)}

    def group_of(self, name: str) -> str | None:
        rows = self._r("SELECT grp FROM documents WHERE name = CAST(? AS TEXT)", (to_sql(name),)).fetchall()
        return rows[0][0] if rows else None

    def group_members(self, group: str, offset: int, limit: int) -> list[tuple[str, int | None, str | None]]:
        """(name, version, producer) of a group's documents in name order, one page."""
        return self._r(
            "SELECT name, version, producer FROM documents WHERE grp = CAST(? AS TEXT) ORDER BY name "
            "LIMIT ? OFFSET ?", (to_sql(group), limit, offset),
        ).fetchall()

    def group_index(self, group: str, name: str) -> int:
        """How many documents of ``group`` sort before ``name``."""
        return self._r("SELECT count(*) FROM documents WHERE grp = CAST(? AS TEXT) AND name < CAST(? AS TEXT)",
                       (to_sql(group), to_sql(name))).fetchone()[0]

    def find_names(self, match: Any, limit: int) -> list[str]:
        """The first ``limit`` document names (in name order) for which ``match(name)`` is true."""
        out: list[str] = []
        cur = self._r(f"SELECT name FROM documents WHERE {_NAMED} ORDER BY name")
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
        rows = self._r(f"SELECT name FROM documents WHERE name >= CAST(? AS TEXT) AND {_NAMED} ORDER BY name "
                       "LIMIT ?", (to_sql(prefix), limit)).fetchall()
        return [name for (name,) in rows if name.startswith(prefix)]

    def all_names(self) -> Iterator[tuple[str, str, int | None, str | None]]:
        """Every document: (name, group, version, producer), for rebuilding group counts at start-up."""
        yield from self._r(f"SELECT name, grp, version, producer FROM documents WHERE {_NAMED}")
