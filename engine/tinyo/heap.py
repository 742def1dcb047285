"""Provides ``settle``: the cyclic garbage collector set for the engine's process once it is built.

The engine keeps state per file for a while (its graph nodes, cached file states, run rows) until they
are committed and evicted, so a burst grows the young generation steadily: with Python's default first
threshold (700 allocations) a 10,000-file burst ran some 300 young collections and a few full ones,
each full one walking every object the modules and the recipe made at start (about 20,000). Measured
with ``gc.callbacks`` on the engine's process over ``bench_engine.py --only burst_tmpfs``: 87 to 101 ms
of collection (some 9 us per file), 15 ms with the settings below.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations (less deallocations) between young collections: cyclic garbage waits for at most this many
new objects, a bounded amount, while a burst runs a handful of collections instead of hundreds."""


def settle(young: int = YOUNG, middle: int = 10, old: int = 10) -> None:
    """Call once the engine's modules and the recipe are loaded (it is built), before it starts: what exists
    now lives as long as the process, so it is moved out of the collector's sight (``gc.freeze``), and young
    collections run less often (``middle``/``old``: young/middle collections before an older one is
    considered). Process-wide: for the processes tinyo's commands own, not a library call."""
    gc.freeze()
    gc.set_threshold(young, middle, old)
