"""Provides ``EventStream``, the bottom layer of the console's state: the event stream and the output pane.

It keeps the newest rows of each (bounded deques), indexes the stream's rows by event id and name so
later facts about an event (a generator's error, its DES) update its row in place, and counts the
events received for the header's rate. The layers above (``state_documents``, ``state_work``) build on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Literal, TypeVar

from tinyo import events as ev

from .state_rows import _RATE_WINDOW, MAX_EVENT_ROWS, MAX_OUTPUT_ROWS, Changes, EventRow, OutputRow, RowKind

R = TypeVar("R", EventRow, OutputRow)


class EventStream:
    """The event stream's and output pane's rows. Call on the UI thread only."""

    def __init__(self, *, max_events: int = MAX_EVENT_ROWS, max_output: int = MAX_OUTPUT_ROWS) -> None:
        self.events: deque[EventRow] = deque(maxlen=max_events)
        self.events_dropped = 0
        """Rows that fell off the top of the stream (still in the store)."""
        self._event_by_id: dict[int, EventRow] = {}
        self._event_by_name: dict[str, EventRow] = {}
        self.output: deque[OutputRow] = deque(maxlen=max_output)
        self.output_dropped = 0
        self.events_total = 0
        self._recent: deque[float] = deque(maxlen=20_000)
        # one numbering for both panes' rows: a row's seq says where it goes among all the others
        self._seq = count()
        self._answered: set[int] = set()
        """Line numbers of the output lines a resync's answer showed (``merge_output``)."""
        self._answered_upto = 0
        self._answered_events: set[int] = set()
        """Ids of the events a resync's answer put in the stream (their facts, held after the gap, come later)."""
        self._answered_events_upto = 0
        """The highest of ``_answered_events`` (kept, not searched for on each fact)."""
        self._newest_event = 0
        """The highest event id in the stream: an event older than it arrives only after a resync."""
        self._late: list[EventRow] = []
        """Events of this batch older than one shown: put in their place at the batch's end (``place_late``)."""

    def events_per_s(self, now: float) -> float:
        """Events received per second over the last few seconds (by the engine clock)."""
        recent = self._recent
        while recent and recent[0] < now - _RATE_WINDOW:
            recent.popleft()
        return len(recent) / _RATE_WINDOW

    def note(self, line: str, kind: Literal["cmd", "info", "error"], ts: float) -> OutputRow:
        """Add a console line (an echoed CLI command, an info or error note) to the output pane."""
        row = OutputRow(next(self._seq), ts, kind, line)
        self._append_output(row)
        return row

    def prepend(self, events: list[EventRow], output: list[OutputRow]) -> None:
        """Put rows from the state file before this session's (numbered below them: negative seqs)."""
        for rows, target in ((events, self.events), (output, self.output)):
            room = (target.maxlen or 0) - len(target)
            rows = rows[-room:] if room > 0 else []
            for offset, row in enumerate(rows):
                row.seq = offset - len(rows)
            target.extendleft(reversed(rows))  # type: ignore[arg-type]
        for row in events:
            if row.event_id is not None and row.seq < 0:
                self._event_by_id.setdefault(row.event_id, row)
                self._event_by_name.setdefault(row.name, row)

    def replace_events(self, rows: list[EventRow]) -> None:
        """Show ``rows`` (oldest first; the newest that fit) instead of the stream, renumbered after every row
        so far (a resync put missed events among them: the panes rebuild their views)."""
        kept = rows[-(self.events.maxlen or len(rows)):]
        self.events_dropped += len(rows) - len(kept)
        self.events.clear()
        self._event_by_id.clear()
        self._event_by_name.clear()
        for row in kept:
            row.seq, row.version = next(self._seq), row.version + 1
            self._append_event(row)
        self._newest_event = max((row.event_id for row in kept if row.event_id is not None), default=0)

    def _append_output(self, row: OutputRow) -> None:
        if len(self.output) == self.output.maxlen:
            self.output_dropped += 1
        self.output.append(row)

    def _append_event(self, row: EventRow) -> None:
        if len(self.events) == self.events.maxlen:
            old = self.events[0]
            self.events_dropped += 1
            if old.event_id is not None and self._event_by_id.get(old.event_id) is old:
                del self._event_by_id[old.event_id]
            if self._event_by_name.get(old.name) is old:
                del self._event_by_name[old.name]
        self.events.append(row)
        if row.event_id is not None:
            self._event_by_id[row.event_id] = row
        if row.kind in ("event", "timer"):
            self._event_by_name[row.name] = row

    # ------------------------------------------------------------------ handlers
    def _on_received(self, e: ev.EventReceived, ch: Changes) -> None:
        event_id = e.event_id
        if event_id in self._answered_events:  # a resync's answer showed it already: once
            shown = self._event_by_id.get(event_id)
            if shown is not None and e.des_count is not None and shown.des_count != e.des_count:
                shown.des_count, shown.version = e.des_count, shown.version + 1
                ch.updated_events = True
            if event_id >= self._answered_events_upto:
                self._answered_events.clear()  # the stream is past the answer: none of it can come again
                self._answered_events_upto = 0
            return
        self.events_total += 1
        self._recent.append(e.ts)
        kind: RowKind = "timer" if e.source == "timer" else "event"
        # the time shown is when the event happened (was taken in), not when the generators saw it
        happened = e.taken if e.taken is not None else e.ts
        row = EventRow(next(self._seq), happened, kind, e.source, e.name, event_id=event_id, des_count=e.des_count)
        if event_id < self._newest_event:
            self._late.append(row)  # a resync's answer showed newer ones first: it goes in its place
        else:
            self._newest_event = event_id
            self._append_event(row)
        ch.new_events += 1
        ch.header = True

    def place_late(self, ch: Changes) -> None:
        """Put the batch's events that came after newer ones (a resync's) in their place, in event order."""
        if self._late:
            late, self._late = self._late, []
            self.replace_events(merged_events(list(self.events), late))
            ch.reloaded = True

    def merge_events(self, rows: list[EventRow], ch: Changes) -> int:
        """Put the engine's recent events ``rows`` that the stream lacks among its rows, by event id: the events
        of a gap in the facts, not those older than the oldest it shows nor those it has; those whose facts
        come afterwards are not shown twice. How many went in."""
        known = {row.event_id for row in self.events if row.event_id is not None}
        oldest = min(known, default=0)
        missing = [row for row in rows
                   if row.event_id is not None and row.event_id > oldest and row.event_id not in known]
        if missing:
            self.replace_events(merged_events(list(self.events), missing))
            ids = [row.event_id for row in missing if row.event_id is not None]
            self._answered_events.update(ids)  # their facts may still come: shown once
            self._answered_events_upto = max(self._answered_events_upto, *ids)
            ch.reloaded = ch.header = True
        return len(missing)

    def _on_generator_error(self, e: ev.GeneratorError, ch: Changes) -> None:
        row = self._event_by_name.get(e.event)
        if row is not None:
            row.errors.append((e.generator, e.error, e.traceback))
            row.version += 1
            ch.updated_events = True
        else:
            self._append_event(EventRow(next(self._seq), e.ts, "error", e.generator, e.event,
                                        errors=[(e.generator, e.error, e.traceback)]))
            ch.new_events += 1

    def _on_rejected(self, e: ev.DESRejectedEvent, ch: Changes) -> None:
        row = EventRow(next(self._seq), e.ts, "rejected", e.generator, e.event,
                       errors=[(e.generator, f"DES {e.des_id[:8]} rejected: {e.reason}", "")])
        self._append_event(row)
        ch.new_events += 1

    def _on_notice(self, e: ev.EngineNotice, ch: Changes) -> None:
        self._append_event(EventRow(next(self._seq), e.ts, "notice", e.level, e.message))
        ch.new_events += 1
        ch.notices.append((e.level, e.message))

    def _on_output(self, e: ev.OpOutput, ch: Changes) -> None:
        if self._answered:
            if e.line_no in self._answered:
                return  # a resync's answer had this line already (it came after the gap)
            if e.line_no > self._answered_upto:
                self._answered.clear()  # the stream is past the answer: no line of it can come again
        self._append_output(OutputRow(next(self._seq), e.ts, e.stream, e.line, e.op, e.worker,
                                      e.des_id, e.run_id, e.line_no))
        ch.new_output += 1

    def merge_output(self, lines: list[ev.OpOutput], ch: Changes) -> int:
        """Put the engine's recent output ``lines`` (oldest first) that this pane lacks among its rows, by
        line number: the lines of a gap in the facts, not those older than the oldest it shows nor those
        it has; those of the lines that come again as facts afterwards are not shown twice. How many went in."""
        numbered = [e for e in lines if e.line_no]
        self._answered = {e.line_no for e in numbered}
        self._answered_upto = max(self._answered, default=0)
        known = {row.line_no for row in self.output if row.line_no}
        oldest = min(known, default=0)
        missing = [OutputRow(0, e.ts, e.stream, e.line, e.op, e.worker, e.des_id, e.run_id, e.line_no)
                   for e in numbered if e.line_no > oldest and e.line_no not in known]
        if not missing:
            return 0
        merged = merged_in(list(self.output), sorted(missing, key=_line_no), _line_no)
        kept = merged[-(self.output.maxlen or len(merged)):]
        self.output_dropped += len(merged) - len(kept)
        self.output.clear()
        for row in kept:  # renumbered after every row so far: the panes rebuild their views
            row.seq = next(self._seq)
            self.output.append(row)
        ch.reloaded = True
        return len(missing)

    def forget_line_numbers(self) -> None:
        """The engine that numbered the output lines has gone: the next one numbers its own from 1 (and its
        events are its own: a state file made anew numbers them from 1 too)."""
        for row in self.output:
            row.line_no = 0
        self._answered.clear()
        self._answered_events.clear()
        self._answered_events_upto = 0
        self._newest_event = 0


def merged_in(rows: list[R], missing: list[R], key: Callable[[R], int]) -> list[R]:
    """``missing`` (sorted by ``key``) put among ``rows``: each before the first row whose key is later
    (rows whose key is 0, not numbered, are passed over)."""
    merged: list[R] = []
    waiting = iter(missing)
    pending = next(waiting, None)
    for row in rows:
        number = key(row)
        while pending is not None and number and key(pending) < number:
            merged.append(pending)
            pending = next(waiting, None)
        merged.append(row)
    if pending is not None:
        merged.append(pending)
        merged.extend(waiting)
    return merged


def merged_events(rows: list[EventRow], missing: list[EventRow]) -> list[EventRow]:
    """``missing`` put among ``rows`` in event order."""
    return merged_in(rows, sorted(missing, key=_event_id), _event_id)


def _event_id(row: EventRow) -> int:
    return row.event_id or 0


def _line_no(row: OutputRow) -> int:
    return row.line_no
