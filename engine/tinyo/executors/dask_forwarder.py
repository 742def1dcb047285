"""Provides the Dask executor's forwarder: the thread that owns the conversation with the cluster
after start-up. It passes the workers' messages on to the engine, follows workers joining and leaving,
carries out cancels, registers and releases the runs' datasets, collects results that came without
messages, and reconnects. Its methods run on that thread only (``DaskExecutor`` mixes them in; the
state they share with the engine-facing side is under the executor's lock)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..messages import WorkerLost, WorkerReports, WorkerState
from .dask_runs import CANCEL_GRACE, HOUSEKEEPING_INTERVAL, POLL_INTERVAL, QUEUE_WORKER, RECONNECT_INTERVAL, RPC_TIMEOUT, Run, get_datasets, unpublish_datasets
from .dask_worker import interrupt


class Forwarding:
    """The forwarder thread's half of ``DaskExecutor``."""

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

    def _account(self, run: Run, worker: str, kind: str, payload: Any) -> tuple[str, int, Any]:
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

    def _unpin(self, run: Run) -> None:
        """Take the run off its worker's load (lock held)."""
        if run.target is not None and self._load.get(run.target):
            self._load[run.target] -= 1

    def _forget(self, run: Run) -> Any:
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

    def _end_cancelled(self, run: Run, error: str) -> None:
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

        self._spawn(unpublish_datasets, done, self._client, names)

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
        collect: list[Run] = []
        errors: list[Run] = []
        overdue: list[Run] = []
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

    def _on_future_failed(self, run: Run) -> None:
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
        found = self._rpc(get_datasets, client, names) if names else []
        by_name = dict(zip(names, found))
        again: list[Run] = []
        lost: list[Run] = []
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
