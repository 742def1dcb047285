"""Provides the store's DES (what the generators emitted, their state and trace) and their runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from .store_docs import DocumentsPart
from .store_rows import RunRow, StoredDES, jlist, jmap, jset, stored_des
from .store_schema import OPEN_RUNS, RUN_CHAIN

_DES_COLUMNS = "id, deps, targs, ops_desc, ops, generator, event, state, trace, failed_trace, forced, attempt"
_RUN_COLUMNS = "id, des_id, attempt, worker, start, end, status, error, traceback, output, result"


@lru_cache(maxsize=256)
def _ops_json(ops_desc: tuple[str, ...]) -> str:
    """The JSON column of a DES's op names, once per distinct list (generators give many DES the same ops)."""
    return jlist(ops_desc)


class DESPart(DocumentsPart):
    """DES and runs (see :class:`tinyo.store.Store`)."""

    _run_des: dict[int, str]
    """The DES of each run this store queued that has not ended yet (so a run's end names its DES, which the
    commit links it to, without a look-up): as many as the runs open."""

    def _opened(self) -> None:
        super()._opened()
        self._run_des = {}

    def _rolled_back(self) -> None:
        super()._rolled_back()
        self._run_des = {}  # runs the dropped transaction queued are gone; older open runs are looked up by id

    # ------------------------------------------------------------ DES
    def add_des(self, rows: list[tuple[str, frozenset[str], frozenset[str], tuple[str, ...], bytes | None, str, str, float]]) -> None:
        """Insert new DES: (id, deps, targs, ops_desc, ops_blob, generator, event, created), with the reverse
        index (document -> producer, in the document's row; document -> readers)."""
        self._defer("des", [(i, jset(d), jset(t), _ops_json(o), b, g, e, c) for i, d, t, o, b, g, e, c in rows])
        self.add_producers([(t, row[0]) for row in rows for t in row[2]])
        self.add_consumers([(d, row[0]) for row in rows for d in row[1]])

    def des_existing(self, des_ids: list[str]) -> set[str]:
        return {r[0] for r in self._many("SELECT id FROM des WHERE id IN ({})", des_ids)}

    def des_lookup(self, des_id: str) -> StoredDES | None:
        row = self._one(f"SELECT {_DES_COLUMNS} FROM des WHERE id = ?", (des_id,))
        return None if row is None else stored_des(row)

    def des_row(self, des_id: str) -> StoredDES | None:
        """A DES as stored, after the deferred writes (``des_lookup`` without the flush)."""
        self.flush()
        return self.des_lookup(des_id)

    def update_des(self, rows: list[tuple[Any, ...]]) -> None:
        """Set the state of DES: rows are (state, trace, failed_trace, forced, id), or with the next attempt
        number before the id (a retry waiting for its backoff keeps its count across a restart), or (trace, id)
        with the trace as ``jmap`` gives it for ("ok", trace, None, False, id): a DES whose run ended ok (its run
        row's text reused), written by a statement of its own that binds only those two (``des_ok``). A DES
        changed several times before a commit is written once, as it was last."""
        updates = self._keyed("des_update")
        for r in rows:
            if len(r) == 2:
                updates[r[1]] = r
            else:
                updates[r[-1]] = (r[0], jmap(r[1]), jmap(r[2]), int(r[3]), r[4] if len(r) == 6 else 1, r[-1])

    def load_des(self) -> Iterator[StoredDES]:
        for row in self._r(f"SELECT {_DES_COLUMNS} FROM des"):
            yield stored_des(row)

    def load_open_des(self) -> Iterator[StoredDES]:
        """The DES that may need work: every one not up to date by its record (failed, cancelled, waiting to
        retry, never built, rerun asked for) and every up-to-date one whose deps changed since its last success
        (the comparison runs inside SQLite, so a start does not build the whole DAG in Python)."""
        cols = ", ".join(f"d.{c.strip()}" for c in _DES_COLUMNS.split(","))
        yield from (stored_des(r) for r in self._r(
            f"SELECT {cols} FROM des d WHERE d.state != 'ok' OR d.forced != 0 OR d.trace IS NULL "
            "OR EXISTS (SELECT 1 FROM json_each(d.deps) j LEFT JOIN documents doc ON doc.name = j.value "
            "WHERE doc.version IS NOT (SELECT t.value FROM json_each(d.trace) t WHERE t.key = j.value))"))

    # ------------------------------------------------------------ runs
    def next_run_id(self) -> int:
        return (self._r("SELECT max(id) FROM runs").fetchone()[0] or 0) + 1

    def add_runs(self, rows: list[tuple[int, str, int, str]], open_from: int = 0) -> None:
        """Insert runs queued, as (id, des_id, attempt, dep_versions as ``jmap`` gives them). ``open_from``: the
        lowest id of the runs open once these are added (see ``store_schema.OPEN_RUNS``); 0, not known, makes the
        next start look at every run."""
        self._defer("runs", [(*row, open_from) for row in rows])
        run_des = self._run_des
        for row in rows:
            run_des[row[0]] = row[1]

    def finish_runs(self, rows: list[tuple[Any, ...]]) -> None:
        """(status, end, error, traceback, output, result, worker, start, id), or without the start; a worker or
        start of None keeps what the run's row has. A run's start is written with its end: while it runs, it is
        open (queued or running, the same to a restart: interrupted, and dispatched again)."""
        self._end("runs_finish", [r if len(r) == 9 else (*r[:7], None, r[7]) for r in rows])

    def runs_ok(self, rows: list[tuple[Any, ...]]) -> None:
        """Runs that ended ok, as (end, output, result, worker, start, id): ``finish_runs`` of ("ok", end, None,
        None, output, result, worker, start, id), in the statement of its own that binds only these."""
        self._end("runs_ok", rows)

    def _end(self, kind: str, rows: list[tuple[Any, ...]]) -> None:
        """Defer the rows of runs that end (each row's last item is its run's id), each run to be linked to its
        DES's run that ended before it (``store_schema.RUN_CHAIN``): the commit moves its DES's ``last_run`` on
        to it (``ended``, by DES). A run that has ended already is not linked again: its DES's chain stays as it
        is (a second link would point the run at itself and drop the runs before it)."""
        ended = self._keyed("ended")
        run_des = self._run_des
        start = 0
        for i, row in enumerate(rows):
            run_id = row[-1]
            des_id = run_des.pop(run_id, None)
            if des_id is None:  # a run queued by an earlier engine, or one that has ended already
                found = self._one("SELECT des_id, status FROM runs WHERE id = ?", (run_id,))
                if found is None or found[1] not in ("queued", "running"):
                    continue
                des_id = found[0]
            if des_id in ended:  # its DES's run before it ends in this commit too: written first, to link to
                self._defer(kind, rows[start:i])
                self.flush()
                ended = self._keyed("ended")
                start = i
            ended[des_id] = run_id
        self._defer(kind, rows[start:] if start else rows)

    def run_status(self, run_id: int) -> str | None:
        """The stored status of run ``run_id`` (None: no such run)."""
        row = self._r("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def open_runs(self) -> list[tuple[int, str]]:
        return self._r(f"SELECT id, des_id FROM {OPEN_RUNS} ORDER BY id").fetchall()

    def open_runs_full(self) -> list[tuple[int, str, int, dict[str, int]]]:
        """Open runs as (id, des_id, attempt, dep_versions)."""
        rows = self._r(
            f"SELECT id, des_id, attempt, dep_versions FROM {OPEN_RUNS} ORDER BY id"
        ).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3] or "{}")) for r in rows]

    def last_error(self, des_id: str) -> str:
        """The error of the DES's latest run to end ('' if none, or none ended)."""
        row = self._r("SELECT error FROM runs WHERE id = (SELECT last_run FROM des WHERE id = ?)", (des_id,)).fetchone()
        return (row[0] or "") if row else ""

    def runs_for(self, des_id: str, limit: int = 50) -> list[RunRow]:
        """The DES's last ``limit`` runs, oldest first: those ended, through their chain (``RUN_CHAIN``), and those
        open, among the open runs (``OPEN_RUNS``, the runs a start looks at)."""
        rows = self._r(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id IN ({RUN_CHAIN}) UNION ALL "
                       f"SELECT {_RUN_COLUMNS} FROM {OPEN_RUNS} AND des_id = ?1 ORDER BY id DESC LIMIT ?2",
                       (des_id, limit)).fetchall()
        return [RunRow(*r) for r in rows[::-1]]

    def recent_runs(self, limit: int) -> list[RunRow]:
        rows = self._r(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [RunRow(*r) for r in rows[::-1]]

    def run_counts(self) -> dict[str, int]:
        return dict(self._r("SELECT status, count(*) FROM runs GROUP BY status").fetchall())

    def prune_runs(self, keep: int) -> int:
        """Delete the oldest finished runs beyond the last ``keep``."""
        return self._w("DELETE FROM runs WHERE status NOT IN ('queued', 'running') "
                       "AND id <= (SELECT max(id) FROM runs) - ?", (keep,)).rowcount
