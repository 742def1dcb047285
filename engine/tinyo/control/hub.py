"""Provides the fan-out of bus facts to control clients: recent history and bounded per-client buffers.

The engine loop only appends each fact to the hub's bounded inbox (it never encodes, waits or
writes to a socket). The hub's own thread numbers the facts, keeps the recent ones, encodes what one
pass took (``BATCH`` facts a frame) once, as rows in msgpack frames, for every subscriber (a console
makes events of them, a printer the ``tinyo run --json`` lines, each in its own process), and offers the
pass's frames to each one's outbox together (one send, one wake-up of the client); with no client it is
woken only every ``HUB_WAKE`` facts (or by a fact it reads itself, or a subscribe), not every cycle; with
clients, under a flood (``HUB_FLOOD`` facts a pass), it passes once per ``HUB_PACE`` (a few facts, or the
first after a quiet spell, go at once).
Its work is per batch: taking, numbering, keeping and encoding the facts run in C (``map``, ``compress``,
msgpack's packer), with no Python frame per fact. An outbox is bounded in bytes: a client that reads too
slowly loses the frames that do not fit, their facts counted, and is told how many before the next one.
Facts the hub's full inbox drops are counted to a gap kept in their place in it, so every client is told
of them after the facts before them, as of an outbox's own loss.
"""

from __future__ import annotations

import heapq
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import compress, repeat, starmap
from operator import not_

from .. import events as ev
from . import factwire
from .protocol import Live, Missed, encode

HISTORY_MAX = 1000
"""Recent facts kept per kind (runs, op output, everything else) for a client that subscribes."""
HUB_MAX = 10_000
"""Facts waiting for the hub thread; past it they are counted as missed by every subscriber."""
BATCH = 512
"""Facts encoded in one frame before it is handed to the clients' outboxes (bounds what the hub holds)."""
HUB_WAKE = 1_000
"""Facts waiting, with no client, past which the hub is woken to keep them as history: a cycle's facts still
find most of ``HUB_MAX`` free, and a burst wakes the hub every thousand facts instead of every cycle."""
HUB_TICK = 0.01
"""Seconds the hub lets facts gather after the first one wakes it."""
HUB_PACE = 0.1
"""Seconds between two passes under a flood (``HUB_FLOOD``): the hub, the clients' sockets and the clients
themselves wake ten times a second, not once per engine cycle (every wake-up of another thread or process
takes the engine's CPUs, its caches and turns at its interpreter lock: a pass costs the hub thread a few
hundred microseconds beside its facts). Half a console's paint interval under a flood (``tinyo_tui.pacing``)."""
HUB_FLOOD = 50
"""Facts a pass must carry for the next one to wait for ``HUB_PACE``: at a burst's rate (thousands of facts a
second) a pass carries more; a command's few facts (``tinyo inject``, a rerun) still go out after ``HUB_TICK``."""
HUB_FULL = 4_000
"""Facts waiting past which a paced hub passes at once (the inbox keeps room for a cycle or more): a burst
publishes up to ~50,000 facts a second, so a pace's facts pass it only at the fastest."""
PASS_BYTES = 1 << 20
"""Bytes of frames a pass holds before it offers them to the clients (one send each): a pass under a flood
carries a few hundred kilobytes; one that finds the engine appending as fast as it drains offers what it holds
here and goes on, so a client is never held back for a whole flood."""
OUTBOX_BYTES = 4 << 20
"""Bytes waiting to be sent to one client; facts past it are dropped (counted) for that client."""
TAKE_BYTES = 256 << 10
"""Bytes a client's writer takes from its outbox for one send: what a send that waits on a stalled client
holds beside the outbox (taking all of it would double what one client may cost)."""

_RUN_FACTS = frozenset({ev.OpStarted, ev.OpFinished, ev.OpFailed, ev.OpCancelled})
_OUTPUT = frozenset({ev.OpOutput})
_KEPT_APART = _RUN_FACTS | _OUTPUT
"""Facts kept in a history of their own (runs, op output); every other kind shares one."""
_WATCHED = frozenset({ev.EngineState, ev.EngineNotice})
"""Facts the hub reads itself (the engine's state, its last error): they wake it even with no client."""


_MISSED_BASE = len(encode(Missed(0))) - 1
"""The size of a "missed N" line less N's digits: the room kept for it before the next fact after an overflow."""


class Outbox:
    """What waits to be written to one client. Facts never wait for room; replies do.

    Given the client's socket, a line of facts offered while nothing waits and the writer is not sending is
    sent at once, without blocking, by the offering thread (the hub's): what the socket takes then needs no
    wake-up of the writer thread, nor its turns at the interpreter lock, which the engine's loop wants too.
    What it does not take is queued for the writer, as every line is without a socket."""

    def __init__(self, limit: int = OUTBOX_BYTES, sock: socket.socket | None = None) -> None:
        self.limit = limit
        self._sock = sock
        self._lines: deque[bytes] = deque()
        self._bytes = 0
        self._missed = 0
        self.missed_total = 0
        self._closed = False
        self._sending = False
        """Whether the writer holds lines it took and has not finished sending (until its next ``take``)."""
        self._cond = threading.Condition()

    def offer(self, line: bytes, facts: int = 1) -> bool:
        """Queue (or send at once) a line of ``facts`` facts if it fits, else count them as missed."""
        return self.offer_all([(line, facts)]) == 1

    def offer_all(self, lines: list[tuple[bytes, int]]) -> int:
        """Queue the lines (each with how many facts it carries) that fit, in order, and count the facts of the
        others as missed; how many were queued. An idle client's socket is handed them at once, by one send
        (a hub pass's frames: one system call and one wake-up of the client per pass, not one per frame)."""
        with self._cond:
            if self._closed:
                return 0
            idle = not self._lines and not self._sending
            queued = 0
            for line, facts in lines:
                if not self._fits(line):
                    self._missed += facts
                    continue
                self._flush_missed()
                self._lines.append(line)
                self._bytes += len(line)
                queued += 1
            if idle and self._lines and self._sock is not None:
                self._send_now()
            if self._lines or self._missed:
                self._cond.notify_all()  # the writer sends the rest, or says what was lost now
            return queued

    def _send_now(self) -> None:
        """Hand the socket what is queued, without blocking (the writer is not sending: nothing else is); what it
        does not take stays queued, in order, for the writer. A full or broken socket leaves it all there (the
        writer waits for room, or finds the client gone)."""
        lines, sock = self._lines, self._sock
        assert sock is not None
        try:
            sent = sock.sendmsg(lines, (), socket.MSG_DONTWAIT) if len(lines) > 1 else \
                sock.send(lines[0], socket.MSG_DONTWAIT)
        except OSError:
            return
        self._bytes -= sent
        while sent:
            size = len(lines[0])
            if sent < size:
                lines[0] = lines[0][sent:]
                break
            lines.popleft()
            sent -= size

    def miss(self, count: int) -> None:
        with self._cond:
            self._missed += count
            self._cond.notify()

    def put(self, line: bytes) -> bool:
        """Queue a reply once the outbox is below its limit (the client's own requests wait, nobody else)."""
        with self._cond:
            while self._bytes > self.limit and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._append(line)
            return True

    def load(self) -> tuple[int, int]:
        """(bytes waiting, facts missed since the connection began): what a client costs and loses."""
        with self._cond:
            return self._bytes, self.missed_total + self._missed

    def force(self, line: bytes) -> None:
        """Queue a small marker whatever the fill (the hub thread must never wait for a client)."""
        with self._cond:
            if not self._closed:
                self._flush_missed()
                self._append(line)

    def take(self) -> list[bytes] | None:
        """What is queued, up to ``TAKE_BYTES`` (waiting for something); None once closed and drained. The
        writer sends it all before it calls again: until then nothing is sent past it."""
        with self._cond:
            self._sending = False
            while not self._lines and not self._closed and not self._missed:
                self._cond.wait()
            if not self._lines:
                if self._missed and not self._closed:
                    self._flush_missed()  # the flood ended: say what was lost now, not at the next fact
                elif self._closed:
                    return None
            queued = self._lines
            lines = [queued.popleft()]
            size = len(lines[0])
            while queued and size + len(queued[0]) <= TAKE_BYTES:
                size += len(queued[0])
                lines.append(queued.popleft())
            self._bytes -= size
            self._sending = True
            self._cond.notify_all()
            return lines

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _fits(self, line: bytes) -> bool:
        """Whether ``line``, and the "missed" line owed before it, stay within the limit. Once facts are
        missed, none is queued until half the room is free again: a client that falls behind gets one
        gap and one "missed" line, not a small fact slipped in between every two dropped big ones."""
        if not self._missed:
            return self._bytes + len(line) <= self.limit
        owed = _MISSED_BASE + len(str(self._missed))
        return self._bytes <= self.limit // 2 and self._bytes + len(line) + owed <= self.limit

    def _append(self, line: bytes) -> None:
        self._lines.append(line)
        self._bytes += len(line)
        self._cond.notify_all()

    def _flush_missed(self) -> None:
        if self._missed:
            self.missed_total += self._missed
            line = encode(Missed(self._missed))
            self._missed = 0
            self._lines.append(line)
            self._bytes += len(line)


def _packable_row(event: ev.BusEvent) -> object:
    """``event``'s row if it packs, else the row of a notice saying which fact could not be sent (in its place:
    the frame's count and numbering stay those of the facts taken)."""
    try:
        row = factwire.packed_rows([event])[0]
        factwire.facts_frames(0, [row])  # it packs, and within what a client reads
        return row
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"[:200]
        ts = event.ts if type(event.ts) is float else time.time()
        notice = ev.EngineNotice(ts, "warning", f"a {event.kind} fact could not be sent to clients ({why})")
        return factwire.packed_rows([notice])[0]


class _Gap:
    """Where the hub's full inbox dropped facts, in its place among them: the clients are told of the gap
    after the facts before it, not ahead of them. Open (counting more) until a fact is kept after it or
    the hub takes it."""

    __slots__ = ("count", "open")

    def __init__(self, count: int) -> None:
        self.count = count
        self.open = True


class Hub:
    """Owns the history and the subscriber list (its thread alone touches them)."""

    def __init__(self, on_stopped: Callable[[str], None]) -> None:
        self._on_stopped = on_stopped
        self._in: deque[ev.BusEvent | _Gap] = deque()
        self._gap: _Gap | None = None
        """The inbox's last gap while no fact was kept after it (the engine loop's; the hub closes it)."""
        self._gap_lock = threading.Lock()
        """Taken only by a drop and by the hub taking a gap: what is counted to a gap is told once."""
        self._gaps_made = 0
        self._gaps_taken = 0
        self._requests: queue.Queue[tuple[str, Outbox, bool]] = queue.Queue()
        self._wake = threading.Event()
        self._full = threading.Event()
        """Set by the engine loop when ``HUB_FULL`` facts wait: ends a paced wait early."""
        self._stop = False
        self._seq = 0
        self._events: deque[tuple[int, ev.BusEvent]] = deque(maxlen=HISTORY_MAX)
        self._runs: deque[tuple[int, ev.BusEvent]] = deque(maxlen=HISTORY_MAX)
        self._output: deque[tuple[int, ev.BusEvent]] = deque(maxlen=HISTORY_MAX)
        self._subs: list[Outbox] = []
        """The outboxes of the subscribed clients: each is offered the same frames (``factwire.facts_frames``)."""
        self._listening = False
        """Whether a client is subscribed (written by the hub thread only, read by the engine loop)."""
        self._last_error = ""
        self._ended: str | None = None
        self.running = threading.Event()
        """Set once the engine has started (or ended): requests wait for it."""
        self._thread = threading.Thread(target=self._loop, name="tinyo-control-hub", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def on_facts(self, events: list[ev.BusEvent]) -> None:
        """The bus's batch subscriber (a cycle's facts): append what fits, count the rest, wake once.

        With no client the facts only wait to become history: the hub is woken once ``HUB_WAKE`` wait, by a
        fact it reads itself, or by a subscribe (which takes them in as history first), not once per
        cycle (each wake-up takes the interpreter from the loop)."""
        room = HUB_MAX - len(self._in)
        if room >= len(events):
            self._in.extend(events)
            if self._gap is not None:
                self._gap = None  # facts kept after it: a later drop is another gap
        else:
            room = max(0, room)
            if room:
                self._in.extend(events[:room])
                self._gap = None
            self._drop(len(events) - room)
        # read after the append: a client subscribed meanwhile finds these facts in the inbox when it is added
        waiting = len(self._in)
        if waiting >= HUB_FULL and not self._full.is_set():
            self._full.set()
        if not (self._listening or waiting >= HUB_WAKE or not _WATCHED.isdisjoint(map(type, events))):
            return
        if not self._wake.is_set():  # set while the hub gathers: setting it again would only take its lock
            self._wake.set()

    def _drop(self, count: int) -> None:
        """Count ``count`` facts the full inbox cannot take to the gap at its end (a new one if none is open)."""
        with self._gap_lock:
            gap = self._gap
            if gap is not None and gap.open:
                gap.count += count
                return
            self._gap = gap = _Gap(count)
            self._gaps_made += 1
            self._in.append(gap)  # one past HUB_MAX at most per fact kept before it

    def subscribe(self, outbox: Outbox, history: bool) -> None:
        """Send ``outbox`` every fact from now on, the recent ones first if ``history``."""
        self._requests.put(("sub", outbox, history))
        self._wake.set()

    def unsubscribe(self, outbox: Outbox) -> None:
        self._requests.put(("unsub", outbox, False))
        self._wake.set()

    def on_own_thread(self) -> bool:
        """Whether the caller runs on the hub's thread."""
        return self._thread is threading.current_thread()

    def finish(self, timeout: float = 5.0) -> None:
        """Hand the facts still waiting to the clients, then end the hub thread."""
        self._stop = True
        self._full.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        last = float("-inf")  # when the last pass that carried facts began
        while True:
            self._wake.wait()
            if not self._stop:
                # let the engine publish the rest of its cycle first: one pass (and one wake-up of each
                # writer) per batch of facts instead of a thread hand-over per fact, for 10 ms of latency;
                # while facts keep coming, one pass per HUB_PACE (sooner if the inbox fills)
                delay = max(HUB_TICK, last + HUB_PACE - time.monotonic())
                if delay > HUB_TICK:
                    self._full.wait(delay)
                else:
                    time.sleep(delay)
            self._wake.clear()
            self._full.clear()
            # a flood's pass paces the next; a pass of a few facts (a command's) does not
            last = time.monotonic() if len(self._in) >= HUB_FLOOD else float("-inf")
            while True:
                try:
                    what, outbox, history = self._requests.get_nowait()
                except queue.Empty:
                    break
                if what == "sub":
                    self._drain()  # what waited (unwoken, with no client) is history for the new client
                    self._add(outbox, history)
                elif outbox in self._subs:
                    self._subs.remove(outbox)
                self._listening = bool(self._subs)
            self._drain()
            if self._ended is not None:
                self._on_stopped(self._ended)  # after the "stopped" fact went out to every client
                return
            if self._stop:
                return

    def _drain(self) -> None:
        """Number, keep and hand to the clients the facts in the inbox, a batch at a time; a gap's count goes
        to each client after the facts before it. The pass's frames are offered together (``PASS_BYTES`` at
        most at a time): one send per client and pass."""
        inbox = self._in
        frames: list[tuple[bytes, int]] = []
        while inbox:
            # the engine only appends meanwhile: popleft from C, as many as there were
            batch = list(starmap(inbox.popleft, repeat((), min(BATCH, len(inbox)))))
            if self._gaps_taken != self._gaps_made:
                self._pass_gapped(batch, frames)
            else:
                self._pass(batch, frames)  # type: ignore[arg-type]
            if sum(len(line) for line, _ in frames) >= PASS_BYTES:
                self._offer(frames)
        self._offer(frames)

    def _offer(self, frames: list[tuple[bytes, int]]) -> None:
        """Offer ``frames`` to every subscriber, then forget them."""
        if frames:
            for outbox in self._subs:
                outbox.offer_all(frames)
            frames.clear()

    def _pass_gapped(self, batch: list[ev.BusEvent | _Gap], frames: list[tuple[bytes, int]]) -> None:
        start = 0
        for index, item in enumerate(batch):
            if type(item) is _Gap:
                self._pass(batch[start:index], frames)  # type: ignore[arg-type]
                self._offer(frames)  # the facts before the gap, then its count
                start = index + 1
                with self._gap_lock:
                    item.open = False
                    count = item.count
                self._gaps_taken += 1
                for outbox in self._subs:
                    outbox.miss(count)
        self._pass(batch[start:], frames)  # type: ignore[arg-type]

    def _pass(self, batch: list[ev.BusEvent], frames: list[tuple[bytes, int]]) -> None:
        if batch:
            first = self._seq + 1
            self._seq += len(batch)
            self._keep(first, batch)
            if self._listening:
                frames += self._frames(self._seq, batch, False)

    def _frames(self, seq: int, batch: list[ev.BusEvent], history: bool) -> list[tuple[bytes, int]]:
        """``batch``'s facts (the last numbered ``seq``) encoded once for every client: a frame (more if long)."""
        try:
            return factwire.facts_frames(seq, factwire.packed_rows(batch), history)
        except Exception:  # a fact with a value nothing can pack: the batch row by row, the hub thread lives on
            return factwire.facts_frames(seq, [_packable_row(event) for event in batch], history)

    def _keep(self, first: int, batch: list[ev.BusEvent]) -> None:
        """Keep ``batch`` (numbered from ``first``) as history, each fact in its kind's, and read the facts
        the hub watches. Sorted by masks made in C: no Python frame per fact."""
        kinds = list(map(type, batch))
        records = list(zip(range(first, first + len(batch)), batch))
        if _KEPT_APART.isdisjoint(kinds):
            self._events.extend(records)
        else:
            self._runs.extend(compress(records, map(_RUN_FACTS.__contains__, kinds)))
            self._output.extend(compress(records, map(_OUTPUT.__contains__, kinds)))
            self._events.extend(compress(records, map(not_, map(_KEPT_APART.__contains__, kinds))))
        if not _WATCHED.isdisjoint(kinds):
            for event in batch:
                if type(event) in _WATCHED:
                    self._watch(event)

    def _watch(self, event: ev.BusEvent) -> None:
        if isinstance(event, ev.EngineNotice) and event.level == "error":
            self._last_error = event.message
        elif isinstance(event, ev.EngineState):
            if event.state == "stopped":
                self.running.set()
                self._ended = self._last_error or "the engine stopped"
            elif event.state != "starting":
                self.running.set()

    def _add(self, outbox: Outbox, history: bool) -> None:
        if history:
            records = list(heapq.merge(self._events, self._runs, self._output, key=lambda r: r[0]))
            frames: list[tuple[bytes, int]] = []
            for start in range(0, len(records), BATCH):
                part = records[start:start + BATCH]
                frames += self._frames(part[-1][0], [e for _, e in part], True)
            outbox.offer_all(frames)
        outbox.force(encode(Live()))
        self._subs.append(outbox)
