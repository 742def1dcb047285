"""Provides what the two halves of the Dask executor (its engine-facing side and its forwarder thread)
share: the record of a run, the timings of their calls to the cluster, and the dataset calls that differ
between releases of ``distributed``."""

from __future__ import annotations

import asyncio
import functools
import inspect
from dataclasses import dataclass
from typing import Any

from ..worker import Task

RPC_TIMEOUT = 20.0
"""Seconds any one call to the scheduler may take before it is abandoned (and retried later)."""
CANCEL_GRACE = 2.0
"""Seconds a started run has to stop after it was interrupted before its future is cancelled."""
POLL_INTERVAL = 0.2
"""Seconds between looks at the futures in flight (errors, results that came without events)."""
HOUSEKEEPING_INTERVAL = 1.0
"""Seconds between looks at the connection and the workers."""
RECONNECT_INTERVAL = 2.0
"""Seconds between attempts to connect a new client once the old one gave up."""
QUEUE_WORKER = "dask-queue"
"""The worker name used for runs that ended without reaching a worker (cancelled while queued)."""


@functools.cache
def batched_datasets() -> bool:
    """Whether this distributed publishes, looks up and releases many datasets in one call (newer
    releases); older ones take one name per call."""
    from distributed.publish import PublishExtension

    return "names" in inspect.signature(PublishExtension.delete).parameters


async def get_datasets(client: Any, names: list[str]) -> list[Any]:
    """The datasets ``names`` (None for the missing ones)."""
    if batched_datasets():
        return list(await client._get_dataset(names, default=None))
    return list(await asyncio.gather(*(client._get_dataset(name, default=None) for name in names)))


async def unpublish_datasets(client: Any, names: list[str]) -> None:
    if batched_datasets():
        await client._unpublish_dataset(names)
    else:
        await asyncio.gather(*(client._unpublish_dataset(name) for name in names))


@dataclass(slots=True)
class Run:
    """A run the executor holds (orchestrator side; shared state under the executor's lock)."""

    task: Task
    name: str
    """Its dataset name on the scheduler (the same for every submission of the run)."""
    key: str = ""
    """Its Dask key (the name, with a suffix when it had to be submitted again)."""
    target: str | None = None
    """The worker it is pinned to (None: waiting for a usable worker)."""
    future: Any = None
    published: bool = False
    publishing: bool = False
    seen: int = 0
    """Highest message number passed on to the engine."""
    worker: str | None = None
    """The worker its start came from."""
    started: float | None = None
    """Engine-clock time the start message arrived."""
    cancel: str | None = None
    cancel_at: float | None = None
    finished_at: float | None = None
    """Monotonic time the future was seen finished (its done message normally came before)."""
