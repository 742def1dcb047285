"""Provides the headless reporters: a readable live log and JSON lines.

The engine never prints: reporters subscribe to the bus. A subscriber call (on the engine's thread)
only appends the fact to a batch under a lock; a printer thread of the reporter's own formats the batch
and writes it at once. The text log prints one line per event while a person can read them (at most
``READABLE`` lines a second), then one summary line per second (events, runs ok and failed, failures
by name); failures are always printed on lines of their own. It never holds the engine up: past
``PENDING_MAX`` waiting facts it only counts what it would not print anyway. The JSON log prints every
fact (a batch per write), so a reader that falls far behind holds the engine up instead; its printer
thread only hands each batch, as rows, to a printer process that encodes and writes it (``tinyo.jsonlog``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import IO, TYPE_CHECKING

from . import events as ev
from .control.factwire import json_lines
from .text import printable

if TYPE_CHECKING:
    from .jsonlog import JsonPrinter

READABLE = 20
"""Lines a second printed one by one; past that, the rest of the second is summed up in one line."""
PENDING_MAX = 20_000
"""Facts waiting for the printer; past it the text log counts what it would not print anyway (failures
still wait, up to FAILURES_MAX), and the JSON log holds the engine up."""
FAILURES_MAX = 5_000
"""Failures waiting to be printed, past which further ones are only counted (by name) in the summary."""
GATHER = 0.05
"""Seconds the text log's printer lets facts gather after the first of a batch arrives (its latency)."""
TICK = 0.05
"""Seconds between looks at the batch when nothing wakes the printer (it is woken on every fact)."""

_ALWAYS = (ev.OpFailed, ev.GeneratorError, ev.DESRejectedEvent)
_PRINTED = frozenset({ev.OpOutput, ev.EventReceived, ev.GeneratorError, ev.DESRejectedEvent, ev.OpStarted,
                      ev.OpFinished, ev.OpFailed, ev.OpCancelled, ev.TimerFired, ev.EngineState, ev.EngineNotice})
"""Facts with a line in the text log (besides DESRegistered unless restored, and a worker's death)."""
_VERBOSE = frozenset({ev.DESStateChanged, ev.DocumentUpdated})
"""Facts with a line only in the verbose text log."""
_FOLDING = frozenset({ev.EventReceived, ev.DESRegistered, ev.OpFinished})
"""Facts that may tell what a fact of ``_VERBOSE`` would (``events.folded_versions``, ``events.folded_state``):
the verbose log prints that fact's line after theirs."""


_FAILING = frozenset({*_ALWAYS, ev.EngineNotice, ev.WorkerChanged})
"""Fact types of which some (or all) are failures: a batch with none of them has no failure (told at C speed)."""


def is_failure(event: ev.BusEvent) -> bool:
    """Printed whatever the rate: a failed run, a generator error, a rejected DES, an error notice, a
    worker that died."""
    if isinstance(event, _ALWAYS):
        return True
    if isinstance(event, ev.EngineNotice):
        return event.level == "error"
    return isinstance(event, ev.WorkerChanged) and event.state == "dead"


class _Batcher:
    """The subscriber half (any thread appends) and the printer thread (takes whole batches)."""

    gather = 0.0
    """Seconds the printer waits after the first fact of a batch for more to join it."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Condition(threading.Lock())
        self._pending: list[ev.BusEvent] = []
        self._closing = False
        self._gone = False  # the reader went away (a closed pipe): batches are dropped, the engine goes on
        self._thread = threading.Thread(target=self._loop, name="tinyo-reporter", daemon=True)
        self._thread.start()

    def __call__(self, event: ev.BusEvent) -> None:
        self.many([event])

    def many(self, events: list[ev.BusEvent]) -> None:
        """The bus's batch subscriber: a cycle's facts under one lock, one wake-up of the printer."""
        with self._lock:
            admit = self._admit
            for event in events:
                if admit(event):
                    pending = self._pending  # a fresh list after the printer took a batch (JSON waits for room)
                    pending.append(event)
                    if len(pending) == 1:
                        self._lock.notify()

    def attach(self, bus: ev.Bus) -> Callable[[], None]:
        """Subscribe to ``bus`` (a batch of facts per call); returns the unsubscribe function."""
        return bus.subscribe_batches(self.many)

    def _admit(self, event: ev.BusEvent) -> bool:
        """Called under the lock: False to keep ``event`` out of the batch (it was counted instead)."""
        return True

    def close(self) -> None:
        """Print what is waiting, then stop the printer thread."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._closing:
                    self._lock.wait(self._timeout())
                if self._pending and not self._closing and self.gather:
                    # let the facts of the next few cycles join this batch: the engine then wakes this thread
                    # (and hands it the interpreter) a few times a second, not once per cycle. A close ends
                    # the wait: what is pending is printed at once, and the command exits without waiting.
                    self._lock.wait_for(lambda: self._closing, self.gather)
                batch, self._pending = self._pending, []
                closing = self._closing
                self._lock.notify_all()  # a subscriber waiting for room (JSON) may go on
            if not self._gone:
                try:
                    self._write(batch, closing)
                except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
                    self._gone = True
            if closing:
                return

    def _timeout(self) -> float | None:
        return None

    def _write(self, batch: list[ev.BusEvent], closing: bool) -> None:
        raise NotImplementedError


class JsonReporter(_Batcher):
    """One JSON object per bus event, one per line; each batch in one write. The engine's thread only hands
    its batch over. Printing to this process's standard output (``tinyo run --json``), the batch goes as rows
    to a printer process that encodes and writes it (``tinyo.jsonlog``); to another stream, it is encoded
    here, by one C call (``factwire.json_lines``): the same bytes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._printer: JsonPrinter | None = None
        if stream is None:
            from .jsonlog import JsonPrinter

            try:
                self._printer = JsonPrinter()
            except OSError:  # no process to be had (a process limit): the lines are encoded here
                self._printer = None
        super().__init__(stream)

    def many(self, events: list[ev.BusEvent]) -> None:
        if not events:
            return
        with self._lock:
            while len(self._pending) >= PENDING_MAX and not self._closing:
                self._lock.wait()  # every fact is printed: a reader far behind holds the engine up
            pending = self._pending
            if not pending:
                self._lock.notify()
            pending.extend(events)

    def close(self) -> None:
        super().close()
        if self._printer is not None:
            self._printer.close()

    def _write(self, batch: list[ev.BusEvent], closing: bool) -> None:
        if self._printer is not None:
            if batch:
                try:
                    self._printer.send(batch)
                except OSError as exc:  # the printer ended (its reader went away), or was ended at a close
                    raise BrokenPipeError(str(exc)) from exc
            return
        if batch:
            self.stream.write(json_lines(batch))
        self.stream.flush()


class Tally:
    """What the text log did not print one by one in a second, for its summary line."""

    def __init__(self) -> None:
        self.hidden = 0
        self.kinds: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def add(self, event: ev.BusEvent) -> None:
        self.hidden += 1
        self.kinds[event.kind] += 1

    def add_counts(self, counts: Counter[type]) -> None:
        """Facts counted by type (a batch's rest, the window being full), none of them a failure."""
        for kind, count in counts.items():
            if count:
                self.hidden += count
                self.kinds[kind.kind] += count  # type: ignore[attr-defined]

    def failed(self, name: str, hidden: bool) -> None:
        """A failure in this second (printed on its own line, or ``hidden`` past FAILURES_MAX)."""
        self.hidden += hidden
        self.failures[name] += 1

    def merge(self, other: Tally) -> None:
        self.hidden += other.hidden
        self.kinds.update(other.kinds)
        self.failures.update(other.failures)

    def line(self, window: float) -> str:
        """``1,200 lines not shown in 1.0 s: 400 events, 395 ok, 5 failed (load x3, clean x2), ...``."""
        kinds = self.kinds
        parts = [f"{kinds['event_received']:,} events", f"{kinds['op_finished']:,} ok",
                 f"{sum(self.failures.values()):,} failed"]
        if self.failures:
            parts[-1] += " (" + ", ".join(f"{printable(n)} x{c:,}" for n, c in self.failures.most_common(5)) + ")"
        for kind, label in (("op_started", "started"), ("op_output", "output lines"), ("des_registered", "DES")):
            if kinds[kind]:
                parts.append(f"{kinds[kind]:,} {label}")
        return f"{self.hidden:,} lines not shown in {window:.1f} s: " + ", ".join(parts)


class TextReporter(_Batcher):
    """A readable live log in plain text. Op output prints whole on its own line after ``op[worker] |``."""

    gather = GATHER  # a person reads it: 50 ms later is as soon (a script reading --json gets each cycle at once)

    def __init__(self, stream: IO[str] | None = None, *, debug: bool = False, color: bool | None = None,
                 verbose: bool = False, readable: int = READABLE, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        out = stream or sys.stdout
        if color is None:
            color = "NO_COLOR" not in os.environ and bool(getattr(out, "isatty", lambda: False)())
        self.color = color
        self.debug = debug
        self.verbose = verbose
        self.readable = readable
        self.clock = clock
        self.wall = wall
        self._window_start = clock()
        self._window_lines = 0
        self._window = Tally()
        self._overflow = Tally()  # counted by the subscriber when the printer is far behind (under its lock)
        self._waiting_failures = 0
        self._kinds: dict[type, bool | None] = {kind: True for kind in _PRINTED}
        """Fact type -> printed (True), never (absent), or it depends on the fact (None)."""
        self._kinds.update({ev.DESRegistered: None, ev.WorkerChanged: None})
        if verbose:
            self._kinds.update(dict.fromkeys(_VERBOSE, True))
        super().__init__(out)

    # ------------------------------------------------------------ subscriber side (engine thread)
    def _prints(self, event: ev.BusEvent) -> bool:
        """Whether ``event`` has a line in this log (told without formatting it)."""
        kind = type(event)
        if kind in _PRINTED:
            return True
        if kind is ev.DESRegistered:
            return not event.restored  # type: ignore[attr-defined]
        if kind is ev.WorkerChanged:
            return event.state == "dead"  # type: ignore[attr-defined]
        return self.verbose and kind in _VERBOSE

    def many(self, events: list[ev.BusEvent]) -> None:
        """Only facts with a line are handed to the printer (the rest are neither printed nor counted): most
        of a burst's facts (state changes, versions, queued, processed) are dropped here by their type alone."""
        kinds, prints = self._kinds, self._prints
        wanted = [e for e in events if (k := kinds.get(type(e), False)) is True or (k is None and prints(e))]
        if not wanted:
            return
        with self._lock:
            pending = self._pending
            if len(pending) + len(wanted) <= PENDING_MAX:  # the usual case: the whole batch at once
                if not _FAILING.isdisjoint(map(type, wanted)):
                    self._waiting_failures += sum(1 for e in wanted if is_failure(e))
                if not pending:
                    self._lock.notify()
                pending.extend(wanted)
                return
        super().many(wanted)  # the printer is far behind: fact by fact, counting what it would not print

    def _admit(self, event: ev.BusEvent) -> bool:
        if len(self._pending) < PENDING_MAX:
            if is_failure(event):
                self._waiting_failures += 1
            return True
        if is_failure(event):
            if self._waiting_failures < FAILURES_MAX:
                self._waiting_failures += 1
                return True
            self._overflow.failed(_failure_name(event), hidden=True)
            return False
        self._overflow.add(event)
        return False

    # ------------------------------------------------------------ printer thread
    def _timeout(self) -> float | None:
        return TICK if self._window.hidden or self._overflow.hidden else None

    def _write(self, batch: list[ev.BusEvent], closing: bool) -> None:
        out: list[str] = []
        failures = 0
        taken = 0
        for event in batch:  # one by one while a person can read them
            self._roll(out)
            if self._window_lines >= self.readable:
                break
            taken += 1
            if is_failure(event):
                failures += 1
                out.extend(self._lines(event))
                self._window.failed(_failure_name(event), hidden=False)
                continue
            lines = self._lines(event)
            self._window_lines += len(lines)
            out.extend(lines)
        if taken < len(batch):  # the rest of this second's lines are only counted: by type, for the whole batch
            rest = batch[taken:] if taken else batch
            counts = Counter(map(type, rest))
            if not _FAILING.isdisjoint(counts):
                for event in rest:
                    if type(event) in _FAILING and is_failure(event):
                        failures += 1
                        counts[type(event)] -= 1
                        out.extend(self._lines(event))
                        self._window.failed(_failure_name(event), hidden=False)
            self._window.add_counts(counts)  # every fact in a batch has a line (the subscriber kept no other)
        with self._lock:
            self._waiting_failures -= failures
            self._window.merge(self._overflow)
            self._overflow = Tally()
        self._roll(out, force=closing)
        if out:
            self.stream.write("\n".join(out) + "\n")
        self.stream.flush()

    def _roll(self, out: list[str], force: bool = False) -> None:
        """At the end of a second (or at the close), its summary line if anything went unprinted."""
        now = self.clock()
        elapsed = now - self._window_start
        if elapsed < 1.0 and not force:
            return
        if self._window.hidden:
            out.append(self._stamp(self.wall(), "summary", "dim") + self._window.line(max(elapsed, 1.0)))
            self._window = Tally()
        self._window_start = now
        self._window_lines = 0

    # ------------------------------------------------------------ formatting (plain strings)
    def _stamp(self, ts: float, tag: str, style: str) -> str:
        clock = datetime.fromtimestamp(ts).strftime("%H:%M:%S")
        if not self.color:
            return f"{clock} {tag:<6} "
        return f"\x1b[2m{clock}\x1b[0m {_ANSI[style]}{tag:<6}\x1b[0m "

    def _lines(self, event: ev.BusEvent) -> list[str]:
        lines = self._own_lines(event)
        if self.verbose and type(event) in _FOLDING:  # what it tells in place of facts of their own, as those print
            folded: list[ev.BusEvent] = [*ev.folded_versions(event)]
            state = ev.folded_state(event)
            if state is not None:
                folded.append(state)
            for fact in folded:
                lines += self._own_lines(fact)
        return lines

    def _own_lines(self, event: ev.BusEvent) -> list[str]:  # noqa: C901 - one branch per event type, kept flat
        p = printable
        if isinstance(event, ev.OpOutput):
            tag = f"{p(event.op)}[{p(event.worker)}] | "
            if self.color:
                tag = f"{_ANSI['cyan' if event.stream == 'stdout' else 'yellow']}{tag}\x1b[0m"
            return [tag + p(event.line)]
        ts = event.ts
        if isinstance(event, ev.EventReceived):
            return [self._stamp(ts, "event", "bold") + f"{p(event.name)}  ({event.source} #{event.event_id})"]
        if isinstance(event, ev.GeneratorError):
            lines = [self._stamp(ts, "ERROR", "red") + f"generator {p(event.generator)} on event {p(event.event)!r}: "
                     f"{p(event.error)}"]
            return lines + self._traceback(event.traceback)
        if isinstance(event, ev.DESRejectedEvent):
            return [self._stamp(ts, "REJECT", "red") + f"DES {event.des_id} from {p(event.generator)}: {p(event.reason)}"]
        if isinstance(event, ev.DESRegistered):
            if event.restored:
                return []
            arrow = f"{', '.join(map(p, sorted(event.deps))) or '-'} -> {', '.join(map(p, sorted(event.targs)))}"
            return [self._stamp(ts, "des", "magenta") + f"{event.des_id} {'+'.join(event.ops)}: {arrow}"]
        if isinstance(event, ev.OpStarted):
            again = f" attempt {event.attempt}" if event.attempt > 1 else ""
            return [self._stamp(ts, "start", "blue") + f"{p(event.op)} [{p(event.worker)}] run {event.run_id}{again}"]
        if isinstance(event, ev.OpFinished):
            return [self._stamp(ts, "ok", "green")
                    + f"{p(event.op)} [{p(event.worker)}] run {event.run_id} ({_ms(event.duration)})"]
        if isinstance(event, ev.OpFailed):
            retry = f"; retry in {event.retry_in:g}s" if event.retry_in is not None else ""
            lines = [self._stamp(ts, "FAILED", "red")
                     + f"{p(event.op)} [{p(event.worker)}] run {event.run_id}: {p(event.error)}{retry}"]
            return lines + self._traceback(event.traceback)
        if isinstance(event, ev.OpCancelled):
            return [self._stamp(ts, "cancel", "yellow") + f"{p(event.op)} [{p(event.worker)}] run {event.run_id} cancelled"]
        if isinstance(event, ev.TimerFired):
            by_hand = " (fired by hand)" if event.manual else ""
            return [self._stamp(ts, "timer", "cyan") + f"{p(event.name)} -> {p(event.event)}{by_hand}"]
        if isinstance(event, ev.EngineState):
            detail = f"  {p(event.detail)}" if event.detail else ""
            return [self._stamp(ts, "engine", "bold") + f"{event.state}{detail}"]
        if isinstance(event, ev.EngineNotice):
            style = {"error": "red", "warning": "yellow"}.get(event.level, "dim")
            return [self._stamp(ts, event.level if event.level != "info" else "note", style) + p(event.message)]
        if isinstance(event, ev.WorkerChanged) and event.state == "dead":
            return [self._stamp(ts, "worker", "red") + p(event.detail)]
        if self.verbose and isinstance(event, (ev.DESStateChanged, ev.DocumentUpdated)):
            return [self._stamp(ts, event.kind[:7], "dim") + p(json.dumps(event.to_json(), default=str))]
        return []

    def _traceback(self, text: str | None) -> list[str]:
        if not (self.debug and text):
            return []
        return [printable(line) for line in text.rstrip().splitlines()]


_ANSI = {"dim": "\x1b[2m", "bold": "\x1b[1m", "red": "\x1b[1;31m", "green": "\x1b[32m", "yellow": "\x1b[33m",
         "blue": "\x1b[34m", "magenta": "\x1b[35m", "cyan": "\x1b[36m"}


def _failure_name(event: ev.BusEvent) -> str:
    if isinstance(event, ev.OpFailed):
        return event.op
    if isinstance(event, (ev.GeneratorError, ev.DESRejectedEvent)):
        return f"generator {event.generator}"
    return event.kind


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
