"""Provides the Dask executor: ops run on the workers of a ``dask.distributed`` cluster.

This module is its engine-facing side (start, dispatch, shutdown, reconcile); ``dask_forwarder`` is the
thread that talks to the cluster afterwards, ``dask_worker`` what runs on a Dask worker,
``dask_placement`` where runs are pinned and ``dask_runs`` what they share.

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

import concurrent.futures
import hashlib
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..errors import RecipeError, TinyoError
from ..messages import WorkerReports, WorkerState
from ..worker import Task
from .base import Sink, WorkerInfo
from .dask_forwarder import Forwarding
from .dask_placement import place
from .dask_runs import RPC_TIMEOUT, Run, get_datasets
from .dask_worker import check_recipe, content_digest, executing_keys, run_on_worker

LOCAL = "local-dask"
"""The address that makes the executor start its own LocalCluster (for trying it out)."""
CONNECT_TIMEOUT = 10.0
"""Seconds to reach the scheduler at start (at most; less if Dask's ``distributed.comm.timeouts.connect``
is set lower, e.g. ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=2s``)."""
FAST_OP = 0.05
"""Ops whose recent mean duration is below this many seconds are submitted deeper (else 2 per thread)."""
FAST_WINDOW = 32
"""Tasks pinned per worker thread when ops are fast (they wait on the worker: no round trip between)."""
EVENTS_MAX = 10_000
"""Batches of worker messages and cluster events waiting for the forwarder. Past it, the client's event
loop drops new ones rather than wait (it must never block): a run whose messages were dropped is
collected from its future's result (start, the last RESULT_TAIL output lines, done), a worker's
coming and going from the scheduler's list of workers."""


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


class DaskExecutor(Forwarding):
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
        self._runs: dict[int, Run] = {}
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
        runs = [Run(task, self.dataset(task)) for task in tasks]
        with self._lock:
            self._stale_settled = True
            for run in runs:
                self._runs[run.task.run_id] = run
            self._place(runs)
            connected = self._connected
        if connected:
            self._submit_runs(runs)
        self._hand_over(("submitted",))

    def _place(self, runs: list[Run]) -> None:
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

    def _submit_runs(self, runs: list[Run]) -> None:
        """Submit placed runs to the cluster (any thread); the forwarder publishes them."""
        groups: dict[str, list[Run]] = {}
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
            started: dict[str, list[Run]] = {}
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
        found = self._rpc(get_datasets, client, names) if names else []
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
                run = Run(task, name, future.key, target, future, published=True)
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
