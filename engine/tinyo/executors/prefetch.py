"""Provides how many tasks a pool worker may hold, from the pool's recent mean op time.

Fast ops are prefetched (several tasks in a worker's pipe) so that thousands of tiny ops per second do not
pay a round trip each, and a report carries many outcomes, so the loop runs one cycle (one commit, one
hand-over) for many of them. Once ops take longer, a worker holds one task at a time, so that no task waits
behind a long one while another worker is idle."""

from __future__ import annotations

FAST_OP = 0.002
"""Ops whose recent mean duration is below this many seconds are prefetched."""
PREFETCH = 24
"""Tasks a worker may hold when ops are fast, at least."""
PREFETCH_MAX = 256
"""Tasks a worker may hold when ops are very fast: ``QUEUED_WORK`` of them, at most this many."""
QUEUED_WORK = 0.005
"""Seconds of fast ops a worker may hold: what waits behind an op that takes far longer than ops have
lately (:func:`stall_limit`) is little, and is handed to an idle worker."""


def tasks_held(mean: float) -> int:
    """Tasks a worker may hold when ops take ``mean`` seconds."""
    if mean >= FAST_OP:
        return 1
    return min(PREFETCH_MAX, max(PREFETCH, int(QUEUED_WORK / mean) if mean > 0 else PREFETCH_MAX))


def stall_limit(mean: float) -> float:
    """Seconds after which an op that started counts as stalled when ops take ``mean`` seconds."""
    return max(0.05, 20 * mean)
