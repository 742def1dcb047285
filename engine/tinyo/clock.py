"""Provides the engine's injectable clock, so tests and snapshots are deterministic."""

from __future__ import annotations

import threading
from time import monotonic as _monotonic
from time import time as _wall
from typing import Protocol


class Clock(Protocol):
    """Where the engine reads the time."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (event times, timer grid, run start/end)."""
        ...

    def monotonic(self) -> float:
        """Seconds for durations and waits; never goes back."""
        ...


class SystemClock:
    """The real clock: the ``time`` module's own functions (read several times per file in a burst, so no
    Python frame around them)."""

    time = staticmethod(_wall)
    monotonic = staticmethod(_monotonic)


class ManualClock:
    """A clock that moves only when told to (``advance``/``set``); for tests and snapshots."""

    def __init__(self, start: float = 1_730_000_000.0) -> None:
        self._now = float(start)
        self._mono = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def set(self, now: float) -> None:
        """Jump the wall clock to ``now`` (the monotonic clock moves by the same amount if forward)."""
        with self._lock:
            delta = now - self._now
            self._now = float(now)
            if delta > 0:
                self._mono += delta
