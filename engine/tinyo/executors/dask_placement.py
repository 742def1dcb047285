"""Provides where the Dask executor pins each run: pure arithmetic over the workers' threads and the
runs already pinned to each, testable without a cluster."""

from __future__ import annotations

from collections.abc import Sequence


def place(count: int, workers: dict[str, int], load: dict[str, int], turn: int, sticky: int) -> list[str | None]:
    """The worker for each of ``count`` runs (None: no usable worker), counting them into ``load``.

    ``workers``: usable worker address -> threads; ``load``: runs pinned to each (updated); ``turn``: which
    worker ties go to first (the caller moves it on per call); ``sticky``: runs per thread a batch may put
    on the worker it started on before moving on (1: spread every run to the least loaded worker)."""
    addrs: Sequence[str] = sorted(workers)
    if addrs:
        start = turn % len(addrs)
        addrs = [*addrs[start:], *addrs[:start]]  # ties go round
    out: list[str | None] = []
    current: str | None = None
    for _ in range(count):
        if current is None or load.get(current, 0) >= workers[current] * sticky:
            current = min(addrs, key=lambda a: load.get(a, 0) / workers[a]) if addrs else None
        out.append(current)
        if current is not None:
            load[current] = load.get(current, 0) + 1
    return out
