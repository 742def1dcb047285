"""Provides the store's events (stored in order, processed in order: a watermark says which are done),
timer ticks and CLI requests."""

from __future__ import annotations

import sqlite3
from typing import Any

from .names import to_sql
from .store_base import StoreBase
from .store_schema import EVENT_STATUS, EVENTS_DONE


class EventsPart(StoreBase):
    """Events, timers and requests (see :class:`tinyo.store.Store`)."""

    _unflushed_events: dict[int, list[Any]]
    _next_event_id: int | None = None
    _events_done = 0
    """The watermark as this store last wrote or read it."""
    _ahead: set[int]
    """Events past the watermark processed already (out of order, which the engine does not do): the
    watermark moves over them when it gets there."""

    def _reset_pending(self) -> None:
        super()._reset_pending()
        self._unflushed_events = {}
        self._batch: list[Any] | None = None
        """[first id, last id, DES counts] of the events processed since the last flush."""

    def _opened(self) -> None:
        super()._opened()
        self._events_done = done = self.conn.execute(f"SELECT coalesce({EVENTS_DONE}, 0)").fetchone()[0]
        self._ahead = {r[0] for r in self.conn.execute(
            "SELECT id FROM events WHERE id > ? AND status IS NOT NULL", (done,))}

    def _rolled_back(self) -> None:
        super()._rolled_back()
        self._next_event_id = None
        try:
            self._opened()
        except sqlite3.Error:
            pass  # a broken file: the engine stops on the error that rolled back

    # ------------------------------------------------------------ events
    def add_events(self, rows: list[tuple[float, str, str, str]]) -> list[int]:
        """Insert (ts, source, name, status) rows; return their ids in order. A ``"new"`` event's row has
        no status of its own: the watermark says when it is processed."""
        if self._next_event_id is None:
            self._next_event_id = (self.conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1
        first = self._next_event_id
        self._next_event_id += len(rows)
        new = [[first + i, ts, source, name, None if status == "new" else status, None]
               for i, (ts, source, name, status) in enumerate(rows)]
        self._defer("events", new)
        for row in new:
            self._unflushed_events[row[0]] = row
        return list(range(first, first + len(rows)))

    def mark_events(self, rows: list[tuple[str, str | None, int]]) -> None:
        """Events processed, with their (status, detail, id). The engine processes events in the order they
        were stored, so the watermark moves past them and the commit's ``processed`` row takes their DES
        counts; an event's own row is written only when it is not flushed yet (its insert carries the status),
        when its status says more than "done, N DES", or when it is processed before an event stored ahead of
        it (the watermark cannot pass that one yet: it moves over this one later, when it gets there)."""
        later = []
        batch = self._batch
        ahead = self._ahead
        for status, detail, event_id in rows:
            done = self._events_done
            next_in_line = event_id == done + 1
            count = ""
            pending = self._unflushed_events.get(event_id)
            if pending is not None:
                pending[4], pending[5] = status, detail
            elif next_in_line and status == "done" and detail is not None and detail[-4:] == " DES" \
                    and detail[:-4].isdigit():
                count = detail[:-4]
            else:
                later.append((status, detail, event_id))
            if not next_in_line:
                if event_id > done:
                    ahead.add(event_id)
                continue
            if batch is None:
                batch = self._batch = [event_id, done, []]
            batch[2].append(count)
            done = event_id
            while done + 1 in ahead:  # processed earlier, out of order: their rows say so
                ahead.discard(done + 1)
                batch[2].append("")
                done += 1
            batch[1] = self._events_done = done
        if later:
            self._defer("events_mark", later)
        if batch is not None:
            self._keyed("processed")[0] = (batch[1], batch[0], ",".join(batch[2]))

    def new_events(self, after_id: int, limit: int) -> list[tuple[int, float, str, str]]:
        """Stored events not yet processed, oldest first: (id, ts, source, name)."""
        return self._r(
            f"SELECT id, ts, source, name FROM events WHERE id > max(?, coalesce({EVENTS_DONE}, 0)) "
            "AND status IS NULL ORDER BY id LIMIT ?", (after_id, limit),
        ).fetchall()

    def pending_events(self) -> int:
        """How many stored events are not processed yet."""
        return self._r(f"SELECT count(*) FROM events WHERE id > coalesce({EVENTS_DONE}, 0) AND status IS NULL"
                       ).fetchone()[0]

    def recent_events(self, limit: int) -> list[tuple[int, float, str, str, str, str | None]]:
        """The last ``limit`` events, oldest first: (id, ts, source, name, status, detail)."""
        rows = self._r(
            f"SELECT id, ts, source, name, {EVENT_STATUS}, detail, status IS NULL FROM events ORDER BY id DESC LIMIT ?",
            (limit,)).fetchall()[::-1]
        done = [r[0] for r in rows if r[6] and r[4] == "done"]
        counts = self._counts(done[0], done[-1]) if done else {}
        return [(i, ts, source, name, status, f"{counts[i]} DES" if counts.get(i) else detail)
                for i, ts, source, name, status, detail, _ in rows]

    def _counts(self, first: int, last: int) -> dict[int, str]:
        """The DES count recorded for each processed event from ``first`` to ``last`` (by id)."""
        out: dict[int, str] = {}
        for last_id, first_id, counts in self._r(
                "SELECT last_id, first_id, counts FROM processed WHERE last_id >= ? AND first_id <= ? ORDER BY last_id",
                (first, last)):
            out.update(zip(range(first_id, last_id + 1), counts.split(",")))
        return out

    def prune_events(self, keep: int) -> int:
        """Delete the oldest processed events beyond the last ``keep`` (and their ``processed`` rows, but the
        last: it holds the watermark)."""
        removed = self._w(f"DELETE FROM events WHERE id <= coalesce({EVENTS_DONE}, 0) "
                          "AND id <= (SELECT max(id) FROM events) - ?", (keep,)).rowcount
        if removed:
            self._w(f"DELETE FROM processed WHERE last_id < {EVENTS_DONE} "
                    "AND last_id < coalesce((SELECT min(id) FROM events), 0)")
        return removed

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
