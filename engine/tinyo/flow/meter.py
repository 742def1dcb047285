"""Provides per-instance live metrics: counters, state, throttled samples to the engine and callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

State = Literal["starting", "running", "waiting", "blocked", "done", "failed", "stopped"]
"""``waiting`` for input, ``blocked`` on a full output buffer, ``stopped`` because another instance failed."""

Sink = Callable[[dict[str, Any]], None]

SAMPLE_INTERVAL = 0.1
"""Seconds between two live samples of one instance (at most ~10 a second)."""


@dataclass(frozen=True)
class InstanceMetrics:
    """One metrics sample of a step instance (the final one is kept in ``FlowRun.metrics``)."""

    flow: str
    flow_run: str
    step: str
    instance: int
    instances: int
    state: str
    rows_in: int
    rows_out: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    rows_per_s: float = 0.0
    buffer_fill: float = 0.0
    buffer_size: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    """Step-specific counts, e.g. Lookup's ``matched`` and ``missed``."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        """The sample as the keyword arguments of ``tinyo.runtime.emit_metrics``."""
        return asdict(self)


class Meter:
    """Counts what one step instance does and reports it at most every ``interval`` seconds.

    The owning thread updates the counters without locking (each counter has one writer); samples
    are sent from the thread that notices one is due, after a chunk or while waiting on a buffer (a
    wait is given a timeout only when an unreported state change is pending, so idle instances
    sleep without waking up).
    """

    def __init__(
        self,
        *,
        flow: str,
        flow_run: str,
        step: str,
        index: int,
        count: int,
        has_input: bool,
        sinks: list[Sink],
        buffer: Any = None,
        interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.step = step
        self.index = index
        self.count = count
        self.has_input = has_input
        self.sinks = sinks
        self.buffer = buffer
        """The instance's input buffer (has ``rows`` and ``size``), or None for a source."""
        self.interval = interval
        self.clock = clock
        self.rows_in = 0
        self.rows_out: dict[str, int] = {}
        self.errors = 0
        self.counters: dict[str, int] = {}
        """Step-specific counts (the context's dict in a thread, a copy updated from a worker process)."""
        self.state: State = "starting"
        self._changed = True
        self._lock = threading.Lock()
        self._started = clock()
        self._last = self._started - interval
        self._last_processed = 0
        self._final: InstanceMetrics | None = None

    def set_state(self, state: State) -> None:
        """Record a state change; it is reported with the next sample."""
        if state != self.state:
            self.state = state
            self._changed = True

    def due(self) -> float | None:
        """Seconds until an unreported state change may be sampled; None when nothing is pending."""
        if not self._changed:
            return None
        return max(0.0, self._last + self.interval - self.clock())

    def tick(self) -> None:
        """Send a sample if the last one is at least ``interval`` old."""
        if self.clock() - self._last >= self.interval:
            self.emit()

    def processed(self) -> int:
        """Rows handled so far: rows in, or rows out for a step with no input hop."""
        return self.rows_in if self.has_input else sum(self.rows_out.values())

    def sample(self, now: float | None = None, final: bool = False) -> InstanceMetrics:
        """A sample of the counters now."""
        now = self.clock() if now is None else now
        processed = self.processed()
        if final:
            elapsed = now - self._started
            rate = processed / elapsed if elapsed > 0 else 0.0
        else:
            elapsed = now - self._last
            rate = (processed - self._last_processed) / elapsed if elapsed > 0 else 0.0
        buf = self.buffer
        size = buf.size if buf is not None else 0
        fill = (buf.rows / size if size else 0.0) if buf is not None else 0.0
        return InstanceMetrics(
            flow=self.flow,
            flow_run=self.flow_run,
            step=self.step,
            instance=self.index,
            instances=self.count,
            state=self.state,
            rows_in=self.rows_in,
            rows_out=dict(self.rows_out),
            errors=self.errors,
            rows_per_s=round(rate, 1),
            buffer_fill=round(fill, 4),
            buffer_size=size,
            counters=dict(self.counters),
        )

    def emit(self, final: bool = False) -> InstanceMetrics:
        """Send one sample to every sink now (the final one also becomes ``final_sample``)."""
        with self._lock:
            now = self.clock()
            snap = self.sample(now, final)
            self._last = now
            self._last_processed = self.processed()
            self._changed = False
            if final:
                self._final = snap
        fields = snap.as_dict()
        for sink in self.sinks:
            sink(dict(fields))
        return snap

    def finish(self, state: State) -> InstanceMetrics:
        """Set the last state and send the final sample."""
        self.set_state(state)
        return self.emit(final=True)

    @property
    def final_sample(self) -> InstanceMetrics:
        """The final sample, or a current one if the instance has not finished."""
        return self._final if self._final is not None else self.sample(final=True)
