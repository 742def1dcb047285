"""Provides intake helpers: file versions (cheap stat check, then content hash) and the timer grid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .filedigest import digest_file, stat_file

__all__ = ["FileState", "SettleWindow", "StartupHold", "TimerSchedule", "compare_file", "digest_file",
           "first_tick_at_or_after", "last_tick_at_or_before", "stat_file", "timer_event"]

if TYPE_CHECKING:  # annotations only: the watcher process imports this module, and not the model
    from .model import CatchUp, TimerSpec


@dataclass(frozen=True, slots=True)
class FileState:
    """What identifies a file's content: (mtime_ns, size) cheaply, the hash when those changed."""

    mtime_ns: int
    size: int
    digest: str | None


_SET_MTIME, _SET_SIZE, _SET_DIGEST = (FileState.mtime_ns.__set__, FileState.size.__set__,  # type: ignore[attr-defined]
                                     FileState.digest.__set__)  # type: ignore[attr-defined]


def _file_state_init(self: FileState, mtime_ns: int, size: int, digest: str | None) -> None:
    """A state per file of a burst (the watcher's reader makes one for each file it hands over): each slot
    written through its own descriptor, where the frozen dataclass's ``__init__`` looks each name up in
    ``object.__setattr__`` (about half the time); the class stays the frozen dataclass it is (``replace``,
    pickling and keyword arguments work as before), only its ``__init__`` is this one."""
    _SET_MTIME(self, mtime_ns)
    _SET_SIZE(self, size)
    _SET_DIGEST(self, digest)


FileState.__init__ = _file_state_init  # type: ignore[method-assign]


def compare_file(path: str, known: FileState | None, use_hash: bool, st: os.stat_result | None = None,
                 hint: FileState | None = None) -> tuple[bool, FileState | None]:
    """(content changed?, new state) for ``path`` against the ``known`` state; state None if the file is gone.

    A file with the same (mtime_ns, size) is unchanged without reading it; otherwise, with hashing on,
    it changed only if the content hash differs (so ``touch`` alone changes nothing). ``hint`` is a
    state just read for the same file (by the watcher process, or by intake): a hinted hash is trusted
    without reading the file again.
    """
    if st is None and hint is not None and hint.digest and known is not None and known.digest == hint.digest:
        return False, FileState(hint.mtime_ns, hint.size, hint.digest)  # just read: same content
    if st is None and hint is not None and hint.digest and (known is None or known.digest != hint.digest):
        return True, hint  # just read: no second stat or hash
    st = st if st is not None else stat_file(path)
    if st is None:
        return False, None
    if known is not None and known.mtime_ns == st.st_mtime_ns and known.size == st.st_size:
        return False, known
    if not use_hash:
        return True, FileState(st.st_mtime_ns, st.st_size, None)
    if hint is not None and hint.digest and hint.mtime_ns == st.st_mtime_ns and hint.size == st.st_size:
        digest: str | None = hint.digest
    else:
        digest = digest_file(path, st.st_size)
    if digest is None:
        return False, None
    state = FileState(st.st_mtime_ns, st.st_size, digest)
    if known is not None and known.digest == digest:
        return False, state
    return True, state


# ---------------------------------------------------------------- settle window


class SettleWindow:
    """When events arriving together have all arrived, so that the generators see them as one batch and a
    DES reading several of them runs once: once no new event came for ``quiet`` seconds, or ``cap``
    seconds after the first, or once ``count`` are waiting, whichever comes first (``TinyOConfig.settle``,
    ``settle_max``, ``maxevents``). Events stored before this engine started are due at once."""

    def __init__(self, quiet: float, cap: float, count: int) -> None:
        self.quiet = quiet
        self.cap = max(cap, quiet)
        self.count = count
        self.first: float | None = None
        self.last = 0.0
        self.waiting = 0
        self._seen: float | None = None
        self.held: float | None = None
        """When the first of the events the loop holds unstored (``hold``) was seen; None: none held."""
        self.held_last = 0.0

    def saw(self, when: float) -> None:
        """(The watcher's reader thread.) The files of the batch about to be taken in were seen complete at
        monotonic time ``when`` (one clock for every process): their quiet period runs from then, not from
        when the loop stores them. A single float handed over; the loop reads it in :meth:`arrived`."""
        self._seen = when

    def arrived(self, now: float, n: int) -> None:
        """``n`` events were stored at monotonic time ``now``."""
        seen, self._seen = self._seen, None
        at = seen if seen is not None and now - self.cap <= seen <= now else now
        if self.held is not None:  # they waited unstored: the window opened, and was last fed, when they were seen
            at = at if seen is not None else self.held_last
            if self.first is None:
                self.first, self.last = self.held, at
            self.held = None
        if self.first is None:
            self.first = self.last = at
        else:
            self.last = max(self.last, at)
        self.waiting += n

    def hold(self, now: float, queued: int) -> bool:
        """(Loop thread, no event stored waits in this window.) Whether the ``queued`` events taken in and not
        yet stored may go on waiting unstored: this window's rules, from when the watcher saw them, say it
        would not close yet. A file trickling in then costs no cycle of its own (its storing, its commit):
        the window's batch is stored and fed in one cycle once it closes (``deadline`` counts them)."""
        seen, self._seen = self._seen, None
        if seen is not None and not now - self.cap <= seen <= now:
            seen = now
        if self.held is None:
            self.held = self.held_last = seen if seen is not None else now
        elif seen is not None:
            self.held_last = max(self.held_last, seen)
        return queued < self.count and now - self.held_last < self.quiet and now - self.held < self.cap

    def let_go(self) -> None:
        """What was held was stored as no event (files unchanged): the next one opens its own window."""
        self.held = None

    def due(self, now: float) -> bool:
        first = self.first
        return (first is None or self.waiting >= self.count or now - self.last >= self.quiet
                or now - first >= self.cap)

    def deadline(self) -> float | None:
        """The monotonic time at which the window closes by itself (None: it is not open)."""
        if self.first is None:
            return None if self.held is None else min(self.held_last + self.quiet, self.held + self.cap)
        return min(self.last + self.quiet, self.first + self.cap)

    def taken(self) -> None:
        """Everything that arrived was handed on: the next event opens a new window."""
        self.first = None
        self.waiting = 0


class StartupHold:
    """Holds dispatch at start-up until every file the start-up scan found is taken in and has been through
    the generators, so what changed while the engine was down is built once. A file the scan found being
    written (modified under ``quiet`` seconds before) is waited for until the watcher reports it, or it is
    gone."""

    def __init__(self, quiet: float) -> None:
        self.quiet = quiet
        self.holding = True
        self.settling: dict[str, float] = {}
        """Files the watcher was asked to report once complete -> when to look whether they are gone."""

    def settle(self, path: str, now: float) -> None:
        if self.holding:
            self.settling[path] = now + self.quiet

    def look(self, now: float) -> None:
        """Stop waiting for settling files that are gone (the watcher reports nothing for those)."""
        for path, when in list(self.settling.items()):
            if now >= when:
                if stat_file(path) is None:
                    del self.settling[path]
                else:
                    self.settling[path] = now + self.quiet

    def held(self, can_proceed: bool, pending: bool) -> bool:
        """Whether dispatch is still held. ``can_proceed``: events can be processed (not paused, and not
        so much ready that more must wait); ``pending``: scanned events are not all processed yet."""
        if self.holding and can_proceed and (pending or self.settling):
            return True
        self.holding = False
        self.settling.clear()
        return False


# ---------------------------------------------------------------- timers


def timer_event(name: str, tick: datetime) -> str:
    """The event string of a tick: ``f"{name}_{ts}"`` with ``ts = str(tick.timestamp())``."""
    return f"{name}_{tick.timestamp()}"


def first_tick_at_or_after(spec: TimerSpec, now: datetime) -> datetime:
    if now <= spec.initial:
        return spec.initial
    k = (now - spec.initial) // spec.interval
    tick = spec.initial + k * spec.interval
    if tick < now:
        tick += spec.interval
    return tick


def last_tick_at_or_before(spec: TimerSpec, now: datetime) -> datetime | None:
    if now < spec.initial:
        return None
    k = (now - spec.initial) // spec.interval
    return spec.initial + k * spec.interval


class TimerSchedule:
    """When each timer fires next, and which ticks missed while down are fired on start."""

    def __init__(self, specs: list[TimerSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.next_tick: dict[str, datetime] = {}

    def start(self, now: datetime, last_fired: dict[str, float], policy: CatchUp, limit: int) -> list[tuple[str, datetime]]:
        """Set up the grid from ``now``; return the catch-up ticks to fire now (oldest first)."""
        catch_up: list[tuple[str, datetime]] = []
        for name, spec in self.specs.items():
            first = first_tick_at_or_after(spec, now)
            self.next_tick[name] = first
            last = last_fired.get(name)
            if last is None or policy == "skip":
                continue
            latest = last_tick_at_or_before(spec, now)
            if latest is None or latest >= first or latest.timestamp() <= last:
                continue  # nothing was missed (a tick exactly at ``now`` fires as the first tick)
            if policy == "latest":
                catch_up.append((name, latest))
                continue
            ticks: list[datetime] = []
            tick = latest
            while tick >= spec.initial and tick.timestamp() > last and len(ticks) < limit:
                ticks.append(tick)
                tick = tick - spec.interval
            catch_up.extend((name, t) for t in reversed(ticks))
        catch_up.sort(key=lambda item: item[1])
        return catch_up

    def due(self, now: datetime) -> list[tuple[str, datetime]]:
        """Ticks at or before ``now`` (each timer at most its latest one: a stalled loop skips, it does
        not flood), advancing the grid."""
        fired: list[tuple[str, datetime]] = []
        for name, tick in self.next_tick.items():
            if tick <= now:
                spec = self.specs[name]
                latest = last_tick_at_or_before(spec, now) or tick
                fired.append((name, latest))
                self.next_tick[name] = latest + spec.interval
        fired.sort(key=lambda item: item[1])
        return fired

    def next_due(self) -> datetime | None:
        return min(self.next_tick.values(), default=None)
