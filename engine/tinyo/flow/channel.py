"""Provides the bounded input buffer of a step instance and the stop signal shared by a run.

Every step instance has one ``Inbox``. Each hop arriving at the instance owns a *slot* in it with
its own capacity, counted in **rows** (chunks move, rows are counted): a producer may add a chunk
while the slot holds fewer than ``capacity - len(chunk)`` rows; a chunk larger than the capacity is
cut to fit. So a hop never holds more than its ``buffer`` rows and a slow consumer back-pressures
its producers. The consumer takes chunks in arrival order across all slots (never one hop first),
which is what keeps an acyclic flow free of deadlock (see ``tinyo.flow.definition``).

Waits block on conditions: a waiter is given a timeout only when its instance has a state change
still to report (``Meter.due``), so nothing polls while idle.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .errors import Stopped

if TYPE_CHECKING:
    from .meter import Meter


class StopSignal:
    """Set once when a run must stop; every buffer registered with it wakes its waiters."""

    def __init__(self) -> None:
        self.is_set = False
        self._lock = threading.Lock()
        self._listeners: list[Any] = []

    def register(self, listener: Any) -> None:
        """``listener.abort()`` is called when the signal is set."""
        with self._lock:
            self._listeners.append(listener)
            already = self.is_set
        if already:
            listener.abort()

    def set(self) -> None:
        """Stop: wake every registered waiter (they raise ``Stopped``)."""
        with self._lock:
            if self.is_set:
                return
            self.is_set = True
            listeners = list(self._listeners)
        for listener in listeners:
            listener.abort()


class Inbox:
    """The bounded input buffer of one step instance: one slot per arriving hop, one consumer."""

    def __init__(self, capacities: list[int], producers: int, stop: StopSignal) -> None:
        if any(c < 1 for c in capacities):
            raise ValueError(f"buffer capacities must be >= 1 row, got {capacities}")
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = [threading.Condition(self._lock) for _ in capacities]
        self._caps = list(capacities)
        self._fill = [0] * len(capacities)
        self._put_waiters = [0] * len(capacities)
        self._get_waiting = False
        self._queue: deque[tuple[int, list[Any]]] = deque()
        self._open = producers
        self._aborted = False
        self.size = sum(capacities)
        """Total capacity in rows (the metrics' ``buffer_size``)."""
        self.rows = 0
        """Rows buffered now."""
        self.high_water = 0
        """The most rows this buffer ever held at once."""
        stop.register(self)

    def capacity(self, slot: int) -> int:
        """The capacity of one slot, in rows."""
        return self._caps[slot]

    def abort(self) -> None:
        """Wake every waiter; they raise ``Stopped``."""
        with self._lock:
            self._aborted = True
            self._readable.notify_all()
            for cond in self._writable:
                cond.notify_all()

    def put(self, slot: int, rows: list[Any], meter: Meter) -> None:
        """Add a chunk to ``slot``, blocking while the slot is full (state ``blocked``)."""
        cap = self._caps[slot]
        if len(rows) > cap:
            for start in range(0, len(rows), cap):
                self.put(slot, rows[start : start + cap], meter)
            return
        n = len(rows)
        with self._lock:
            if self._aborted:
                raise Stopped()
            if self._fill[slot] + n <= cap:
                self._push(slot, rows, n)
                return
        previous = meter.state
        meter.set_state("blocked")
        cond = self._writable[slot]
        while True:
            with self._lock:
                while True:
                    if self._aborted:
                        raise Stopped()
                    if self._fill[slot] + n <= cap:
                        self._push(slot, rows, n)
                        meter.set_state(previous)
                        return
                    timeout = meter.due()
                    if timeout == 0.0:
                        break
                    self._put_waiters[slot] += 1
                    try:
                        cond.wait(timeout)
                    finally:
                        self._put_waiters[slot] -= 1
            meter.emit()

    def _push(self, slot: int, rows: list[Any], n: int) -> None:
        self._fill[slot] += n
        self.rows += n
        if self.rows > self.high_water:
            self.high_water = self.rows
        self._queue.append((slot, rows))
        if self._get_waiting:
            self._readable.notify()

    def close(self) -> None:
        """One producer has sent its last chunk."""
        with self._lock:
            self._open -= 1
            if self._open <= 0 and self._get_waiting:
                self._readable.notify()

    def get(self, meter: Meter) -> list[Any] | None:
        """The next chunk in arrival order, or None once every producer closed and all was read."""
        with self._lock:
            if self._queue:
                return self._pop()
            if self._open <= 0:
                return None
            if self._aborted:
                raise Stopped()
        meter.set_state("waiting")
        while True:
            with self._lock:
                while True:
                    if self._aborted:
                        raise Stopped()
                    if self._queue:
                        meter.set_state("running")
                        return self._pop()
                    if self._open <= 0:
                        meter.set_state("running")
                        return None
                    timeout = meter.due()
                    if timeout == 0.0:
                        break
                    self._get_waiting = True
                    try:
                        self._readable.wait(timeout)
                    finally:
                        self._get_waiting = False
            meter.emit()

    def _pop(self) -> list[Any]:
        slot, rows = self._queue.popleft()
        n = len(rows)
        self._fill[slot] -= n
        self.rows -= n
        if self._put_waiters[slot]:
            self._writable[slot].notify_all()
        return rows


class Window:
    """A counter of chunks in flight to a worker process: ``acquire`` blocks at ``limit``."""

    def __init__(self, limit: int, stop: StopSignal) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._free = limit
        self._aborted = False
        stop.register(self)

    def abort(self) -> None:
        """Wake the waiter; it raises ``Stopped``."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def acquire(self) -> None:
        """Take one place, waiting while all are taken."""
        with self._cond:
            while self._free <= 0:
                if self._aborted:
                    raise Stopped()
                self._cond.wait()
            if self._aborted:
                raise Stopped()
            self._free -= 1

    def release(self) -> None:
        """Give one place back."""
        with self._cond:
            self._free += 1
            self._cond.notify()
