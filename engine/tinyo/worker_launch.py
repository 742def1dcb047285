"""Provides the start of a process executor's worker: a fresh interpreter with its task, result and output
pipes, and what the executor keeps about it.

Kept to the standard library's light modules and ``tinyo.pipe``: ``tinyo run`` starts its workers with it
right after loading the recipe, before the executor's and the engine's modules are imported, so a worker's
interpreter starts and imports the recipe meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .children import child_env, wait_exit
from .pipe import Pipe

if TYPE_CHECKING:
    from .worker import Task

__all__ = ["Worker", "dismiss_workers", "launch_workers", "popen_worker"]


class Worker:
    """A worker process and what the executor knows of it (its thread reads and writes these under its lock)."""

    __slots__ = ("name", "process", "pid", "task_conn", "result_conn", "inflight", "started", "kill_cause",
                 "eof", "ready", "dead", "stdio", "partial", "started_mono", "withdrawing", "failed_starts",
                 "respawn_at", "sent_ops")

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: Any = None
        self.pid: int | None = None
        self.task_conn: Any = None
        self.result_conn: Any = None
        self.inflight: OrderedDict[int, Task] = OrderedDict()
        self.started: dict[int, float] = {}
        self.kill_cause: dict[int, str] = {}
        self.eof = False
        self.ready = False
        self.dead = False
        self.stdio: Any = None
        self.partial = b""
        self.started_mono: dict[int, float] = {}
        self.withdrawing: set[int] = set()
        self.failed_starts = 0
        self.respawn_at: float | None = None
        self.sent_ops: Any = None
        """The ops of the last task sent: the worker runs a task sent without ops with these."""


def launch_workers(recipe_path: str, count: int) -> list[Worker]:
    """Start ``count`` worker processes for the recipe at ``recipe_path`` now, for a :class:`ProcessExecutor`
    to take at its start (``tinyo run`` starts them before the engine's modules are imported, so a worker's
    interpreter starts and imports the recipe meanwhile). Until then their reports wait in their pipes."""
    workers = []
    for index in range(count):
        worker = Worker(f"w{index + 1}")
        popen_worker(worker, recipe_path)
        workers.append(worker)
    return workers


def dismiss_workers(workers: list[Worker]) -> None:
    """Stop launched workers no executor took (their task pipe closes, so they exit), and reap them."""
    for worker in workers:
        for conn in (worker.task_conn, worker.result_conn):
            conn.close()
        if worker.stdio is not None:
            os.close(worker.stdio)
            worker.stdio = None
    for worker in workers:
        if wait_exit(worker.process, 2) is None:
            worker.process.kill()
            worker.process.wait()


def popen_worker(worker: Worker, recipe_path: str) -> None:
    """Start ``worker``'s process (a fresh interpreter) with its task, result and output pipes."""
    task_r, task_w = os.pipe()
    res_r, res_w = os.pipe()
    out_r, out_w = os.pipe()
    env = child_env()
    args = [sys.executable, "-m", "tinyo._worker_main", str(task_r), str(res_w), worker.name, recipe_path,
            os.getcwd(), json.dumps([p for p in sys.path if isinstance(p, str)])]
    try:
        process = subprocess.Popen(args, pass_fds=(task_r, res_w), stdin=subprocess.DEVNULL, stdout=out_w,
                                   stderr=out_w, env=env, start_new_session=True, close_fds=True)
    finally:
        for fd in (task_r, res_w, out_w):
            os.close(fd)
    worker.process, worker.pid = process, process.pid
    worker.task_conn = Pipe(task_w)
    worker.result_conn = Pipe(res_r)
    os.set_blocking(out_r, False)
    worker.stdio = out_r
    worker.partial = b""
    worker.inflight, worker.started, worker.kill_cause = OrderedDict(), {}, {}
    worker.started_mono, worker.withdrawing, worker.respawn_at, worker.sent_ops = {}, set(), None, None
    worker.eof = worker.ready = worker.dead = False
