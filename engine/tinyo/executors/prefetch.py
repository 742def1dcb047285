"""Provides how many tasks a pool worker may hold, from the pool's recent mean op time.

Fast ops are prefetched (several tasks in a worker's pipe) so that thousands of tiny ops per second do not
pay a round trip each, and a report carries many outcomes, so the loop runs one cycle (one commit, one
hand-over) for many of them. Once ops take longer, a worker holds one task at a time, so that no task waits
behind a long one while another worker is idle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..worker_launch import Worker

FAST_OP = 0.002
"""Ops whose recent mean duration is below this many seconds are prefetched."""
PREFETCH = 24
"""Tasks a worker may hold when ops are fast, at least."""
PREFETCH_MAX = 256
"""Tasks a worker may hold when ops are very fast: ``QUEUED_WORK`` of them, at most this many."""
QUEUED_WORK = 0.005
"""Seconds of fast ops a worker may hold: what waits behind an op that takes far longer than ops have
lately (:func:`stall_limit`) is little, and is handed to an idle worker."""
REPORT_DUE = 0.003
"""Seconds within which a worker holding fast ops reports (it sends when it runs out of work, or 2 ms after its
oldest report waiting: ``worker_process.SEND_AFTER``), with a little room for its process to be scheduled."""


def tasks_held(mean: float) -> int:
    """Tasks a worker may hold when ops take ``mean`` seconds."""
    if mean >= FAST_OP:
        return 1
    return min(PREFETCH_MAX, max(PREFETCH, int(QUEUED_WORK / mean) if mean > 0 else PREFETCH_MAX))


def stall_limit(mean: float) -> float:
    """Seconds after which an op that started counts as stalled when ops take ``mean`` seconds."""
    return max(0.05, 20 * mean)


NONE_DUE: tuple[list[int], float] = ([], 0.0)
"""What :func:`reports_due` says when no report is due in a moment (its list is never added to)."""


def reports_due(workers: Iterable[Worker], mean: float, lock: threading.Lock) -> tuple[list[int], float]:
    """The report pipes of the workers whose report comes within moments, and within how many seconds at most:
    those holding fast ops not yet reported, none of them stalled. The loop, woken by one worker's report alone,
    waits that long for theirs (``Waker.linger``): one cycle and one commit for both, where a burst's files
    trickling in would make a cycle of each (and a chain's link, the only op held, waits for nothing)."""
    if mean >= FAST_OP:
        return NONE_DUE
    for worker in workers:  # looked at without the lock first (a hint, looked at again under it): a chain's link
        if worker.inflight:  # comes back with no other worker holding an op, and its way to the loop stays short
            break
    else:
        return NONE_DUE
    now, limit = time.monotonic(), stall_limit(mean)
    with lock:  # a pipe closed (a worker being replaced) has no file descriptor left: never waited for
        return [w.result_conn.fd for w in workers if w.inflight and not w.dead and not w.eof
                and w.result_conn is not None and w.result_conn.fd >= 0
                and not (w.started_mono and now - next(iter(w.started_mono.values())) > limit)], REPORT_DUE
