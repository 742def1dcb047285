"""Provides the thread-pool and inline executors (ops run in the orchestrator process)."""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from ..messages import WorkerReports, WorkerState
from ..worker import CancelledRun, Task, install_routers, run_task
from .base import Sink, WorkerInfo

if TYPE_CHECKING:
    from ..recipe import OpResolver


class ThreadExecutor:
    """Ops in ``max_workers`` threads. Cancel/timeout raise CancelledRun inside the op's thread
    (it takes effect at the op's next Python instruction, not inside a blocking C call)."""

    name = "threads"

    def __init__(self, max_workers: int, sink: Sink, resolver: OpResolver, clock: Callable[[], float]) -> None:
        self.max_workers = max_workers
        self.sink = sink
        self.resolver = resolver
        self.clock = clock
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._lock = threading.Lock()
        self._held = 0
        self._current: dict[str, tuple[Task, float, int]] = {}
        self._threads: list[threading.Thread] = []
        self._causes: dict[int, str] = {}
        self._cancel_pending: set[int] = set()

    def start(self) -> None:
        install_routers()
        for index in range(self.max_workers):
            name = f"t{index + 1}"
            thread = threading.Thread(target=self._loop, args=(name,), name=f"tinyo-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
            self.sink(WorkerState(name, None, "idle", "started"))

    def _loop(self, name: str) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            batch: list[tuple[str, int, object]] = []

            def emit(kind: str, run_id: int, payload: object, _name: str = name) -> None:
                if kind == "start":
                    with self._lock:
                        self._current[_name] = (task, payload[1], threading.get_ident())  # type: ignore[index]
                self.sink(WorkerReports(_name, [(kind, run_id, payload)]))

            with self._lock:
                skip = task.run_id in self._cancel_pending
                self._cancel_pending.discard(task.run_id)
            if skip:
                emit("done", task.run_id, (False, "cancelled before it started", None, None, 0.0))
            else:
                try:
                    run_task(task, self.resolver.resolve, emit, name, self.clock)
                except CancelledRun:
                    pass  # arrived after run_task reported; nothing left to do
            del batch
            with self._lock:
                self._current.pop(name, None)
                self._held -= 1

    def free_slots(self) -> int:
        with self._lock:
            return max(0, self.max_workers - self._held)

    def submit(self, tasks: list[Task]) -> None:
        with self._lock:
            self._held += len(tasks)
        for task in tasks:
            self._queue.put(task)

    def cancel(self, run_id: int, cause: Literal["cancel", "timeout"] = "cancel") -> bool:
        with self._lock:
            for task, _, ident in self._current.values():
                if task.run_id == run_id:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(CancelledRun))
                    return True
            self._cancel_pending.add(run_id)
            return True

    def running(self) -> dict[int, float]:
        with self._lock:
            return {task.run_id: since for task, since, _ in self._current.values()}

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            current = dict(self._current)
        out = []
        for index in range(self.max_workers):
            name = f"t{index + 1}"
            if name in current:
                task, since, _ = current[name]
                out.append(WorkerInfo(name, None, "busy", task.run_id, task.des_id, task.op_label, since))
            else:
                out.append(WorkerInfo(name, None, "idle", None, None, None, None))
        return out

    def shutdown(self, grace: float) -> list[int]:
        for thread in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=grace)
        with self._lock:
            return [task.run_id for task, _, _ in self._current.values()]


class InlineExecutor:
    """Ops run in the engine loop itself, one at a time, when submitted (for debugging)."""

    name = "inline"

    def __init__(self, sink: Sink, resolver: OpResolver, clock: Callable[[], float]) -> None:
        self.sink = sink
        self.resolver = resolver
        self.clock = clock

    def start(self) -> None:
        install_routers()
        self.sink(WorkerState("inline", None, "idle", "started"))

    def free_slots(self) -> int:
        return 1

    def submit(self, tasks: list[Task]) -> None:
        for task in tasks:
            msgs: list[tuple[str, int, object]] = []
            run_task(task, self.resolver.resolve, lambda k, r, p: msgs.append((k, r, p)), "inline", self.clock)
            self.sink(WorkerReports("inline", msgs))

    def cancel(self, run_id: int, cause: Literal["cancel", "timeout"] = "cancel") -> bool:
        return False

    def running(self) -> dict[int, float]:
        return {}

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo("inline", None, "idle", None, None, None, None)]

    def shutdown(self, grace: float) -> list[int]:
        return []
