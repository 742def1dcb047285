"""Provides what runs on a Dask worker for the Dask executor: the recipe imported by path (checked
against the orchestrator's copy), the op run with its messages numbered and sent in batches as Dask
events, and interrupting a run in its worker thread. Only plain data crosses to the orchestrator."""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..worker import CancelledRun, Task, install_routers, run_task

FLUSH_INTERVAL = 0.01
"""Seconds between batches of messages sent from a Dask worker."""
BATCH_BYTES = 16_000
"""Approximate size of one batch of messages (the scheduler keeps the last 1,000 per topic)."""
RESULT_TAIL = 500
"""Output lines carried in a run's result (what a restarted orchestrator can still show)."""
def content_digest(data: bytes) -> str:
    """The digest a worker compares to the orchestrator's, to know it imports the same recipe."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_worker_lock = threading.Lock()
_resolvers: dict[tuple[str, str], Any] = {}
_module_digest: dict[str, str] = {}
_outboxes: dict[str, _Outbox] = {}
_threads: dict[str, int] = {}


class _Outbox:
    """A worker process's messages on their way to the orchestrator(s), sent in batches as Dask events."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.lock = threading.Lock()
        self.items: dict[str, list[list[Any]]] = {}
        self.size = 0
        self.wake = threading.Event()
        self.seqs: dict[int, Any] = {}
        thread = threading.Thread(target=self._loop, name="tinyo-dask-outbox", daemon=True)
        thread.start()

    def put(self, topic: str, item: list[Any], size: int) -> None:
        self.items.setdefault(topic, []).append(item)
        self.size += size
        if self.size >= BATCH_BYTES:
            self.wake.set()

    def flush(self) -> None:
        with self.lock:
            items, self.items, self.size = self.items, {}, 0
            address = self.worker.address
            for topic, batch in items.items():
                chunk: list[list[Any]] = []
                size = 0
                for item in batch:
                    chunk.append(item)
                    size += _size(item)
                    if size >= BATCH_BYTES:
                        self.worker.log_event(topic, {"w": address, "m": chunk})
                        chunk, size = [], 0
                if chunk:
                    self.worker.log_event(topic, {"w": address, "m": chunk})

    def _loop(self) -> None:
        while True:
            self.wake.wait(FLUSH_INTERVAL)
            self.wake.clear()
            try:
                self.flush()
            except Exception:  # a closing worker; the run's result still carries its messages
                traceback.print_exc(file=sys.__stderr__)
                return


def _size(item: list[Any]) -> int:
    payload = item[3]
    if item[1] == "out":
        return len(payload[1]) + 40
    if item[1] == "done":
        return sum(len(p) for p in payload[1:4] if isinstance(p, str)) + 60
    return 200


def _outbox(worker: Any) -> _Outbox:
    with _worker_lock:
        box = _outboxes.get(worker.address)
        if box is None:
            box = _outboxes[worker.address] = _Outbox(worker)
        return box


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _plain(value: Any) -> Any:
    """``value`` as what a Dask event may carry (msgpack types)."""
    if value is None or type(value) in (bool, int, float, str):
        return _text(value) if type(value) is str else value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _text(value)


def _wire(kind: str, payload: Any) -> Any:
    if kind == "out":
        return [str(payload[0]), _text(payload[1])]
    if kind == "start":
        return [str(payload[0]), float(payload[1])]
    if kind == "done":
        ok, error, tb, result, duration = payload
        return [bool(ok), _text(error), _text(tb), _text(result), float(duration)]
    return _plain(payload)


def _resolver(path: str, digest: str, where: str) -> Any:
    """The op resolver for the recipe at ``path`` with content ``digest`` (imported once per content)."""
    from ..recipe import OpResolver, import_recipe_module, module_name_for

    cached = _resolvers.get((path, digest))
    if cached is not None:
        return cached
    with _worker_lock:
        cached = _resolvers.get((path, digest))
        if cached is not None:
            return cached
        file = Path(path)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise RecipeError(f"the recipe {path} does not exist on Dask worker {where}: tinyo imports it by path, "
                              "so it must be at the same path on every worker (a shared folder)") from None
        except OSError as exc:
            raise RecipeError(f"Dask worker {where} cannot read the recipe {path}: {exc}") from None
        if content_digest(data) != digest:
            raise RecipeError(f"the recipe {path} on Dask worker {where} differs from the orchestrator's copy "
                              "(the shared folder is not in sync, or the file changed since tinyo started)")
        name = module_name_for(file.resolve())
        loaded = sys.modules.get(name)
        if loaded is not None and _module_digest.setdefault(name, digest) != digest:
            del sys.modules[name]  # an older version of the recipe: import the current one
        module = import_recipe_module(path)
        _module_digest[name] = digest
        resolver = OpResolver(module, None)
        _resolvers[(path, digest)] = resolver
        return resolver


def check_recipe(path: str, digest: str) -> str | None:
    """Run on each worker at start (``client.run``): None if it can run the recipe, else why not."""
    import distributed

    try:
        where = distributed.get_worker().address
    except ValueError:
        where = "?"
    try:
        _resolver(path, digest, where)
    except RecipeError as exc:
        return str(exc)
    except Exception as exc:  # anything the recipe raises while loading
        return f"importing the recipe {path} failed: {type(exc).__name__}: {exc}"
    return None


class _Interrupted(CancelledRun):
    def __str__(self) -> str:
        return "the run was cancelled (its Dask task was interrupted)"


class _TimedOut(CancelledRun):
    def __str__(self) -> str:
        return "timed out (its Dask task was interrupted)"


def interrupt(key: str, cause: str) -> bool:
    """Run on a worker (``client.run``): raise CancelledRun in the thread running ``key``, if any."""
    with _worker_lock:
        ident = _threads.get(key)
        if ident is None:
            return False
        exc = _TimedOut if cause == "timeout" else _Interrupted
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))
        return True


def executing_keys(topic: str) -> list[str]:
    """Run on a worker (``client.run``): the keys of this orchestrator's runs executing there now."""
    with _worker_lock:
        return [key for key in _threads if key.startswith(topic + "-")]


def run_on_worker(task: Task, topic: str, digest: str) -> dict[str, Any]:
    """The Dask task: run ``task`` with ``worker.run_task``, stream its messages, return its summary."""
    import distributed
    from distributed.worker import thread_state

    worker = distributed.get_worker()
    address = worker.address
    key = str(getattr(thread_state, "key", ""))
    install_routers()
    box = _outbox(worker)
    counter = itertools.count(1)
    head: list[list[Any]] = []
    tail: deque[list[Any]] = deque(maxlen=RESULT_TAIL)
    dropped = 0

    def emit(kind: str, run_id: int, payload: Any) -> None:
        nonlocal dropped
        wire = _wire(kind, payload)
        with box.lock:
            item = [next(counter), kind, run_id, wire]
            box.put(topic, item, _size(item))
        if kind == "out":
            if len(tail) == RESULT_TAIL:
                dropped += 1
            tail.append(item)
        elif kind in ("start", "done"):
            head.append(item)
        if kind in ("start", "done"):  # at once: a worker lost right after a start is known to have started it
            box.wake.set()

    with _worker_lock:
        _threads[key] = threading.get_ident()
    try:
        try:
            try:
                resolver = _resolver(task.recipe_path, digest, address)
            except Exception as exc:  # reported as the run's failure, like an op error
                emit("start", task.run_id, (address, time.time()))
                emit("done", task.run_id, (False, f"{type(exc).__name__}: {exc}", traceback.format_exc(), None, 0.0))
            else:
                run_task(task, resolver.resolve, emit, address)
        except CancelledRun:
            pass  # arrived after run_task had reported
        with _worker_lock:
            _threads.pop(key, None)
    except CancelledRun:
        with _worker_lock:
            _threads.pop(key, None)
    box.flush()  # now, so the done message travels ahead of the task's completion
    msgs = [m for m in head if m[1] == "start"] + list(tail) + [m for m in head if m[1] == "done"]
    return {"worker": address, "msgs": msgs, "dropped": dropped}
