"""Provides how rows leave a step instance: gates, hops, lanes, round robin and stable partitioning."""

from __future__ import annotations

import traceback
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import RowFailure

if TYPE_CHECKING:
    from .channel import Inbox
    from .meter import Meter

Partition = Callable[[dict[str, Any]], Any]


def stable_hash(value: Any) -> int:
    """A non-negative hash equal for equal values in every process and run (unlike ``hash(str)``).

    Integers (and bools, and integral floats, which compare equal to them) hash to themselves;
    strings and bytes by CRC-32; tuples and lists combine their items; anything else hashes its
    ``repr``.
    """
    if isinstance(value, int):
        return abs(int(value))
    if isinstance(value, str):
        return zlib.crc32(value.encode("utf-8", "surrogatepass"))
    if value is None:
        return 0
    if isinstance(value, float):
        if value.is_integer():
            return abs(int(value))
        return zlib.crc32(repr(value).encode())
    if isinstance(value, (bytes, bytearray)):
        return zlib.crc32(value)
    if isinstance(value, (tuple, list)):
        acc = 0x345678
        for item in value:
            acc = (acc * 1000003 ^ stable_hash(item)) & 0xFFFFFFFFFFFF
        return acc
    return zlib.crc32(repr(value).encode("utf-8", "surrogatepass"))


def partition_function(spec: str | Partition | None) -> Partition | None:
    """A hop's ``partition`` setting as a function of the row (a field name reads that field)."""
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, str):
        name = spec
        return lambda row: row.get(name)
    raise TypeError(f"partition must be a field name or a function of the row, got {spec!r}")


class Route:
    """One hop as seen from one producer instance: where each chunk goes."""

    __slots__ = ("targets", "slots", "partition", "_next", "describe")

    def __init__(self, targets: list[Inbox], slots: list[int], partition: Partition | None, describe: str) -> None:
        self.targets = targets
        """The target instances' inboxes this producer feeds (one for a lane, all otherwise)."""
        self.slots = slots
        """The hop's slot in each target inbox."""
        self.partition = partition
        self._next = 0
        self.describe = describe

    def send(self, rows: list[Any], meter: Meter) -> None:
        """Deliver a chunk: to the lane, round robin by row, or by partition value."""
        targets = self.targets
        m = len(targets)
        if m == 1:
            targets[0].put(self.slots[0], rows, meter)
            return
        if self.partition is None:
            start = self._next
            self._next = (start + len(rows)) % m
            for k in range(m):
                part = rows[k::m]
                if part:
                    j = (start + k) % m
                    targets[j].put(self.slots[j], part, meter)
            return
        key = self.partition
        buckets: list[list[Any]] = [[] for _ in range(m)]
        row: Any = None
        try:
            for row in rows:
                buckets[stable_hash(key(row)) % m].append(row)
        except Exception as exc:
            raise RowFailure(
                f"{self.describe}: the partition function raised {type(exc).__name__}: {exc} on row {row!r}",
                "".join(traceback.format_exception(exc)),
            ) from exc
        for j, part in enumerate(buckets):
            if part:
                targets[j].put(self.slots[j], part, meter)

    def close(self) -> None:
        """This producer is done: every target counts one producer less."""
        for target in self.targets:
            target.close()


class Outlet:
    """The output side of a step instance: its routes per gate and the rows-out counters."""

    __slots__ = ("routes", "meter")

    def __init__(self, routes: dict[str, list[Route]], meter: Meter) -> None:
        self.routes = routes
        self.meter = meter

    def send(self, gate: str, rows: list[Any]) -> None:
        """Send ``rows`` through ``gate``: the first hop gets them, every further hop a copy of each row."""
        n = len(rows)
        if not n:
            return
        counts = self.meter.rows_out
        counts[gate] = counts.get(gate, 0) + n
        routes = self.routes.get(gate)
        if not routes:
            return
        if len(routes) == 1:
            routes[0].send(rows, self.meter)
            return
        copies = [rows] + [[dict(row) for row in rows] for _ in routes[1:]]
        for route, chunk in zip(routes, copies):
            route.send(chunk, self.meter)

    def close(self) -> None:
        """End of stream on every outgoing hop."""
        for routes in self.routes.values():
            for route in routes:
                route.close()
