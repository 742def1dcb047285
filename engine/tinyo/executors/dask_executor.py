"""Provides the Dask executor: ops run on the workers of a ``dask.distributed`` cluster.

How it works (see docs/scaling-out.md for the user's view):

- **Addressing.** A task is the same ``Task`` the process pool gets (recipe path + ``module:qualname``
  refs); a Dask worker imports the recipe by path and runs it with ``worker.run_task``. The recipe
  must be at the same path on every worker (a shared folder): ``start`` checks every worker with
  ``client.run`` (the file is there, has the orchestrator's content, and imports) and raises a
  TinyoError naming the worker otherwise. Workers that join later are checked when they join.
- **Keys and placement.** Each run is pinned to one worker (``workers=[w]``,
  ``allow_other_workers=False``; the least loaded one, see ``_place``) and submitted under the key
  ``tinyo-<ns>-<run_id>-<des_id>`` (``-<n>`` added when it has to be submitted again), where ``<ns>``
  is derived from the host and the absolute path of the state file. It is also published as a named
  dataset ``tinyo-<ns>-<run_id>-<des_id>`` (future, des_id, attempt, worker): the dataset keeps the
  task alive on the cluster when the orchestrator goes away, and is how a restarted orchestrator
  finds it.
- **Messages.** On the worker, start/out/metric/done messages are numbered per run and sent in
  batches (every ``FLUSH_INTERVAL`` seconds, and at once when the run ends) as Dask events
  (``Worker.log_event``) on the topic ``tinyo-<ns>``; the orchestrator's client subscribes to it and
  one forwarder thread hands them to the engine's sink. The run's final result also carries its
  start, the last ``RESULT_TAIL`` output lines and done (for runs that ended while nobody listened);
  numbering lets the forwarder drop what it has already passed on.
- **Decoupling.** On a remote cluster, stopping the orchestrator leaves running runs on the cluster
  (``detached()``) and their runs open in the store; ``reconcile`` looks each one up by its dataset:
  finished → its result is reported (start/out/done), still running or waiting on its (live) worker
  → awaited, unknown, failed in Dask, or pinned to a worker that is gone → not adopted, so the
  engine runs it again. A ``local-dask`` cluster lives in the orchestrator's process and stops with it.
- **Lost workers.** Tasks are submitted with ``retries=0`` and pinned, so Dask never runs a task
  again elsewhere when its worker dies (it would otherwise, behind the engine's back). The forwarder
  listens to the scheduler's ``remove-worker`` events: a run whose start came from that worker is
  reported lost (the engine fails it and its retry policy applies); runs only waiting there are
  pinned to another worker and submitted again; the old tasks are cancelled. A worker sends a run's
  start at once, so the window in which a run has started unbeknownst to the orchestrator is a few
  milliseconds.
- **Scheduler unreachable.** ``start`` raises a TinyoError naming the address. Later on,
  ``free_slots()`` is 0 while the client is not connected (ops stay queued in the store); when it is
  back (or a new client connects), runs in flight are looked up again by dataset, and dispatch
  resumes.
- **Cancel / timeout.** A run that has started is interrupted in its worker thread (``client.run``
  raising CancelledRun in that thread, like the thread executor does); if it has not stopped after
  ``CANCEL_GRACE`` seconds, or had not started, its future is cancelled and the run reported done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import inspect
import os
import queue
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import RecipeError, TinyoError
from ..messages import WorkerLost, WorkerReports, WorkerState
from ..worker import Task
from .base import Sink, WorkerInfo
from .dask_placement import place
from .dask_worker import check_recipe, content_digest, executing_keys, interrupt, run_on_worker

LOCAL = "local-dask"
"""The address that makes the executor start its own LocalCluster (for trying it out)."""
CONNECT_TIMEOUT = 10.0
"""Seconds to reach the scheduler at start (at most; less if Dask's ``distributed.comm.timeouts.connect``
is set lower, e.g. ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=2s``)."""
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
FAST_OP = 0.05
"""Ops whose recent mean duration is below this many seconds are submitted deeper (else 2 per thread)."""
FAST_WINDOW = 32
"""Tasks pinned per worker thread when ops are fast (they wait on the worker: no round trip between)."""
EVENTS_MAX = 10_000
"""Batches of worker messages and cluster events waiting for the forwarder. Past it, the client's event
loop drops new ones rather than wait (it must never block): a run whose messages were dropped is
collected from its future's result (start, the last RESULT_TAIL output lines, done), a worker's
coming and going from the scheduler's list of workers."""
QUEUE_WORKER = "dask-queue"
"""The worker name used for runs that ended without reaching a worker (cancelled while queued)."""


def _namespace(store_path: str | None) -> str:
    if not store_path or store_path == ":memory:":
        return uuid.uuid4().hex[:12]
    text = f"{socket.gethostname()}\0{os.path.abspath(store_path)}"
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _connect_timeout() -> float:
    import dask
    from dask.utils import parse_timedelta

    configured = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect", "30s"), default="seconds")
    return min(CONNECT_TIMEOUT, configured or CONNECT_TIMEOUT)


@functools.cache
def _batched_datasets() -> bool:
    """Whether this distributed publishes, looks up and releases many datasets in one call (newer
    releases); older ones take one name per call."""
    from distributed.publish import PublishExtension

    return "names" in inspect.signature(PublishExtension.delete).parameters


async def _get_datasets(client: Any, names: list[str]) -> list[Any]:
    """The datasets ``names`` (None for the missing ones)."""
    if _batched_datasets():
        return list(await client._get_dataset(names, default=None))
    return list(await asyncio.gather(*(client._get_dataset(name, default=None) for name in names)))


async def _unpublish_datasets(client: Any, names: list[str]) -> None:
    if _batched_datasets():
        await client._unpublish_dataset(names)
    else:
        await asyncio.gather(*(client._unpublish_dataset(name) for name in names))



@dataclass(slots=True)
class _Run:
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


class DaskExecutor:
    """Ops on a dask.distributed cluster."""

    name = "dask"

    def __init__(self, recipe_path: str, address: str, max_workers: int, sink: Sink,
                 clock: Callable[[], float], store_path: str | None = None) -> None:
        self.recipe_path = str(Path(recipe_path).resolve())
        self.address = address
        self.max_workers = max_workers
        self.sink = sink
        self.clock = clock
        self.ns = _namespace(store_path)
        self.topic = f"tinyo-{self.ns}"
        self.digest = ""
        self.local = address == LOCAL
        self._cluster: Any = None
        self._client: Any = None
        self._lock = threading.RLock()
        self._runs: dict[int, _Run] = {}
        self._workers: dict[str, int] = {}
        """Usable workers → threads."""
        self._unusable: dict[str, str] = {}
        """Workers that cannot run the recipe → why."""
        self._load: dict[str, int] = {}
        """Runs pinned to each worker."""
        self._submissions: dict[int, int] = {}
        self._rr = 0
        self._connected = False
        self._q: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=EVENTS_MAX)
        """From the client's event loop: ("ev", batch) and ("sys", cluster event); bounded, never waited on."""
        self._control: deque[tuple[Any, ...]] = deque()
        """From the engine and the forwarder's own calls: cancel, unpublish, notice, stop. Bounded by the runs
        in flight (free_slots bounds them); a deque hands items over without a lock."""
        self._dropped = 0
        """Items the client's event loop could not queue (written by that thread only)."""
        self._dropped_seen = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._mean = 1.0
        self._stale: set[str] | None = None
        self._stale_settled = False
        self._to_unpublish: list[str] = []
        self._detached: list[int] = []
        self._last_connect_try = 0.0
        self._inflight_calls: set[concurrent.futures.Future[Any]] = set()

    # ================================================================ lifecycle
    def start(self) -> None:
        import distributed

        try:
            self.digest = content_digest(Path(self.recipe_path).read_bytes())
        except OSError as exc:
            raise RecipeError(f"{self.recipe_path}: cannot read the recipe ({exc})") from exc
        if self.local:
            self._start_local_cluster(distributed)
            address = self._cluster.scheduler_address
        else:
            address = self.address
        try:
            self._client = distributed.Client(address, timeout=_connect_timeout(), set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise TinyoError(
                f"cannot reach the Dask scheduler at {address} ({exc}); start one with `dask scheduler` "
                f"and workers with `dask worker {address}` (docs/scaling-out.md)"
            ) from None
        try:
            self._check_workers()
            self._subscribe()
            self._stale = {name for name in self._rpc(self._client.scheduler.publish_list)
                           if isinstance(name, str) and name.startswith(self.topic + "-")}
        except BaseException:
            self._close_client()
            self._close_cluster()
            raise
        self._connected = True
        self._thread = threading.Thread(target=self._forward_loop, name="tinyo-dask-forwarder", daemon=True)
        self._thread.start()

    def _start_local_cluster(self, distributed: Any) -> None:
        import logging

        import dask

        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            self._cluster = distributed.LocalCluster(
                n_workers=self.max_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=logging.ERROR,
            )

    def _check_workers(self) -> None:
        client = self._client
        workers = client.nthreads()
        if not workers:
            try:
                client.wait_for_workers(1, timeout=5)
            except TimeoutError:
                pass  # ops stay queued until a worker joins; it is checked when it joins
            workers = client.nthreads()
        problems = self._check_recipe_on(list(workers))
        if problems:
            lines = "\n".join(f"  {addr}: {why}" for addr, why in sorted(problems.items()))
            raise TinyoError(
                f"{len(problems)} of {len(workers)} Dask worker(s) at {self._where()} cannot run this recipe:\n{lines}\n"
                "tinyo runs ops on Dask workers by importing the recipe at the same path as here: put the "
                "recipe folder on a shared file system mounted at the same path on every worker, and install "
                'tinyo there (pip install "tinyo[dask]")'
            )
        with self._lock:
            self._workers = dict(workers)
        for addr, n in sorted(workers.items()):
            self.sink(WorkerState(addr, None, "idle", f"dask worker ({n} thread{'s' if n != 1 else ''})"))

    def _check_recipe_on(self, addresses: list[str]) -> dict[str, str]:
        """Worker address → why it cannot run the recipe (only the ones that cannot)."""
        if not addresses:
            return {}
        results = self._rpc(self._client._run, check_recipe, self.recipe_path, self.digest, workers=addresses,
                            on_error="return")
        problems: dict[str, str] = {}
        for addr, result in results.items():
            if isinstance(result, BaseException):
                if isinstance(result, ModuleNotFoundError) and (result.name or "").startswith("tinyo"):
                    problems[addr] = 'tinyo is not installed there (pip install "tinyo[dask]")'
                else:
                    problems[addr] = f"{type(result).__name__}: {result}"
            elif result is not None:
                problems[addr] = str(result)
        return problems

    def _subscribe(self) -> None:
        client = self._client
        client.subscribe_topic(self.topic, lambda event: self._offer(("ev", event[1])))
        client.subscribe_topic("all", lambda event: self._offer(("sys", event[1]))
                               if isinstance(event[1], dict)
                               and event[1].get("action") in ("add-worker", "remove-worker") else None)

    def _offer(self, item: tuple[Any, ...]) -> None:
        """Queue ``item`` for the forwarder without waiting (the client's event loop calls this)."""
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self._dropped += 1  # recovered from results and the worker list (see EVENTS_MAX)

    def _hand_over(self, item: tuple[Any, ...]) -> None:
        """Hand a control item to the forwarder (any thread, never waits)."""
        self._control.append(item)
        try:
            self._q.put_nowait(("wake",))
        except queue.Full:
            pass  # the forwarder has plenty to wake it

    def _where(self) -> str:
        return f"{self.address}" + (f" ({self._cluster.scheduler_address})" if self._cluster is not None else "")

    def _rpc(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a client coroutine function from a non-loop thread, bounded by RPC_TIMEOUT."""
        return self._client.sync(fn, *args, callback_timeout=RPC_TIMEOUT, **kwargs)

    def dataset(self, task: Task) -> str:
        """The dataset name of a run on the scheduler (also its Dask key when first submitted)."""
        return f"{self.topic}-{task.run_id}-{task.des_id}"

    # ================================================================ dispatch (engine thread)
    def _per_thread(self) -> int:
        return FAST_WINDOW if self._mean < FAST_OP else 2

    def free_slots(self) -> int:
        with self._lock:
            if not self._connected or self._stopping:
                return 0
            per = self._per_thread()
            return sum(max(0, n * per - self._load.get(addr, 0)) for addr, n in self._workers.items())

    def submit(self, tasks: list[Task]) -> None:
        runs = [_Run(task, self.dataset(task)) for task in tasks]
        with self._lock:
            self._stale_settled = True
            for run in runs:
                self._runs[run.task.run_id] = run
            self._place(runs)
            connected = self._connected
        if connected:
            self._submit_runs(runs)
        self._hand_over(("submitted",))

    def _place(self, runs: list[_Run]) -> None:
        """Pin each run to a usable worker (lock held); None if there is none.

        Runs are pinned (``workers=[w], allow_other_workers=False``) so that Dask never runs one again
        on another worker when its worker dies: the executor decides (lost if it had started, else
        placed again), and the engine's retry policy applies. A run goes to the least loaded worker
        (runs per thread), except that a batch stays on the worker it started on while that one has
        an idle thread (fast ops: room in its window): fewer, larger submissions for the scheduler."""
        sticky = self._per_thread() if self._mean < FAST_OP else 1
        targets = place(len(runs), self._workers, self._load, self._rr, sticky)
        self._rr += 1
        for run, target in zip(runs, targets):
            n = self._submissions.get(run.task.run_id, 0) + 1
            self._submissions[run.task.run_id] = n
            run.key = run.name if n == 1 else f"{run.name}-{n}"
            run.future, run.published, run.worker, run.started, run.seen = None, False, None, None, 0
            run.target = target

    def _submit_runs(self, runs: list[_Run]) -> None:
        """Submit placed runs to the cluster (any thread); the forwarder publishes them."""
        groups: dict[str, list[_Run]] = {}
        for run in runs:
            if run.target is not None:
                groups.setdefault(run.target, []).append(run)
        with self._lock:
            client = self._client  # (swapped by the forwarder when it connects anew)
        for target, group in groups.items():
            try:
                futures = client.map(
                    run_on_worker, [r.task for r in group], key=[r.key for r in group], topic=self.topic,
                    digest=self.digest, workers=[target], allow_other_workers=False, pure=False, retries=0,
                )
            except Exception as exc:  # a client that just lost its scheduler: submitted again on reconnect
                self._notice(f"could not submit {len(group)} run(s) to the Dask scheduler at {self._where()}: "
                             f"{exc}; they are submitted again when it is reachable")
                continue
            with self._lock:
                for run, future in zip(group, futures):
                    if self._runs.get(run.task.run_id) is run and run.target == target:
                        run.future = future

    def cancel(self, run_id: int, cause: Literal["cancel", "timeout"] = "cancel") -> bool:
        with self._lock:
            if run_id not in self._runs:
                return False
        self._hand_over(("cancel", run_id, cause))
        return True

    def running(self) -> dict[int, float]:
        with self._lock:
            return {rid: r.started for rid, r in self._runs.items() if r.started is not None}

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            out = []
            started: dict[str, list[_Run]] = {}
            for run in self._runs.values():
                if run.worker is not None:
                    started.setdefault(run.worker, []).append(run)
            for addr in sorted(set(self._workers) | set(self._unusable)):
                mine = sorted(started.get(addr, ()), key=lambda r: r.started or 0.0)
                if not self._connected or addr in self._unusable:
                    out.append(WorkerInfo(addr, None, "dead", None, None, None, None))
                elif mine:
                    first = mine[0]
                    label = first.task.op_label + (f" (+{len(mine) - 1})" if len(mine) > 1 else "")
                    out.append(WorkerInfo(addr, None, "busy", first.task.run_id, first.task.des_id, label,
                                          first.started))
                else:
                    out.append(WorkerInfo(addr, None, "idle", None, None, None, None))
            return out

    def detached(self) -> list[int]:
        """After ``shutdown``: the runs left running on the cluster, to be reconciled at the next start."""
        return list(self._detached)

    # ================================================================ shutdown
    def shutdown(self, grace: float) -> list[int]:
        """Stop forwarding. On a remote cluster, runs in flight keep running there (see ``detached``);
        a local cluster stops, and its runs with it. Returns the run ids not finished."""
        if self._stopping:
            return []
        self._stopping = True
        self._hand_over(("stop",))
        if self._thread is not None:
            self._thread.join(timeout=RPC_TIMEOUT + 5)
        if self._client is not None and self._connected and not self.local:
            # the runs in flight must be registered before the client goes, or they go with it
            self._wait_calls(RPC_TIMEOUT)
            self._publish_pending()
            self._unpublish_pending()
            self._wait_calls(RPC_TIMEOUT)
        with self._lock:
            unfinished = sorted(self._runs)
            published = [rid for rid, r in self._runs.items() if r.published]
        if not self.local:
            # (even if the scheduler is unreachable now: the next start looks them up, and runs again
            # the ones the cluster no longer knows)
            self._detached = published
        elif self._client is not None and self._connected:
            futures = [r.future for r in self._runs.values() if r.future is not None]
            if futures:
                try:
                    self._client.cancel(futures, force=True)
                except Exception as exc:  # the cluster is going away with us anyway
                    print(f"tinyo: could not cancel runs on the local Dask cluster: {exc}", file=sys.stderr)
        self._close_client()
        self._close_cluster()
        return unfinished

    def _close_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            for topic in (self.topic, "all"):
                try:
                    client.unsubscribe_topic(topic)
                except (ValueError, KeyError):
                    pass  # not subscribed (start failed before it)
            try:
                client.close(timeout=5)
            except Exception as exc:  # closing a client whose scheduler is gone may time out
                print(f"tinyo: closing the Dask client: {exc}", file=sys.stderr)

    def _close_cluster(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            try:
                cluster.close(timeout=10)
            except Exception as exc:  # a worker that does not stop in time is killed by its nanny
                print(f"tinyo: closing the local Dask cluster: {exc}", file=sys.stderr)

    # ================================================================ reconcile (engine thread, once)
    def reconcile(self, tasks: list[Task]) -> list[int]:
        """Adopt the runs left open by the last engine that are still alive on the cluster."""
        client = self._client
        release: list[str] = []
        by_name = {self.dataset(t): t for t in tasks}
        names = list(by_name)
        found = self._rpc(_get_datasets, client, names) if names else []
        candidates: list[tuple[Task, Any, str]] = []
        for name, data in zip(names, found):
            task = by_name[name]
            if data is None:
                continue
            future, des_id, attempt, target = data
            if des_id != task.des_id or attempt != task.attempt:
                release.append(name)
                continue
            candidates.append((task, future, target))
        with self._lock:
            stale = (self._stale or set()) - {self.dataset(t) for t, _, _ in candidates}
            self._stale = set()
        release.extend(sorted(stale))
        if not candidates:
            self._hand_over(("unpublish", release))
            return []
        # the scheduler tells the new client about these keys asynchronously: ask it directly
        keys = [f.key for _, f, _ in candidates]
        holders = self._rpc(client.scheduler.who_has, keys=keys)
        processing = self._rpc(client.scheduler.processing)
        where = {k: addr for addr, ks in processing.items() for k in ks}
        # pinned tasks are "processing" while they wait on their worker too: which ones run?
        addrs = sorted({where[k] for k in keys if k in where})
        executing: set[str] = set()
        if addrs:
            answers = self._rpc(client._run, executing_keys, self.topic, workers=addrs, on_error="return")
            for answer in answers.values():
                if isinstance(answer, list):
                    executing.update(answer)
        finished: list[tuple[Task, Any]] = []
        adopted: list[int] = []
        gone: list[Any] = []
        for task, future, target in candidates:
            name = self.dataset(task)
            if holders.get(future.key):
                finished.append((task, future))
            elif future.key in where and target in self._workers:
                run = _Run(task, name, future.key, target, future, published=True)
                addr = where[future.key]
                with self._lock:
                    self._runs[task.run_id] = run
                    self._load[target] = self._load.get(target, 0) + 1
                    self._submissions[task.run_id] = 1
                    if future.key in executing:
                        run.worker, run.started = addr, self.clock()
                if future.key in executing:  # (its own start message went out while nobody listened)
                    self.sink(WorkerReports(addr, [("start", task.run_id, (addr, time.time()))]))
                adopted.append(task.run_id)
            else:  # its worker is gone (or it failed in Dask): the engine runs it again
                release.append(name)
                gone.append(future)
        if gone:
            try:
                self._rpc(client._cancel, gone, force=True, reason="tinyo: lost", msg="its worker is gone")
            except Exception as exc:  # they stay pinned to a worker that is gone: they never run
                self._notice(f"could not cancel {len(gone)} lost run(s) on the Dask cluster: {exc}")
        if finished:
            try:
                results = self._rpc(client._gather, [f for _, f in finished], errors="skip")
            except Exception as exc:  # results lost with their worker: those runs are run again
                self._notice(f"could not collect {len(finished)} finished run(s) from the Dask cluster: {exc}")
                results = []
            got = {id(f): r for (_, f), r in zip(finished, results)} if len(results) == len(finished) else {}
            for task, future in finished:
                result = got.get(id(future))
                release.append(self.dataset(task))
                if not isinstance(result, dict):
                    continue
                self._report_result(task.run_id, result, seen=0)
                adopted.append(task.run_id)
        self._hand_over(("unpublish", release))
        return adopted

    # ================================================================ forwarder thread
    def _forward_loop(self) -> None:
        next_poll = time.monotonic() + POLL_INTERVAL
        next_house = time.monotonic() + HOUSEKEEPING_INTERVAL
        while True:
            timeout = max(0.0, min(next_poll, next_house) - time.monotonic())
            items: list[tuple[Any, ...]] = []
            try:
                items.append(self._q.get(timeout=timeout))
                while len(items) < 5000:
                    items.append(self._q.get_nowait())
            except queue.Empty:
                pass
            control = self._control
            while control:
                items.append(control.popleft())
            stop = False
            try:
                for item in items:
                    kind = item[0]
                    if kind == "ev":
                        self._on_event(item[1])
                    elif kind == "sys":
                        self._on_cluster_event(item[1])
                    elif kind == "cancel":
                        self._on_cancel(item[1], item[2])
                    elif kind == "notice":
                        self._notice(item[1])
                    elif kind == "unpublish":
                        self._to_unpublish.extend(item[1])
                    elif kind == "stop":
                        stop = True
                now = time.monotonic()
                if self._dropped != self._dropped_seen:
                    self._notice(f"the Dask executor fell behind and skipped {self._dropped - self._dropped_seen} "
                                 "message batch(es); runs are collected from their results instead")
                    self._dropped_seen = self._dropped
                    if self._connected:
                        self._refresh_workers()
                if self._connected:
                    self._publish_pending()
                if now >= next_poll or stop:
                    next_poll = now + POLL_INTERVAL
                    if self._connected:
                        self._poll_futures()
                if now >= next_house:
                    next_house = now + HOUSEKEEPING_INTERVAL
                    self._housekeeping()
                if self._connected:
                    self._unpublish_pending()
            except Exception as exc:  # keep forwarding; say what went wrong
                self._notice(f"Dask executor: {type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stderr)
            if stop:
                return

    # ------------------------------------------------------------ messages from the workers
    def _on_event(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        worker = str(msg.get("w", "?"))
        out: list[tuple[str, int, Any]] = []
        with self._lock:
            for seq, kind, run_id, payload in msg.get("m", ()):
                run = self._runs.get(run_id)
                if run is None or seq <= run.seen or run.target != worker:
                    continue  # over, seen already, or from a submission that was given up
                run.seen = seq
                out.append(self._account(run, worker, kind, payload))
        if out:
            self.sink(WorkerReports(worker, out))

    def _account(self, run: _Run, worker: str, kind: str, payload: Any) -> tuple[str, int, Any]:
        """Track one message of ``run`` (lock held) and return it in the engine's form."""
        rid = run.task.run_id
        if kind == "start":
            run.worker, run.started = worker, self.clock()
            return ("start", rid, tuple(payload))
        if kind == "done":
            self._forget(run)
            self._mean = self._mean * 0.7 + float(payload[4]) * 0.3
            return ("done", rid, tuple(payload))
        if kind == "out":
            return ("out", rid, tuple(payload))
        return (kind, rid, payload)

    def _unpin(self, run: _Run) -> None:
        """Take the run off its worker's load (lock held)."""
        if run.target is not None and self._load.get(run.target):
            self._load[run.target] -= 1

    def _forget(self, run: _Run) -> Any:
        """The run is over for the executor (lock held): drop it, queue its dataset's release, and
        return its future (None if it had none)."""
        rid = run.task.run_id
        self._runs.pop(rid, None)
        self._submissions.pop(rid, None)
        self._unpin(run)
        future, run.future = run.future, None
        self._to_unpublish.append(run.name)
        return future

    def _report_result(self, run_id: int, result: dict[str, Any], seen: int) -> None:
        """Pass on what a run's result carries beyond message ``seen`` (start, output tail, done)."""
        worker = str(result.get("worker") or QUEUE_WORKER)
        msgs = [m for m in result.get("msgs", ()) if m[0] > seen]
        out: list[tuple[str, int, Any]] = []
        dropped = result.get("dropped", 0) if seen == 0 else 0
        for _seq, kind, _rid, payload in msgs:
            if kind == "out" and dropped and not any(k == "out" for k, _, _ in out):
                out.append(("out", run_id, ("stderr", f"[tinyo] {dropped} earlier output line(s) of this run "
                                                      "are not shown (printed while nobody listened)")))
            out.append((kind, run_id, tuple(payload) if kind != "metric" else payload))
        if out:
            self.sink(WorkerReports(worker, out))

    # ------------------------------------------------------------ cluster events
    def _on_cluster_event(self, msg: dict[str, Any]) -> None:
        action = msg.get("action")
        addr = str(msg.get("worker", ""))
        if action == "add-worker":
            self._on_worker_added(addr)
        elif action == "remove-worker":
            self._on_worker_removed(addr, bool(msg.get("expected")))

    def _on_worker_added(self, addr: str) -> None:
        with self._lock:
            if addr in self._workers or addr in self._unusable:
                return  # seen already (by the periodic look, or the event)
        try:
            nthreads = self._rpc(self._client.scheduler.ncores, workers=[addr]).get(addr, 1)
            problems = self._check_recipe_on([addr])
        except Exception as exc:  # it may have left again already; the periodic look tries again
            self._notice(f"Dask worker {addr} joined but could not be checked: {exc}")
            return
        if problems:
            with self._lock:
                self._unusable[addr] = problems[addr]
            self._notice(f"Dask worker {addr} joined but cannot run this recipe ({problems[addr]}); tinyo sends "
                         "it no ops")
            self.sink(WorkerState(addr, None, "dead", f"cannot run the recipe: {problems[addr]}"))
            return
        with self._lock:
            self._workers[addr] = nthreads
            waiting = [r for r in self._runs.values() if r.target is None]
            self._place(waiting)
        if waiting:
            self._submit_runs(waiting)
        self.sink(WorkerState(addr, None, "idle", "dask worker joined"))  # (also wakes the engine: more room)

    def _on_worker_removed(self, addr: str, expected: bool) -> None:
        """A worker left: the runs that had started on it are lost (the engine fails them and its retry
        policy decides); the ones only waiting there are placed on another worker."""
        with self._lock:
            if addr not in self._workers and addr not in self._unusable:
                return  # reported already
            self._workers.pop(addr, None)
            self._unusable.pop(addr, None)
            self._load.pop(addr, None)
            mine = [r for r in self._runs.values() if r.target == addr]
            lost = [r for r in mine if r.worker == addr]
            again = [r for r in mine if r.worker != addr]
            futures = [r.future for r in mine if r.future is not None]
            for run in lost:
                self._forget(run)
            for run in again:
                run.target = None
            self._place(again)
        how = "left the cluster" if expected else "died (or stopped answering)"
        if futures:  # pinned to a worker that is gone: they would never run (and must not run again)
            try:
                self._rpc(self._client._cancel, futures, force=True, reason="tinyo: worker lost",
                          msg=f"Dask worker {addr} {how}")
            except Exception as exc:  # pinned to a gone worker, they cannot run anyway
                self._notice(f"could not cancel {len(futures)} run(s) of Dask worker {addr} that left: {exc}")
        if again:
            self._submit_runs(again)
        if not lost:
            self.sink(WorkerState(addr, None, "dead", f"Dask worker {how}"))
        for run in lost:
            self.sink(WorkerLost(addr, None, f"Dask worker {addr} {how}", run.task.run_id, run.cancel, []))

    # ------------------------------------------------------------ cancel
    def _on_cancel(self, run_id: int, cause: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            if run.cancel is None:
                run.cancel, run.cancel_at = cause, time.monotonic()
            worker, key, target = run.worker, run.key, run.target
        if worker is not None:
            try:
                self._rpc(self._client._run, interrupt, key, cause, workers=[worker], nanny=False,
                          on_error="return")
            except Exception as exc:  # the grace period ends it below
                self._notice(f"could not interrupt run {run_id} on Dask worker {worker}: {exc}")
            return
        self._end_cancelled(run, "cancelled before it started" if cause == "cancel"
                            else "timed out before it started")
        if target is not None:
            try:  # it may have just started: interrupt it there
                self._rpc(self._client._run, interrupt, key, cause, workers=[target], nanny=False,
                          on_error="return")
            except Exception as exc:  # its messages are ignored from now on anyway
                self._notice(f"could not reach Dask worker {target} to stop run {run_id}: {exc}")

    def _end_cancelled(self, run: _Run, error: str) -> None:
        """Report a run done (cancelled or timed out) without its worker's word, and cancel its future."""
        with self._lock:
            if self._runs.get(run.task.run_id) is not run:
                return
            worker = run.worker or run.target or QUEUE_WORKER
            future = self._forget(run)
        self.sink(WorkerReports(worker, [("done", run.task.run_id, (False, error, None, None, 0.0))]))
        if future is None:
            return
        try:
            self._rpc(self._client._cancel, [future], force=True, reason="tinyo: cancelled", msg=error)
        except Exception as exc:  # the task may still run; its result is ignored
            self._notice(f"could not cancel the Dask future of run {run.task.run_id}: {exc}")

    # ------------------------------------------------------------ futures
    def _publish_pending(self) -> None:
        """Publish new runs as datasets (one call for all of them, without waiting for it)."""
        with self._lock:
            todo = [r for r in self._runs.values() if not r.published and not r.publishing and r.future is not None]
            for run in todo:
                run.publishing = True
            # datasets left by an engine on this state file that has no open run for them any more;
            # kept until reconcile (or the first submit), so none it adopts is released before
            stale = self._stale if self._stale_settled else None
            if stale:
                self._stale = set()
        if stale:
            self._to_unpublish.extend(sorted(stale))
        if not todo:
            return
        data = {r.name: (r.future, r.task.des_id, r.task.attempt, r.target) for r in todo}
        futures = {r.name: r.future for r in todo}

        def done(error: BaseException | None) -> None:
            with self._lock:
                for run in todo:
                    run.publishing = False
                    if error is None and run.future is futures[run.name]:
                        run.published = True
            if error is not None:
                self._hand_over(("notice", f"could not register {len(todo)} run(s) with the Dask scheduler at "
                                       f"{self._where()} ({error}); trying again"))

        self._spawn(self._client._publish_dataset, done, override=True, **data)

    def _unpublish_pending(self) -> None:
        """Release the datasets of runs that are over (without waiting for it)."""
        if not self._to_unpublish:
            return
        names, self._to_unpublish = self._to_unpublish, []

        def done(error: BaseException | None) -> None:
            if error is not None:
                self._hand_over(("unpublish", names))

        self._spawn(_unpublish_datasets, done, self._client, names)

    def _spawn(self, fn: Callable[..., Any], done: Callable[[BaseException | None], None], *args: Any,
               **kwargs: Any) -> None:
        """Run the client coroutine ``fn(*args, **kwargs)`` on the client's loop; ``done(error)`` after."""
        client = self._client
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(fn(*args, **kwargs), RPC_TIMEOUT), client.loop.asyncio_loop)
        with self._lock:
            self._inflight_calls.add(future)

        def finished(f: concurrent.futures.Future[Any]) -> None:
            with self._lock:
                self._inflight_calls.discard(f)
            done(None if f.cancelled() or f.exception() is None else f.exception())

        future.add_done_callback(finished)

    def _wait_calls(self, timeout: float) -> None:
        """Wait for the calls started with ``_spawn`` (at shutdown)."""
        with self._lock:
            pending = list(self._inflight_calls)
        if pending:
            concurrent.futures.wait(pending, timeout=timeout)

    def _poll_futures(self) -> None:
        if self._client.status != "running":  # its futures were just cancelled by the client itself
            if self._connected:
                self._on_disconnected()
            return
        now = time.monotonic()
        collect: list[_Run] = []
        errors: list[_Run] = []
        overdue: list[_Run] = []
        with self._lock:
            for run in list(self._runs.values()):
                future = run.future
                if run.cancel is not None and run.cancel_at is not None and now - run.cancel_at > CANCEL_GRACE:
                    overdue.append(run)
                    continue
                if future is None:
                    continue
                status = future.status
                if status == "finished":
                    if run.finished_at is None:
                        run.finished_at = now
                    elif now - run.finished_at > 1.0:
                        collect.append(run)
                elif status in ("error", "cancelled", "lost"):
                    errors.append(run)
        for run in overdue:
            where = f" on Dask worker {run.worker}" if run.worker else ""
            what = "timed out" if run.cancel == "timeout" else "cancelled"
            self._end_cancelled(run, f"{what}; the op did not stop within {CANCEL_GRACE:g}s{where} (its thread runs on "
                                     "until its current call returns; its result is dropped)")
        if collect:
            try:
                results = self._rpc(self._client._gather, [r.future for r in collect], errors="skip")
            except Exception as exc:
                self._notice(f"could not collect {len(collect)} result(s) from the Dask cluster: {exc}")
                results = []
            for run, result in zip(collect, results):
                with self._lock:
                    if self._runs.get(run.task.run_id) is not run:
                        continue
                    seen = run.seen
                    self._forget(run)
                if isinstance(result, dict):
                    self._report_result(run.task.run_id, result, seen)
        for run in errors:
            self._on_future_failed(run)

    def _on_future_failed(self, run: _Run) -> None:
        future = run.future
        status = future.status if future is not None else "lost"
        rid = run.task.run_id
        if status == "cancelled" and (not self._connected or self._client.status != "running"):
            return  # the client lost its scheduler; handled when it is back
        if status == "cancelled" and run.cancel is not None:
            what = "cancelled" if run.cancel == "cancel" else "timed out"
            self._end_cancelled(run, f"{what}: the Dask future was cancelled")
            return
        exc: BaseException | None = None
        if status == "error":
            try:
                exc = future.exception(timeout=RPC_TIMEOUT)
            except Exception as err:  # the error itself could not be fetched
                exc = err
        with self._lock:
            if self._runs.get(rid) is not run:
                return
            worker = run.worker or run.target
            self._forget(run)
        killed = type(exc).__name__ == "KilledWorker"
        if killed or status == "lost":
            last = getattr(getattr(exc, "last_worker", None), "address", None) or worker or QUEUE_WORKER
            reason = f"Dask worker {last} died while running it (KilledWorker)" if killed else \
                "the Dask cluster lost the task"
            self.sink(WorkerLost(last, None, reason, rid, run.cancel, []))
            return
        if status == "cancelled":
            error = "the Dask future was cancelled on the cluster (not by tinyo)"
            tb = None
        else:
            error = f"Dask could not run the task: {type(exc).__name__}: {exc}"
            tb = "".join(traceback.format_exception(exc)) if exc is not None else None
        self.sink(WorkerReports(worker or QUEUE_WORKER, [("done", rid, (False, error, tb, None, 0.0))]))

    # ------------------------------------------------------------ connection and workers
    def _housekeeping(self) -> None:
        client = self._client
        if client is None:
            return
        status = client.status
        if status == "running":
            if not self._connected:
                self._on_reconnected()
            else:
                self._refresh_workers()
        elif status == "connecting":
            if self._connected:
                self._on_disconnected()
        else:  # closed: the client gave up reconnecting; try a new one now and then
            if self._connected:
                self._on_disconnected()
            if time.monotonic() - self._last_connect_try >= RECONNECT_INTERVAL and not self._stopping:
                self._last_connect_try = time.monotonic()
                self._try_new_client()

    def _refresh_workers(self) -> None:
        try:
            workers = self._rpc(self._client.scheduler.ncores)
        except Exception as exc:  # the connection check above catches a lasting problem
            self._notice(f"could not list the Dask workers at {self._where()}: {exc}")
            return
        with self._lock:
            known = set(self._workers) | set(self._unusable)
            gone = known - set(workers)
            new = set(workers) - known
            for addr, n in workers.items():
                if addr in self._workers:
                    self._workers[addr] = n
        for addr in sorted(gone):  # normally reported by a remove-worker event first
            self._on_worker_removed(addr, expected=False)
        for addr in sorted(new):
            self._on_worker_added(addr)

    def _on_disconnected(self) -> None:
        with self._lock:
            self._connected = False
            workers = sorted(self._workers)
        for addr in workers:
            self.sink(WorkerState(addr, None, "dead", f"the Dask scheduler at {self._where()} is unreachable"))
        self._notice(f"lost the connection to the Dask scheduler at {self._where()}; ops stay queued until it is "
                     "reachable again (runs already on the cluster are looked up then)")

    def _try_new_client(self) -> None:
        import distributed

        try:
            client = distributed.Client(self._cluster.scheduler_address if self._cluster else self.address,
                                        timeout=RECONNECT_INTERVAL, set_as_default=False)
        except (OSError, TimeoutError):
            return  # still unreachable
        with self._lock:  # the engine's thread submits through the client
            old, self._client = self._client, client
        try:
            old.close(timeout=1)
        except Exception as exc:  # it had given up already
            print(f"tinyo: closing the old Dask client: {exc}", file=sys.stderr)
        self._on_reconnected()

    def _on_reconnected(self) -> None:
        """The scheduler is reachable again: workers that went are handled as gone; each run in flight
        is looked up again (its dataset), and submitted again if the scheduler forgot it before it
        started (lost if it had started)."""
        client = self._client
        self._subscribe()
        with self._lock:
            before = {rid: r.key for rid, r in self._runs.items()}
        self._refresh_workers()  # (runs of workers that went are handled there, under new keys)
        with self._lock:
            runs = [r for rid, r in self._runs.items() if before.get(rid) == r.key]
        names = [r.name for r in runs if r.published]
        found = self._rpc(_get_datasets, client, names) if names else []
        by_name = dict(zip(names, found))
        again: list[_Run] = []
        lost: list[_Run] = []
        with self._lock:
            for run in runs:
                data = by_name.get(run.name) if run.published else None
                if data is not None and data[0].key == run.key:
                    run.future = data[0]
                elif run.worker is not None:
                    lost.append(run)
                else:  # forgotten (or never registered) before it started: submit it again
                    again.append(run)
            for run in lost:
                self._forget(run)
            for run in again:
                self._unpin(run)
            self._place(again)
            self._connected = True
        for run in lost:
            self.sink(WorkerLost(run.worker, None, f"the Dask scheduler at {self._where()} lost the run while it was "
                       "unreachable", run.task.run_id, run.cancel, []))
        if again:
            self._submit_runs(again)
        with self._lock:
            workers = sorted(self._workers)
        for addr in workers:
            self.sink(WorkerState(addr, None, "idle", "Dask scheduler reachable again"))

    def _notice(self, text: str) -> None:
        self.sink(WorkerReports(QUEUE_WORKER, [("fatal", 0, text)]))
