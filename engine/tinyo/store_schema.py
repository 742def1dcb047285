"""Provides the state file's schema: its tables and the statements deferred to each commit (opening a
file, and upgrading an older one in place, is ``store_migrate``).

One row per document holds everything the store knows of that name: its version and the file state
behind it, its group in the console's tree, the DES that produces it, and the state of its file as
last taken in as an event (``seen_*``, which runs ahead of the version's state while the event waits
for the generators). Events are processed in id order, so which are processed is one number, the
watermark (the last ``processed`` row), and what each made is one row per commit for all the events it
processed; an event's own status is written only when it says more than that (a generator error, or an
event processed in the commit that stored it, whose row is written once, final)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

SCHEMA_VERSION = 6
PAGE_SIZE = 2048
"""The page size of a new state file (an older file keeps its own). A chain link's commit writes one page of each
b-tree it changes to the WAL, each frame checksummed and copied whole: half the default's bytes make a link's
commit about a tenth cheaper, where a burst's commit, spread over more pages, costs a per cent more
(``benchmarks/README.md``, "A chain link's pages"). Not smaller: a smaller page makes a burst dearer still, and
overflows the row of a DES with many deps."""
APP_ID = 0x54494E59  # "TINY": PRAGMA application_id marks the file as ours

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS documents(
    name TEXT PRIMARY KEY, version INTEGER, hash TEXT, mtime_ns INTEGER, size INTEGER, updated REAL, by TEXT,
    grp TEXT, producer TEXT, seen_mtime_ns INTEGER, seen_size INTEGER, seen_hash TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS documents_grp ON documents(grp, name) WHERE grp IS NOT NULL;
CREATE TABLE IF NOT EXISTS des(
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, deps TEXT NOT NULL, targs TEXT NOT NULL, ops_desc TEXT NOT NULL, ops BLOB,
    generator TEXT, event TEXT, created REAL NOT NULL, state TEXT NOT NULL, trace TEXT,
    failed_trace TEXT, forced INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 1, last_run INTEGER);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY, des_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT,
    start REAL, end REAL, status TEXT NOT NULL, error TEXT, traceback TEXT, output TEXT,
    dep_versions TEXT, result TEXT, des_n INTEGER, open_from INTEGER, prev_run INTEGER);
CREATE TABLE IF NOT EXISTS processed(last_id INTEGER PRIMARY KEY, first_id INTEGER NOT NULL, counts TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS timers(name TEXT PRIMARY KEY, last_tick REAL NOT NULL);
CREATE TABLE IF NOT EXISTS consumers(doc TEXT NOT NULL, des_id TEXT NOT NULL, PRIMARY KEY(doc, des_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests(
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, arg TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0);
"""

EVENTS_DONE = "(SELECT max(last_id) FROM processed)"
"""The watermark: every event with an id up to it has been through the generators (NULL: none yet). Each
commit that processed events adds one ``processed`` row for their id range, with how many DES each made
(``counts``, comma-separated, in id order; empty for an event whose row has a status of its own)."""
EVENT_STATUS = f"coalesce(status, CASE WHEN id <= {EVENTS_DONE} THEN 'done' ELSE 'new' END)"
"""An event's status as read: its own when it has one, else what the watermark says."""
OPEN_RUNS = ("runs WHERE id >= coalesce((SELECT open_from FROM runs ORDER BY id DESC LIMIT 1), 0) "
             "AND status IN ('queued', 'running')")
"""The runs that are open (queued or running), for a start (interrupted or adopted) and ``tinyo status``. Each run
row carries ``open_from``, the lowest id of the runs open once it was added (its own, or an older one still
open): no run inserted later exists, so every run open now has an id from the last row's ``open_from`` on,
and a start scans from there, by id (the table's own order): no index of the open runs, whose page every commit
that opens or ends a run would write again."""
RUN_CHAIN = ("WITH RECURSIVE chain(id, k) AS (SELECT last_run, 1 FROM des WHERE id = ?1 AND last_run IS NOT NULL "
             "UNION ALL SELECT r.prev_run, c.k + 1 FROM chain c JOIN runs r ON r.id = c.id "
             "WHERE r.prev_run IS NOT NULL AND c.k < ?2) SELECT id FROM chain")
"""The ids of a DES's last ``?2`` ended runs, newest first, by primary key alone: its row's ``last_run`` (its last
run to end) and each run's ``prev_run`` (the DES's run that ended before it), both written as the run ends, with the
rows that commit writes anyway (the run's end, the DES's new state). No index of the runs by DES, whose page every
link's commit would write. A pruned run ends the chain. A DES's open run is not in it yet (see ``OPEN_RUNS``)."""

DOC_COLUMNS = ("name", "version", "hash", "mtime_ns", "size", "updated", "by", "grp", "producer",
               "seen_mtime_ns", "seen_size", "seen_hash")
"""A deferred document row is a list of these, NULL where a part of it did not change this commit."""
DOC_PARTS = (
    # (its slots in a row, its assignments when the document's row exists)
    ((1, 2, 3, 4, 5, 6), "version = excluded.version, hash = excluded.hash, mtime_ns = excluded.mtime_ns, "
                         "size = excluded.size, updated = excluded.updated, by = excluded.by"),
    ((7,), "grp = coalesce(grp, excluded.grp)"),  # a name keeps its first group
    ((8,), "producer = excluded.producer"),
    ((9, 10, 11), "seen_mtime_ns = excluded.seen_mtime_ns, seen_size = excluded.seen_size, "
                  "seen_hash = excluded.seen_hash"),
)
"""The parts of a document's row: its version (and the file state behind it), its group, its producer, its
file as last taken in. A part is set when its version, group, producer or seen size is (never NULL then)."""
VERSION_PART, GROUP_PART, PRODUCER_PART, SEEN_PART = 1, 2, 4, 8
"""A deferred row's last item (after its columns) holds bit n when part n of DOC_PARTS is set: its setter
marks it (a part is never unset within a commit), so the flush groups rows by shape without looking."""
_DOC_TEXT = {0, 6, 7}  # name, by, grp: names, bound as their bytes when not UTF-8 (see tinyo.names)
_doc_shapes: dict[int, tuple[str, Callable[[list[Any]], tuple[Any, ...]], tuple[int, ...]]] = {}

DOC_VERSION_UPDATE = (
    "UPDATE documents SET version = ?2, hash = ?3, mtime_ns = ?4, size = ?5, updated = ?6, by = CAST(?7 AS TEXT) "
    "WHERE name = CAST(?1 AS TEXT)")
"""A new version of documents whose rows exist (the shape of version-only rows, bound as its upsert is): a
plain UPDATE seeks the row once, where the upsert tries an insert, finds the conflict and then updates."""
VERSION_ONLY = 1
"""The shape (see ``doc_statements``) of rows that set a version alone: a version for a name the store knows
already (its file as taken in, or its name and producer, were written by an earlier commit), as in a burst."""


def doc_statements(rows: Iterable[list[Any]]) -> Iterator[tuple[str, tuple[int, ...], list[tuple[Any, ...]], str | None]]:
    """The deferred document rows as (statement, text columns, rows, an UPDATE to try first or None), one
    statement per set of parts that changed: an upsert assigns only those columns, so the group index is not
    touched when the group is not."""
    by_shape: dict[int, list[list[Any]]] = {}
    for row in rows:
        shape = row[12]
        shaped = by_shape.get(shape)
        if shaped is None:
            by_shape[shape] = [row]
        else:
            shaped.append(row)
    for shape, shaped in by_shape.items():
        sql, take, text = _doc_shapes.get(shape) or _doc_shape(shape)
        yield sql, text, list(map(take, shaped)), DOC_VERSION_UPDATE if shape == VERSION_ONLY else None


def _doc_shape(shape: int) -> tuple[str, Callable[[list[Any]], tuple[Any, ...]], tuple[int, ...]]:
    """The upsert for a set of parts (bits as in ``doc_statements``), what it takes of a row, its text columns."""
    parts = [part for bit, part in enumerate(DOC_PARTS) if shape >> bit & 1]
    slots = (0, *(i for part_slots, _ in parts for i in part_slots))
    columns = ", ".join(DOC_COLUMNS[i] for i in slots)
    marks = ", ".join("CAST(? AS TEXT)" if i in _DOC_TEXT else "?" for i in slots)
    sets = ", ".join(assign for _, assign in parts)
    sql = f"INSERT INTO documents({columns}) VALUES ({marks}) ON CONFLICT(name) DO " + (
        f"UPDATE SET {sets}" if sets else "NOTHING")
    take = itemgetter(*slots) if len(slots) > 1 else lambda row: (row[0],)
    found = _doc_shapes[shape] = (sql, take, tuple(n for n, i in enumerate(slots) if i in _DOC_TEXT))
    return found


PREV_RUN = ("prev_run = CASE WHEN status IN ('queued', 'running') "
            "THEN (SELECT last_run FROM des WHERE des.id = runs.des_id) ELSE prev_run END")
"""A run's link to its DES's run that ended before it, set as it ends (see ``RUN_CHAIN``): its DES's ``last_run``
until then, which the same commit moves on to it (the DES updates are flushed after the runs' ends). A run that
has ended already keeps its link (``status`` is the row's before the update)."""

DEFERRED = {
    "events": "INSERT INTO events(id, ts, source, name, status, detail) VALUES (?, ?, ?, CAST(? AS TEXT), ?, CAST(? AS TEXT))",
    "events_mark": "UPDATE events SET status = ?, detail = CAST(? AS TEXT) WHERE id = ?",
    "processed": "INSERT OR REPLACE INTO processed(last_id, first_id, counts) VALUES (?, ?, ?)",
    "docs": "",  # one row per document and commit, by the parts that changed: see doc_statements
    "des": "INSERT OR IGNORE INTO des(id, deps, targs, ops_desc, ops, generator, event, created, state) "
           "VALUES (?, CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, CAST(? AS TEXT), CAST(? AS TEXT), ?, 'new')",
    "consumers": "INSERT OR IGNORE INTO consumers(doc, des_id) VALUES (CAST(? AS TEXT), ?)",
    "runs": "INSERT INTO runs(id, des_id, attempt, status, dep_versions, open_from) "
            "VALUES (?, ?, ?, 'queued', CAST(? AS TEXT), ?)",
    "runs_ok": "UPDATE runs SET status = 'ok', end = ?, error = NULL, traceback = NULL, output = CAST(? AS TEXT), "
               "result = CAST(? AS TEXT), worker = coalesce(?, worker), start = coalesce(?, start), "
               f"{PREV_RUN} WHERE id = ?",
    "runs_finish": "UPDATE runs SET status = ?, end = ?, error = CAST(? AS TEXT), traceback = CAST(? AS TEXT), "
                   "output = CAST(? AS TEXT), result = CAST(? AS TEXT), "
                   f"worker = coalesce(?, worker), start = coalesce(?, start), {PREV_RUN} WHERE id = ?",
    "des_update": "UPDATE des SET state = ?, trace = CAST(? AS TEXT), failed_trace = CAST(? AS TEXT), forced = ?, "
                  "attempt = ?, last_run = coalesce(?, last_run) WHERE id = ?",
    "des_ok": "UPDATE des SET state = 'ok', trace = CAST(? AS TEXT), failed_trace = NULL, forced = 0, attempt = 1, "
              "last_run = coalesce(?, last_run) WHERE id = ?",
    "ended": "UPDATE des SET last_run = ? WHERE id = ?",
    "timers": "INSERT INTO timers(name, last_tick) VALUES (CAST(? AS TEXT), ?) "
              "ON CONFLICT(name) DO UPDATE SET last_tick = max(last_tick, excluded.last_tick)",
}
"""Deferred statements, in the order they are flushed. Names and free text are bound in ``CAST(? AS TEXT)``
(see :mod:`tinyo.names`): the columns of each listed in TEXT_COLUMNS. A kind kept as a dict (documents and
DES updates by name, the ``processed`` row) writes one row per key and commit, the last one given. A run that
ends ok and its DES up to date (most rows, in a burst) have statements of their own that bind only what varies:
``runs_ok``, and ``des_ok``, which shares the DES updates' keys (``des_update``'s rows of two values). The DES
updates bind, as ``last_run``, the run of the DES that ended in this commit (``ended``, by DES: NULL for none);
``ended`` writes it alone for a DES without a new state in the commit."""

TEXT_COLUMNS = {"events": (3, 5), "events_mark": (1,), "des": (1, 2, 5, 6),
                "consumers": (0,), "des_update": (1, 2), "des_ok": (0,), "runs": (3,), "runs_ok": (1, 2),
                "runs_finish": (2, 3, 4, 5), "timers": (0,)}
"""The row positions of the deferred statements' names and free text (for :func:`tinyo.names.bindable`)."""


def statements(script: str) -> list[str]:
    """The statements of a schema script (none of ours has a ';' inside a statement)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def statement(script: str, head: str) -> str:
    """The one statement of ``script`` that starts with ``head``."""
    (found,) = [s for s in statements(script) if s.startswith(head)]
    return found
