"""Provides the Engine: one loop thread that owns the document DAG and the store.

Everything reaches the loop through two bounded queues (intake events; executor reports and
commands) and a wake flag. A cycle: handle reports and commands, fire due timers and retries, store
up to a bounded number of intake events, feed at most ``maxevents`` stored events to the generators,
settle the DES they touched, write run rows, commit, hand tasks to the executor, and only then
publish the cycle's facts on the bus (so the bus never announces what is not durable).
"""

from __future__ import annotations

import heapq
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from . import events as ev
from .clock import Clock, ManualClock, SystemClock
from .control.paths import socket_path as control_socket
from .dag import Graph, Node
from .engine_state import DESDetails, DESInfo, DocInfo, EngineStats, OpenRun, RateMeter, RunInfo
from .errors import DESRejected, OpNotImportable, StoreError, TinyoError
from .executors import Executor, WorkerInfo, make_executor
from .filecheck import MISSING, FileChecks
from .generators import Abandoned, Emission, GeneratorRunner, Hung
from .groups import DES_TO_DOC, Groups, GroupSummary
from .history import RECENT, History, des_of_event, read_history
from .intake import FileState, SettleWindow, TimerSchedule, compare_file, stat_file, timer_event
from .model import Execution, TimerSpec
from .names import name_problem
from .recipe import OpResolver, Recipe, load_recipe
from .store import Store, dump_ops, load_ops
from .watch import IgnoredNames, WatcherProcess, scan_folder
from .worker import Task

T = TypeVar("T")

INTAKE_MAX = 100_000
"""Events waiting to be stored; a full intake blocks the watcher (the kernel queue then overflows and
the rescan finds the files), so memory stays bounded and nothing is lost."""
INBOX_MAX = 50_000
"""Executor reports and commands waiting for the loop; a full inbox back-pressures the workers."""
BACKLOG_MAX = 5_000
"""Stored-but-unprocessed events kept in memory; the rest are read back from the store in order."""
READY_MAX = 2_000
"""DES ready and waiting for a worker past which no further events are fed to the generators: when
events arrive faster than ops run, they wait stored in order (not as DES in memory), nothing is lost."""
STORE_PER_CYCLE = 5_000
"""The most intake events stored in one cycle."""
OUTPUT_TAIL = 200
"""Output lines kept per run (and stored with it)."""
SCAN_QUIET = 0.5
"""A file a scan finds modified less than this many seconds ago waits to be quiet (it may be half written)."""
REGISTER_SLICE = 1000
"""DES registered from one emission before ready work is dispatched (bounds first-op latency)."""
REQUEST_POLL = 1.0
"""Seconds between looks at the store for requests from the CLI (``tinyo rerun`` while running)."""
FILE_CACHE_MAX = 4096
"""File states (last evented, last versioned) cached in memory; the store has them all."""
READERS_SHOWN = 50
"""Readers of a document listed in a DocInfo."""
OP_CACHE_MAX = 256
"""Distinct op lists whose names and stored (pickled) form are kept for reuse."""


GONE = FileState(0, -1, None)
"""The last-seen state of a file that was gone when its event was processed (no file has it)."""


def _names(docs: Iterable[str]) -> tuple[str, ...]:
    """Document names as a small tuple of interned strings: one copy of each name is shared by the
    version map, the reverse index and every DES that names it (a 1-item frozenset costs 216 bytes)."""
    return tuple(sys.intern(d) for d in docs)


class Engine:
    """The orchestrator. Commands are thread-safe method calls; facts come up as bus events."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        db: str | None = None,
        clock: Clock | None = None,
        execution: Execution | None = None,
        max_workers: int | None = None,
        bus: ev.Bus | None = None,
        watch: bool = True,
        executor_address: str | None = None,
    ) -> None:
        self.recipe = recipe
        self.config = recipe.config
        self.clock: Clock = clock or SystemClock()
        self.bus = bus or ev.Bus()
        self.execution = execution or self.config.execution
        self.executor_address = executor_address or self.config.executor_address
        self.max_workers = max_workers or self.config.max_workers
        self.watch_files = watch
        self.db_path = db or self.config.sql_conn
        self.store = Store(self.db_path)
        self.resolver = OpResolver(recipe.module, recipe.path)
        self.graph = Graph(_StoreBacking(self.store, self._node_from_row))
        self.groups = Groups()
        """Documents counted per name pattern and state (what the console's tree shows)."""
        self._checks = FileChecks(self.graph, self._file_state, self.config.hash_files)
        self.timers: list[TimerSpec] = self.config.timer_specs
        self._schedule = TimerSchedule(self.timers)
        self._generators = GeneratorRunner(recipe.roots, self.config.generator_timeout)
        self._intake: queue.Queue[tuple[str, str, FileState | None]] = queue.Queue(maxsize=INTAKE_MAX)
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=INBOX_MAX)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: Executor | None = None
        self._watcher: WatcherProcess | None = None
        self._state: ev.EngineStateName = "starting"
        self._stop_requested = False
        self._stop_grace = 10.0
        self._stopped = threading.Event()
        self._started = threading.Event()
        self.fatal: BaseException | None = None
        # loop-owned state
        self._bus_out: list[ev.BusEvent] = []
        self._backlog: deque[tuple[int, str, str, FileState | None]] = deque()
        self._backlog_in_store = True
        self._last_backlog_id = 0
        self._ready: deque[str] = deque()
        self._open: dict[int, OpenRun] = {}
        self._ops: dict[str, tuple[tuple[str, Any], ...]] = {}
        self._attempts: dict[str, int] = {}
        self._retries: list[tuple[float, str]] = []
        self._cancel_intent: dict[int, str] = {}
        self._files: dict[str, FileState | None] = {}
        self._doc_files: dict[str, FileState] = {}
        self._op_cache: dict[tuple[tuple[str, int], ...],
                             tuple[tuple[tuple[str, Any], ...], tuple[str, ...], bytes | None]] = {}
        self._no_doc_file: set[str] = set()  # file documents the last batch's lookup found no state for
        self._touched: list[str] = []
        self._next_run_id = 1
        self._rescan_wanted = False
        self._ignored_name = IgnoredNames(self.config.ignore)
        self._window = SettleWindow(self.config.settle, self.config.settle_max, self.config.maxevents)
        self._holding = True
        """Nothing is dispatched until the start-up scan's files are all taken in and processed (one build
        for what changed while the engine was down)."""
        self._settling: dict[str, float] = {}  # start-up scan files still being written -> when to look again
        self._next_rescan: float | None = None
        self._next_request_poll = 0.0
        self._rate = RateMeter()
        self._paused = False
        self._pending_events = 0
        self._events_base = 0
        self._requeue: deque[OpenRun] = deque()
        self._failed_ids: set[str] = set()
        self._unsaved_starts: set[int] = set()
        self._failing_workers: set[str] = set()
        self._shared: dict[tuple[str, ...], tuple[str, ...]] = {}
        """Op-name tuples shared by every DES with the same ops (memory per DES stays small)."""
        self._labels: dict[tuple[str, ...], str] = {}  # ops_desc (shared) -> its op label
        self._recipe_path = str(self.recipe.path)
        self._des_total = 0
        self._docs_total = 0
        self._since_prune = 0
        self._processed = 0
        self.events_taken = 0
        """Events stored by this engine (for ``--stop-after``)."""
        self.idle_since: float | None = None
        """Monotonic time since when nothing was pending or running (None while busy)."""
        self.failures = 0
        """Runs that failed for good in this engine's lifetime (for the exit status)."""
        self.started_at: float | None = None

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        db: str | None = None,
        clock: Clock | None = None,
        execution: Execution | None = None,
        max_workers: int | None = None,
        allow_world_writable: bool = False,
        **kw: Any,
    ) -> Engine:
        """Load the recipe at ``path`` and build an engine for it (RecipeError on a bad recipe)."""
        recipe = load_recipe(path, allow_world_writable=allow_world_writable)
        return cls(recipe, db=db, clock=clock, execution=execution, max_workers=max_workers, **kw)

    # ================================================================ lifecycle
    def start(self) -> None:
        """Start the loop thread (non-blocking). Start-up errors surface as ``fatal`` and on the bus."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="tinyo-engine", daemon=True)
        self._thread.start()
        self._started.wait(timeout=60)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully: intake stops, running ops get ``timeout`` seconds to finish (then they are
        stopped and recorded as interrupted, to run again next start), the state is committed."""
        if self._thread is None:
            self._close_unstarted()
            return
        self._stop_grace = timeout
        self._stop_requested = True
        self._wake.set()
        # the loop may have moved to another thread (a generator hung): wait for the loop's stop, whichever
        # thread runs it, or for that thread to end
        deadline = time.monotonic() + timeout + 30
        while not self._stopped.wait(0.05):
            thread = self._thread
            if time.monotonic() > deadline or thread is None or not thread.is_alive():
                break
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the engine has stopped; True if it did."""
        return self._stopped.wait(timeout)

    @property
    def state(self) -> ev.EngineStateName:
        return self._state

    @property
    def paused(self) -> bool:
        return self._paused

    def _close_unstarted(self) -> None:
        if not self._stopped.is_set():
            self.store.close()
            self._stopped.set()

    # ================================================================ commands (any thread)
    def inject(self, event: str) -> None:
        """Take ``event`` in as if it had happened (source ``manual``)."""
        if not isinstance(event, str) or not event:
            raise TinyoError(f"an event must be a non-empty string, got {event!r}")
        problem = name_problem(event)
        if problem is not None:
            raise TinyoError(f"the event {event!r} {problem}")
        self._put_intake(("manual", event, None))

    def fire_timer(self, name: str) -> None:
        """Fire timer ``name`` now, off the grid (the event uses the current time as its tick)."""
        if name not in {t.name for t in self.timers}:
            known = ", ".join(t.name for t in self.timers) or "none"
            raise TinyoError(f"no timer named {name!r} in {self.recipe.path.name} (timers: {known})")
        self._command("fire", name)

    def rerun(self, des_id: str, downstream: bool = False) -> None:
        """Run a DES again even if it is up to date (and, with ``downstream``, all that depends on it)."""
        self._command("rerun", des_id, downstream)

    def rerun_document(self, name: str, downstream: bool = False) -> None:
        """Rerun the DES that produces document ``name``."""
        self._command("rerun_doc", name, downstream)

    def pause(self) -> None:
        """Stop feeding events to the generators; they are still stored, in order, and kept."""
        self._command("pause")

    def resume(self) -> None:
        self._command("resume")

    def cancel(self, run_id: int) -> None:
        """Cancel a queued or running run (the worker running it is stopped and replaced)."""
        self._command("cancel", run_id)

    def rescan(self) -> None:
        """Look at the watched folders for files the watcher did not report."""
        self._rescan_wanted = True
        self._wake.set()

    def _command(self, *args: Any) -> None:
        self.idle_since = None
        self._inbox.put(("cmd", *args))
        self._wake.set()

    def _put_intake(self, item: tuple[str, str, FileState | None]) -> None:
        self.idle_since = None
        self._intake.put(item)
        self._wake.set()

    # ================================================================ queries (any thread)
    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the engine thread and return its result (directly if the loop is not running)."""
        if self._thread is None or not self._thread.is_alive() or threading.current_thread() is self._thread:
            return fn()
        future: Future[T] = Future()
        self._inbox.put(("query", fn, future))
        self._wake.set()
        return future.result(timeout)

    def stats(self) -> EngineStats:
        return self.call(self._stats)

    def des_details(self, des_id: str) -> DESDetails | None:
        return self.call(lambda: self._des_details(des_id))

    def explain(self, name: str) -> str:
        def run() -> str:
            if self.graph.has(name):
                return self.graph.explain_des(name)
            return self.graph.explain_document(name)

        return self.call(run)

    def documents(self, prefix: str | None = None, limit: int = 1000) -> list[DocInfo]:
        """Documents whose name starts with ``prefix`` (all: None), in name order, at most ``limit``."""
        return self.call(lambda: self._documents(prefix, limit))

    def groups_summary(self) -> list[GroupSummary]:
        """Every document group with its counts."""
        return self.call(self.groups.summaries)

    def group_members(self, pattern: str, offset: int = 0, limit: int = 200) -> list[DocInfo]:
        """One page of a group's documents, in name order."""
        return self.call(lambda: self._group_members(pattern, offset, limit))

    def locate(self, name: str) -> tuple[str, int] | None:
        """The group of document ``name`` and its position there (name order); None if unknown."""
        def run() -> tuple[str, int] | None:
            pattern = self.store.group_of(name)
            return None if pattern is None else (pattern, self.store.group_index(pattern, name))

        return self.call(run)

    def doc_infos(self, names: Iterable[str]) -> list[DocInfo]:
        """What is known about each of ``names`` (unknown names are left out)."""
        wanted = list(names)
        return self.call(lambda: [i for i in map(self._doc_info, wanted) if i is not None])

    def des_infos(self, ids: Iterable[str]) -> list[DESInfo]:
        """The tree's view of each DES in ``ids`` (unknown ids are left out)."""
        wanted = list(ids)
        return self.call(lambda: [i for i in map(self._des_info, wanted) if i is not None])

    def find_documents(self, match: Callable[[str], bool], limit: int = 1) -> list[str]:
        """The first ``limit`` document names, in name order, for which ``match`` is true (a scan)."""
        return self.call(lambda: self.store.find_names(match, limit))

    def history(self, events: int = RECENT, runs: int = RECENT, lines: int = RECENT) -> History:
        """The recent past from the state file: the last events, runs and output lines (bounded)."""
        return self.call(lambda: read_history(self.store, events, runs, lines))

    def des_of_event(self, event: str, limit: int = 100) -> list[str]:
        """The ids of the DES the generators made of ``event`` (a scan: for a key press, not a repaint)."""
        return self.call(lambda: des_of_event(self.store, event, limit))

    def workers(self) -> list[WorkerInfo]:
        executor = self._executor
        return executor.workers() if executor is not None else []

    def is_idle(self) -> bool:
        return self.idle_since is not None

    # ================================================================ the loop
    def _main(self) -> None:
        try:
            self._startup()
        except BaseException as exc:
            self.fatal = exc
            self._publish_now(ev.EngineNotice(self.clock.time(), "error", f"engine could not start: {exc}"))
            self._state = "stopped"
            self._started.set()
            self._teardown(grace=0)
            return
        self._started.set()
        self._run()

    def _run(self, first: Callable[[], None] | None = None) -> None:
        """The loop, until a stop is asked for and done. ``first``: what to finish before it (the rest of a
        cycle whose generator hung on the thread that ran the loop until then)."""
        try:
            if first is not None:
                first()
            while not self._stop_requested:
                self._wake.wait(self._wait_time())
                self._wake.clear()
                self._cycle()
            self._graceful_stop()
        except Abandoned:
            return  # a generator hung on this thread and has now returned: another thread runs the loop
        except BaseException as exc:
            self.fatal = exc
            message = str(exc) if isinstance(exc, TinyoError) else f"engine stopped on an unexpected error: {exc!r}"
            self._bus_out.clear()  # facts of the failed cycle were not committed: they are not announced
            self._publish_now(ev.EngineNotice(self.clock.time(), "error", message))
            self._teardown(grace=0)

    def _startup(self) -> None:
        now = self.clock.time()
        self.started_at = now
        self._set_state("starting", "loading state")
        self._load_state()
        self._touched.extend(self._checks.all_targets(self.store.file_targets()))
        self._executor = make_executor(
            self.execution,
            recipe_path=str(self.recipe.path),
            max_workers=self.max_workers,
            sink=self._sink,
            resolver=self.resolver,
            clock=self.clock.time,
            address=self.executor_address,
            store_path=self.store.path,
        )
        if self.watch_files and self.config.dirs:
            ignore = [self.store.path + s for s in ("", "-wal", "-shm", "-journal", ".lock", ".log")]
            ignore.append(str(control_socket(self.store.path)))  # it may sit beside the state file
            self._watcher = self._new_watcher(ignore)
            self._watcher.launch()  # it starts while the executor does
        self._executor.start()
        self._reconcile_open_runs()
        if self._watcher is not None:
            self._watcher.wait_ready()
        catch_up = self._schedule.start(
            datetime.fromtimestamp(now), self.store.timer_ticks(), self.config.catch_up, self.config.catch_up_limit
        )
        for name, tick in catch_up:
            self._fire(name, tick, manual=False)
        self._scan()
        if self.config.rescan_interval:
            self._next_rescan = self.clock.monotonic() + self.config.rescan_interval
        self._set_state("running")
        self._commit_and_publish([])

    def _load_state(self) -> None:
        """Bring back the DES that may need work (the rest stay in the store until something touches
        them) and the document groups' counts."""
        store = self.store
        for row in store.load_open_des():
            node = self._node_from_row(row)
            if row.state == "retry":
                # a retry was waiting for its backoff at the last stop: it runs now, as the attempt it was
                self._attempts[row.id] = row.attempt
                node.forced = True
            self.graph.nodes[node.id] = node
            for targ in node.targs:
                self.graph.producer[targ] = node.id
        for name, pattern, version, producer in store.all_names():
            if producer is not None:
                hot = self.graph.nodes.get(producer)
                state = DES_TO_DOC[hot.state] if hot is not None else "up to date"
            else:
                state = "source" if version else "missing"
            self.groups.join(name, state, pattern)
        self.groups.touched.clear()
        self._des_total = store.count("des")
        self._docs_total = store.count("names")
        self._next_run_id = store.next_run_id()
        self._pending_events = store.count("events", "WHERE status = 'new'")
        self._events_base = store.count("events")
        self._touched.extend(self.graph.nodes)
        for des_id in self.graph.nodes:
            node = self.graph.nodes[des_id]
            self._emit(ev.DESRegistered(self.clock.time(), node.id, frozenset(node.deps), frozenset(node.targs), node.ops_desc,
                                        node.generator, node.event, restored=True))

    def _node_from_row(self, row: Any) -> Node:
        node = Node(row.id, _names(row.deps), _names(row.targs), self._shared.setdefault(row.ops_desc, row.ops_desc),
                    row.generator, row.event,
                    trace=row.trace, failed_trace=row.failed_trace, forced=row.forced)
        if row.state in ("failed", "cancelled"):
            node.failed_state = row.state  # type: ignore[assignment]
            node.error = self.store.last_error(row.id)
        return node

    def _reconcile_open_runs(self) -> None:
        """Runs the store still has open from the last engine: an executor that runs apart from the
        orchestrator (a cluster) may still hold them (they are awaited, or their results collected);
        the others were interrupted and are dispatched again."""
        store = self.store
        open_runs = store.open_runs_full()
        if not open_runs:
            return
        adopted: set[int] = set()
        reconcile = getattr(self._executor, "reconcile", None)
        tasks: dict[int, Task] = {}
        if reconcile is not None:
            for run_id, des_id, attempt, dep_versions in open_runs:
                node = self.graph.node(des_id)
                ops = self._load_ops(des_id) if node is not None else None
                if node is None or ops is None:
                    continue
                tasks[run_id] = Task(run_id, des_id, attempt, str(self.recipe.path), ops, frozenset(node.deps),
                                     frozenset(node.targs))
            adopted = set(reconcile(list(tasks.values())))
        for run_id, des_id, attempt, dep_versions in open_runs:
            if run_id in adopted:
                task = tasks[run_id]
                self._open[run_id] = OpenRun(run_id, des_id, attempt, task, dep_versions, task.op_label, task.targs)
                node = self.graph.node(des_id)
                if node is not None:
                    node.status = "running"
        lost = [rid for rid, *_ in open_runs if rid not in adopted]
        if lost:
            store.finish_runs([("interrupted", self.clock.time(), "the engine stopped while this run was open; "
                                "it is dispatched again", None, None, None, None, rid) for rid in lost])
            self._emit(ev.EngineNotice(self.clock.time(), "warning",
                                       f"{len(lost)} run(s) were interrupted by the last stop; running them again"))
        if adopted:
            self._emit(ev.EngineNotice(self.clock.time(), "info",
                                       f"{len(adopted)} run(s) from the last engine are still held by the executor; awaiting them"))

    def _wait_time(self) -> float | None:
        """Seconds until the next thing the loop must do by itself (None: only a wake-up)."""
        mono = self.clock.monotonic()
        deadlines: list[float] = []
        nxt = self._schedule.next_due()
        if nxt is not None:
            deadlines.append(mono + max(0.0, nxt.timestamp() - self.clock.time()))
        if self._retries:
            deadlines.append(self._retries[0][0])
        if self._next_rescan is not None:
            deadlines.append(self._next_rescan)
        if self.config.op_timeout and self._open:
            deadlines.append(mono + 0.1)
        if not self.store.memory:
            deadlines.append(self._next_request_poll)
        window = self._window.deadline()
        if window is not None or self._settling:
            # real time, whatever the clock: files arrive in it
            wait = max(0.0, window - time.monotonic()) if window is not None else 0.05
            deadlines.append(mono + (min(wait, 0.05) if self._settling else wait))
        if not deadlines:
            return None
        # a ManualClock does not move by itself: wake at least every 50 ms so tests that advance it are seen
        return min(max(0.0, min(deadlines) - mono), 0.05 if isinstance(self.clock, ManualClock) else 3600.0)

    def _cycle(self) -> None:
        mono = self.clock.monotonic()
        handled = 0
        while handled < INBOX_MAX:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            handled += 1
            self._handle(item)
        self._fire_due_timers()
        self._due_retries(mono)
        self._check_timeouts()
        if mono >= self._next_request_poll:
            self._next_request_poll = mono + REQUEST_POLL
            self._poll_requests()
            self._check_watched_folders()
        if self._next_rescan is not None and mono >= self._next_rescan:
            self._next_rescan = mono + (self.config.rescan_interval or 0)
            self._rescan_wanted = True
        if self._rescan_wanted:
            self._rescan_wanted = False
            self._scan()
        self._store_intake()
        if self._settling:
            self._look_at_settling()
        if not self._paused and len(self._ready) < READY_MAX and self._window.due(time.monotonic()):
            self._process_backlog()
            if not self._backlog and not self._backlog_in_store:
                self._window.taken()
        self._finish_cycle()

    def _finish_cycle(self) -> None:
        """Dispatch what is ready, commit, announce."""
        tasks = self._settle_and_prepare()
        self._commit_and_publish(tasks)
        more = (not self._intake.empty() or not self._inbox.empty()
                or (not self._paused and (self._backlog or self._backlog_in_store) and len(self._ready) < READY_MAX
                    and self._window.due(time.monotonic()))
                or (self._ready and not self._holding and self._executor is not None and self._executor.free_slots() > 0))
        if more:
            self._wake.set()
        self._update_idle()

    def _finish_row(self, run: OpenRun, status: str, end: float, error: str | None, tb: str | None,
                    result: str | None) -> tuple[Any, ...]:
        start = run.start if run.run_id in self._unsaved_starts else None
        self._unsaved_starts.discard(run.run_id)
        return (status, end, error, tb, "\n".join(run.output), result, run.worker, start, run.run_id)

    def _commit_and_publish(self, tasks: list[Task]) -> None:
        if self._unsaved_starts:
            self.store.start_runs([(self._open[r].worker, self._open[r].start, r)
                                   for r in self._unsaved_starts if r in self._open])
            self._unsaved_starts.clear()
        if (self.config.retention_events or self.config.retention_runs) and self._processed - self._since_prune >= 500:
            self._since_prune = self._processed
            self.store.prune(self.config.retention_events, self.config.retention_runs)
        self.store.commit()
        if tasks and self._executor is not None:
            self._executor.submit(tasks)
        groups = self.groups.take_touched()
        if groups:
            self._bus_out.append(ev.GroupsChanged(self.clock.time(), groups))
        out, self._bus_out = self._bus_out, []
        for event in out:
            self.bus.publish(event)
        self._trim_memory()

    def _trim_memory(self) -> None:
        """After a commit (nothing is deferred): drop up-to-date DES and cached file states from memory."""
        if self.graph.evict():
            self._ops = {k: v for k, v in self._ops.items() if k in self.graph.nodes}
        if len(self._doc_files) > FILE_CACHE_MAX:
            self._doc_files.clear()
        if len(self._files) > FILE_CACHE_MAX:
            self._files.clear()

    def _update_idle(self) -> None:
        busy = (self._open or self._ready or self._retries or self._backlog or self._backlog_in_store
                or self._settling or not self._intake.empty() or not self._inbox.empty())
        if busy:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = time.monotonic()

    # ================================================================ bus helpers
    def _emit(self, event: ev.BusEvent) -> None:
        self._bus_out.append(event)

    def _publish_now(self, event: ev.BusEvent) -> None:
        self.bus.publish(event)

    def _set_state(self, state: ev.EngineStateName, detail: str = "") -> None:
        self._state = state
        buffered = len(self._backlog) if self._paused else 0
        self._emit(ev.EngineState(self.clock.time(), state, detail, buffered))

    # ================================================================ intake
    def _on_files(self, files: list[tuple[str, FileState]]) -> None:
        """Completed files from the watcher process, each with its state as read there."""
        self.idle_since = None
        for path, state in files:
            self._intake.put(("file", path, state))  # blocks while the intake is full: the watcher waits
        self._wake.set()

    def _new_watcher(self, ignore: Iterable[str]) -> WatcherProcess:
        return WatcherProcess(self.config.dirs, self._on_files, self.rescan, recursive=self.config.recursive,
                              debounce=self.config.debounce, ignore=ignore, use_hash=self.config.hash_files,
                              ignore_names=self.config.ignore)

    def _sink(self, item: tuple[Any, ...]) -> None:
        self.idle_since = None
        self._inbox.put(item)
        self._wake.set()

    def _scan(self) -> None:
        """Emit events for files in the watched folders whose content differs from the last event."""
        if not self.config.dirs:
            return
        found = 0
        now = time.time()
        for folder in self.config.dirs:
            folder_abs = str(Path(folder).expanduser().resolve())
            os.makedirs(folder_abs, exist_ok=True)
            seen = self.store.files_seen_under(folder_abs)
            for path, st in scan_folder(folder_abs, self.config.recursive):
                known = seen.get(path)
                if known is not None and known[0] == st.st_mtime_ns and known[1] == st.st_size:
                    continue
                if self._is_own_file(path) or self._ignored_name(path):
                    continue
                if self._watcher is not None and now - st.st_mtime < max(self.config.debounce, SCAN_QUIET):
                    # written moments ago: maybe still being written; its close (or its staying quiet) reports it
                    self._watcher.settle(path)
                    if self._holding:
                        self._settling[path] = time.monotonic() + SCAN_QUIET
                    continue
                try:
                    self._intake.put_nowait(("scan", path, None))
                    found += 1
                except queue.Full:
                    self._rescan_wanted = True  # the rest next cycle; nothing is lost
                    break
        if found:
            self._emit(ev.EngineNotice(self.clock.time(), "info", f"scan found {found} new or changed file(s)"))

    def _look_at_settling(self) -> None:
        """Start-up scan files the watcher has not reported yet: one that is gone is not waited for."""
        mono = time.monotonic()
        for path, when in list(self._settling.items()):
            if mono >= when:
                if stat_file(path) is None:
                    del self._settling[path]
                else:
                    self._settling[path] = mono + SCAN_QUIET

    def _check_watched_folders(self) -> None:
        """A watched folder replaced wholesale, or a watcher process that died, gets a new watcher and a
        rescan (about once a second)."""
        watcher = self._watcher
        if watcher is None or not watcher.roots_changed():
            return
        why = watcher.stopped_why()
        watcher.stop()
        self._watcher = self._new_watcher(watcher.ignore)
        self._watcher.start()
        self._rescan_wanted = True
        self._emit(ev.EngineNotice(self.clock.time(), "warning", f"{why}: watching anew and rescanning"))

    def _is_own_file(self, path: str) -> bool:
        return path.startswith(self.store.path) if not self.store.memory else False

    def _store_intake(self) -> None:
        """Store waiting intake events (file events only when the file's content is new)."""
        items: list[tuple[str, str]] = []
        files: dict[str, FileState | None] = {}  # path -> its latest state as the watcher read it (None: unread)
        while len(items) < STORE_PER_CYCLE:
            try:
                source, name, seen = self._intake.get_nowait()
            except queue.Empty:
                break
            if source in ("file", "scan"):
                if self._settling:
                    self._settling.pop(name, None)
                if name in files:
                    files[name] = seen
                    continue  # a burst on one path coalesces into one event
                files[name] = seen
            items.append((source, name))
        if not items:
            return
        now = self.clock.time()
        unknown = [name for name in files if name not in self._files]
        if unknown:
            found = self.store.files_seen_many(unknown)
            for name in unknown:
                row = found.get(name)
                self._files[name] = FileState(*row) if row else None
        rows = []
        states: list[FileState | None] = []  # a file's state as read now: its document need not read it again
        for source, name in items:
            state = None
            if source in ("file", "scan"):
                state = self._file_change(name, files[name])
                if state is None:
                    continue
            rows.append((now, source, name, "new"))
            states.append(state)
        if not rows:
            return
        ids = self.store.add_events(rows)
        self._window.arrived(time.monotonic(), len(ids))
        self.events_taken += len(ids)
        self._pending_events += len(ids)
        self._rate.add(now, len(ids))
        for event_id, (_, source, name, _), state in zip(ids, rows, states):
            if not self._backlog_in_store and len(self._backlog) < BACKLOG_MAX:
                self._backlog.append((event_id, source, name, state))
                self._last_backlog_id = event_id
            else:
                self._backlog_in_store = True
        if self._paused:
            self._set_state("paused", f"paused: {self._buffered()} buffered")

    def _file_change(self, path: str, seen: FileState | None) -> FileState | None:
        """The file's new state if its content changed since its last event, else None. ``seen``: its state
        as the watcher read it (else it is read now)."""
        known = self._files.get(path)
        changed, state = compare_file(path, known, self.config.hash_files, hint=seen)
        if state is None:
            return None
        if state != known:
            self.store.set_file_seen(path, state.mtime_ns, state.size, state.digest)
            self._files[path] = state
        return state if changed else None

    def _buffered(self) -> int:
        return self._pending_events

    def _refill_backlog(self) -> None:
        rows = self.store.new_events(self._last_backlog_id, BACKLOG_MAX // 2)
        # a file event's state as intake last recorded it: the file is not read again (as for the events
        # that stayed in memory); a file changed since has a later event of its own
        seen = self.store.files_seen_many([name for _, _, source, name in rows if source in ("file", "scan")])
        for event_id, _, source, name in rows:
            state = seen.get(name) if source in ("file", "scan") else None
            self._backlog.append((event_id, source, name, FileState(*state) if state is not None else None))
            self._last_backlog_id = event_id
        if len(rows) < BACKLOG_MAX // 2:
            self._backlog_in_store = False

    def _process_backlog(self) -> None:
        if not self._backlog and self._backlog_in_store:
            self._refill_backlog()
        if not self._backlog:
            return
        batch = [self._backlog.popleft() for _ in range(min(self.config.maxevents, len(self._backlog)))]
        self._pending_events -= len(batch)
        self._processed += len(batch)
        now = self.clock.time()
        self._prefetch_files([name for _, _, name, _ in batch if os.path.isabs(name)])
        for event_id, source, name, state in batch:
            self._emit(ev.EventReceived(now, event_id, name, source))  # type: ignore[arg-type]
            self._mark_document_from_event(name, state)
        events = [(eid, name) for eid, _, name, _ in batch]
        emissions = self._generators.run(events, lambda done, hung: self._take_over(batch, done, hung))
        self._apply_batch(batch, emissions, None)

    def _apply_batch(self, batch: list[tuple[int, str, str, FileState | None]], emissions: list[Emission],
                     hung: Hung | None) -> None:
        """Register what the generators emitted for a batch (and, if one hung, report it and put the events
        after it back at the front of the backlog)."""
        now = self.clock.time()
        self._prefetch_emitted(emissions)
        done_ids = {e.event_id for e in emissions}
        marks: list[tuple[str, str | None, int]] = []
        for emission in emissions:
            marks.append(self._apply_emission(emission))
        if hung is not None:
            event_id, generator, given = hung
            message = f"did not return within {self.config.generator_timeout:g}s (it is left running, abandoned)"
            self._emit(ev.GeneratorError(now, generator, given, message, ""))
            marks.append(("error", f"generator {generator} hung", event_id))
            done_ids.add(event_id)
            # the events after the hung one go back to the front, in order
            rest = [item for item in batch if item[0] not in done_ids]
            self._backlog.extendleft(reversed(rest))
            self._pending_events += len(rest)
        self.store.mark_events(marks)
        self._no_doc_file = set()  # true for this batch only (the file-state cache may be trimmed later)

    def _take_over(self, batch: list[tuple[int, str, str, FileState | None]], done: list[Emission],
                   hung: Hung) -> None:
        """A generator outlived its bound on the loop's thread (called on the runner's monitor thread): a
        fresh thread finishes that cycle and runs the loop from then on; the stuck one touches nothing more."""
        def finish_the_cycle() -> None:
            self._apply_batch(batch, done, hung)
            self._finish_cycle()

        thread = threading.Thread(target=self._run, args=(finish_the_cycle,), name="tinyo-engine", daemon=True)
        thread.start()
        self._thread = thread  # after start: stop() takes a thread that has not started for one that ended

    def _prefetch_files(self, paths: list[str]) -> None:
        """What the store knows of a batch's file documents, in a few lookups instead of a few per file (none
        past the one for their names when the files are new)."""
        self.graph.prefetch(paths)
        want = [p for p in paths if p not in self._doc_files]
        if want:
            versioned = [p for p in want if self.graph.versions.get(p)]
            rows = self.store.doc_files_many(versioned) if versioned else {}
            for path in want:
                row = rows.get(path)
                if row is None:
                    self._no_doc_file.add(path)
                elif row[1] is not None and row[2] is not None:
                    self._doc_files[path] = FileState(row[2], row[3], row[1])

    def _prefetch_emitted(self, emissions: list[Emission]) -> None:
        """The store's facts on every document and DES a batch's generators emitted, looked up together."""
        docs: list[str] = []
        ids: list[str] = []
        targs: list[frozenset[str]] = []
        for emission in emissions:
            for _, _, des in emission.des:
                ids.append(des.id)
                targs.append(des.targs)
                docs.extend(des.deps)
                docs.extend(des.targs)
        if ids:
            self.graph.prefetch(docs, ids, targs)

    def _mark_document_from_event(self, name: str, state: FileState | None) -> None:
        if os.path.isabs(name):
            if self._file_event(name, state):
                self._refresh_file_document(name, by="event", hint=state)
        else:
            self._bump_document(name, by="event")

    def _file_event(self, path: str, state: FileState | None) -> bool:
        """Whether a file event gives its document a version: not when the file is gone by now (its readers
        wait for it), nor when a DES produces it (a change by hand makes that DES stale: it is built again)."""
        st = stat_file(path)
        owner = self.graph.producer_of(path)
        if owner is not None:
            node = self.graph.node(owner)
            if node is not None and node.status is None and path not in self.graph.drifted:
                what = self._checks.drift(path, st=st, hint=state)
                if what is not None:
                    self.graph.drifted[path] = what
                    self._touched.append(owner)
            return False
        if st is None:
            self._file_gone(path)
            return False
        if path in self.graph.gone:
            self.graph.gone.discard(path)
            self._touched.extend(self.graph.readers(path))
        return True

    def _file_gone(self, path: str) -> None:
        """``path``'s readers wait for it; the file coming back, even as it was, is a new event."""
        if path not in self.graph.gone:
            self.graph.gone.add(path)
            self._touched.extend(self.graph.readers(path))
        self._files[path] = GONE
        self.store.set_file_seen(path, GONE.mtime_ns, GONE.size, None)

    def _bump_document(self, name: str, by: str) -> None:
        old = self.graph.version(name)
        version = (old or 0) + 1
        self._touched.extend(self.graph.set_version(name, version))
        if old is None:
            self._first_version(name)
        self.store.put_documents([(name, version, None, None, None, self.clock.time(), by)])
        self._emit(ev.DocumentUpdated(self.clock.time(), name, version, by))

    def _refresh_file_document(self, path: str, by: str, hint: FileState | None = None) -> bool:
        """Give a file document a new version if its content changed; False if the file is missing.
        ``hint``: the file's state as intake read it moments ago (it is not read again)."""
        known = self._file_state(path)
        changed, state = compare_file(path, known, self.config.hash_files, hint=hint)
        if state is None:
            return False
        version = self.graph.version(path)
        if changed or version is None:
            if version is None:
                self._first_version(path)
            version = (version or 0) + 1
            self._touched.extend(self.graph.set_version(path, version))
            self._emit(ev.DocumentUpdated(self.clock.time(), path, version, by))
        if changed or state != known or known is None:
            self._doc_files[path] = state
            self.store.put_documents([(path, version, state.digest, state.mtime_ns, state.size, self.clock.time(), by)])
        return True

    def _file_state(self, path: str) -> FileState | None:
        """The file state behind a document's current version (memory, else the store)."""
        known = self._doc_files.get(path)
        if known is None and path not in self._no_doc_file:
            row = self.store.doc_files_many([path]).get(path)
            if row is not None and row[2] is not None and row[3] is not None:
                known = self._doc_files[path] = FileState(row[2], row[3], row[1])
        return known

    # ------------------------------------------------------------ document groups
    def _doc_state(self, doc: str) -> str | None:
        """A document's state as its group counts it (None: not in the DAG yet)."""
        owner = self.graph.producer_of(doc)
        if owner is not None:
            node = self.graph.nodes.get(owner)
            return DES_TO_DOC[node.state] if node is not None else "up to date"
        if self.graph.version(doc) is not None:
            return "source"
        return "missing" if self.graph.readers(doc) else None

    def _join(self, doc: str, state: str) -> None:
        pattern = self.groups.join(doc, state)
        self.store.add_names([(doc, pattern)])
        self._docs_total += 1

    def _first_version(self, doc: str) -> None:
        """``doc`` is about to get its first version: an input turns from missing to source."""
        if self.graph.producer_of(doc) is not None:
            return
        if self.graph.readers(doc):
            self.groups.move(doc, "missing", "source")
        else:
            self._join(doc, "source")

    def _des_moved(self, node: Node, old: str, new: str) -> None:
        old_doc, new_doc = DES_TO_DOC[old], DES_TO_DOC[new]
        if old_doc != new_doc:
            for targ in node.targs:
                self.groups.move(targ, old_doc, new_doc)

    def _apply_emission(self, emission: Emission) -> tuple[str, str | None, int]:
        now = self.clock.time()
        for generator, given, message, tb in emission.errors:
            self._emit(ev.GeneratorError(now, generator, given, message, tb))
        for index, (generator, given, des) in enumerate(emission.des, 1):
            self._register(des, generator, given, emission.event)
            if index % REGISTER_SLICE == 0:
                # a huge emission: start dispatching what is ready instead of registering all first
                self._commit_and_publish(self._settle_and_prepare())
        self._emit(ev.EventProcessed(now, emission.event_id, emission.event, len(emission.des), len(emission.errors)))
        status = "error" if emission.errors else "done"
        detail = f"{len(emission.des)} DES" + (f", {len(emission.errors)} generator error(s)" if emission.errors else "")
        return status, detail, emission.event_id

    def _register(self, des: Any, generator: str, given: str, event: str) -> bool:
        des_id = des.id
        if self.graph.has(des_id):
            if des_id in self.graph.nodes and des_id not in self._ops:
                self._ops[des_id] = self._refs(des)  # reloaded from the store: keep the live ops
            return False
        now = self.clock.time()
        try:
            refs = self._refs(des)
            self.graph.check(des_id, des.deps, des.targs)
        except (DESRejected, OpNotImportable) as exc:
            self._emit(ev.DESRejectedEvent(now, des_id, generator, given, str(exc)))
            self._emit(ev.GeneratorError(now, generator, given, f"DES {des_id} rejected: {exc}", ""))
            return False
        ops_desc, blob = self._op_facts(refs)
        node = Node(des_id, _names(des.deps), _names(des.targs), ops_desc, generator,
                    sys.intern(given) if given == event else f"{given} (from {event})")
        for targ in node.targs:
            before = self._doc_state(targ)
            if before is None:
                self._join(targ, "never built")
            else:
                self.groups.move(targ, before, "never built")
        for dep in node.deps:
            if self._doc_state(dep) is None:
                self._join(dep, "missing")
        self.graph.add(node)
        self._des_total += 1
        self._ops[des_id] = refs
        self.store.add_des([(des_id, des.deps, des.targs, ops_desc, blob, generator, node.event, now)])
        for dep in des.deps:
            if os.path.isabs(dep) and self.graph.version(dep) is None:
                self._refresh_file_document(dep, by="found")
        self._touched.append(des_id)
        self._emit(ev.DESRegistered(now, des_id, des.deps, des.targs, ops_desc, generator, node.event))
        return True

    def _op_facts(self, refs: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, ...], bytes | None]:
        """(op names, the ops as stored for a restart (None: they cannot be)), worked out once per distinct
        op list: generators mostly pass the same functions and Config objects to many DES."""
        key = tuple((ref, id(cfg)) for ref, cfg in refs)
        hit = self._op_cache.get(key)
        if hit is not None:
            return hit[1], hit[2]
        ops_desc = tuple(ref.partition(":")[2] for ref, _ in refs)
        ops_desc = self._shared.setdefault(ops_desc, ops_desc)
        try:
            blob = dump_ops(list(refs)) if all(not r.startswith("<memory>") for r, _ in refs) else None
        except Exception:
            blob = None  # a Config value that cannot be pickled: the DES runs, but not after a restart
        if len(self._op_cache) >= OP_CACHE_MAX:
            self._op_cache.clear()
        self._op_cache[key] = (refs, ops_desc, blob)  # the refs hold their Configs: no id is reused while cached
        return ops_desc, blob

    def _refs(self, des: Any) -> tuple[tuple[str, Any], ...]:
        strict = self.execution in (Execution.PROCESSES, Execution.DASK)
        out = []
        for fn, cfg in des.ops:
            try:
                out.append((self.resolver.ref(fn), cfg))
            except OpNotImportable:
                if strict:
                    raise
                ref = f"<memory>:{getattr(fn, '__qualname__', type(fn).__name__)}#{id(fn)}"
                self.resolver._objs[ref] = fn
                out.append((ref, cfg))
        return tuple(out)

    # ================================================================ timers
    def _fire_due_timers(self) -> None:
        if not self.timers:
            return
        now = datetime.fromtimestamp(self.clock.time())
        for name, tick in self._schedule.due(now):
            self._fire(name, tick, manual=False)

    def _fire(self, name: str, tick: datetime, manual: bool) -> None:
        event = timer_event(name, tick)
        if not manual:
            self.store.set_timer_tick(name, tick.timestamp())
        self._emit(ev.TimerFired(self.clock.time(), name, tick.timestamp(), event, manual))
        self._intake.put(("timer", event, None))

    # ================================================================ commands and reports
    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "msgs":
            worker = item[1]
            for msg_kind, run_id, payload in item[2]:
                self._on_message(worker, msg_kind, run_id, payload)
        elif kind == "lost":
            self._on_lost(*item[1:])
        elif kind == "requeue":
            for task in item[2]:
                run = self._open.get(task.run_id)
                if run is not None:
                    run.submitted = False
                    self._requeue.append(run)
        elif kind == "worker":
            _, name, pid, state, detail = item
            self._emit(ev.WorkerChanged(self.clock.time(), name, pid, state, detail))
        elif kind == "cmd":
            self._on_command(item[1], *item[2:])
        elif kind == "query":
            _, fn, future = item
            try:
                future.set_result(fn())
            except BaseException as exc:  # the caller gets the exception
                future.set_exception(exc)

    def _on_command(self, name: str, *args: Any) -> None:
        now = self.clock.time()
        if name == "fire":
            self._fire(args[0], datetime.fromtimestamp(now), manual=True)
        elif name in ("rerun", "rerun_doc"):
            target, downstream = args
            des_id = target if name == "rerun" else self.graph.producer_of(target)
            if des_id is None or self.graph.node(des_id) is None:
                what = "DES" if name == "rerun" else "DES producing document"
                self._emit(ev.EngineNotice(now, "error", f"rerun: no {what} {target!r}"))
                return
            ids = [des_id, *(self.graph.downstream(des_id) if downstream else [])]
            rows = []
            for nid in ids:
                node = self.graph.node(nid)
                if node is None:
                    continue
                node.forced = True
                self._touched.append(nid)
                stored = node.failed_state or ("ok" if node.trace is not None else "new")
                rows.append((stored, node.trace, node.failed_trace, True, nid))
            self.store.update_des(rows)
            self._emit(ev.EngineNotice(now, "info", f"rerun of {len(ids)} DES requested"))
        elif name == "pause":
            if not self._paused:
                self._paused = True
                self._set_state("paused", f"paused: {self._buffered()} buffered")
        elif name == "resume":
            if self._paused:
                self._paused = False
                self._set_state("running", "resumed")
        elif name == "cancel":
            run_id = args[0]
            run = self._open.get(run_id)
            if run is None:
                self._emit(ev.EngineNotice(now, "error", f"cancel: run {run_id} is not queued or running"))
                return
            self._cancel_intent[run_id] = "cancel"
            if run.submitted and self._executor is not None:
                self._executor.cancel(run_id, "cancel")
            else:
                self._finish_failed(run, "cancelled before it started", None, 0.0, cause="cancel")

    def _poll_requests(self) -> None:
        try:
            requests = self.store.pending_requests()
        except Exception as exc:
            raise StoreError(f"{self.store.path}: cannot read requests ({exc})") from exc
        for req_id, kind, arg in requests:
            if kind in ("rerun", "rerun_down"):
                self._on_command("rerun" if self.graph.has(arg) else "rerun_doc", arg, kind == "rerun_down")
            elif kind == "inject":
                self._intake.put(("manual", arg, None))
            elif kind == "fire" and arg in {t.name for t in self.timers}:
                self._fire(arg, datetime.fromtimestamp(self.clock.time()), manual=True)
            elif kind in ("pause", "resume"):
                self._on_command(kind)
            elif kind == "cancel" and arg.isdigit():
                self._on_command("cancel", int(arg))
            self.store.mark_request(req_id)

    def _on_message(self, worker: str, kind: str, run_id: int, payload: Any) -> None:
        run = self._open.get(run_id)
        now = self.clock.time()
        if kind == "out":
            stream, line = payload
            if run is not None:
                run.output.append(line if stream == "stdout" else f"[stderr] {line}")
            self._emit(ev.OpOutput(now, run_id, run.des_id if run else "", run.op if run else "", worker, stream, line))
        elif kind == "start":
            if run is None:
                return
            run.worker, run.start = worker, payload[1]
            run.start_mono = self.clock.monotonic()
            node = self.graph.nodes.get(run.des_id)
            if node is not None:
                node.status = "running"
                self._touched.append(node.id)
            self._unsaved_starts.add(run_id)  # written at commit, or with its finish if that comes first
            self._emit(ev.OpStarted(now, run_id, run.des_id, run.op, worker, run.attempt, run.targs))
        elif kind == "metric":
            fields = dict(payload)
            fields.pop("run_id", None)
            self._emit(ev.FlowMetrics(now, run_id, **fields))
        elif kind == "done":
            if run is None:
                return
            ok, error, tb, result, duration = payload
            run.worker = run.worker or worker
            if ok:
                self._finish_ok(run, result, duration)
            else:
                cause = self._cancel_intent.pop(run_id, None)
                if error and error.startswith("cancelled") and cause is None:
                    cause = "cancel"
                self._finish_failed(run, error or "failed", tb, duration, cause=cause)
        elif kind == "fatal":
            if worker not in self._failing_workers:  # once per streak of failed starts, not per respawn
                self._failing_workers.add(worker)
                self._emit(ev.EngineNotice(now, "error", f"{payload}; retrying with back-off"))
        elif kind == "ready":
            self._failing_workers.discard(worker)

    def _on_lost(self, worker: str, pid: int | None, reason: str, running_id: int | None, cause: str | None,
                 requeue: list[Task]) -> None:
        now = self.clock.time()
        self._emit(ev.WorkerChanged(now, worker, pid, "dead", reason))
        if running_id is not None and running_id in self._open and not self._stop_requested:
            run = self._open[running_id]
            run.worker = run.worker or worker
            intent = self._cancel_intent.pop(running_id, None) or cause
            duration = self.clock.monotonic() - run.start_mono if run.start_mono else 0.0
            if intent == "timeout":
                message = f"timed out after {self.config.op_timeout:g}s; {reason.replace('was killed (SIGKILL)', 'was stopped')}"
            elif intent == "cancel":
                message = "cancelled"
            else:
                message = f"{reason} while running op {run.op}"
            self._finish_failed(run, message, None, duration, cause=intent if intent == "cancel" else None)
        for task in requeue:
            run = self._open.get(task.run_id)
            if run is not None:
                run.submitted = False
                self._requeue.append(run)

    # ================================================================ run outcomes
    def _finish_ok(self, run: OpenRun, result: str | None, duration: float) -> None:
        node = self.graph.nodes.get(run.des_id)
        self._open.pop(run.run_id, None)
        now = self.clock.time()
        if node is None:
            return
        missing = [t for t in sorted(node.targs) if os.path.isabs(t) and stat_file(t) is None]
        if missing:
            self._finish_failed(run, f"op {run.op} finished but did not create its target file {missing[0]}", None,
                                duration)
            return
        self.store.finish_runs([self._finish_row(run, "ok", now, None, None, result)])
        node.status = None
        node.forced = False
        node.failed_state = None
        node.failed_trace = None
        node.trace = dict(run.dep_versions)
        self._attempts.pop(node.id, None)
        ops = self._ops.get(node.id)
        if ops is not None and not any(ref.startswith("<memory>") for ref, _ in ops):
            del self._ops[node.id]  # up to date: a rerun reloads the ops from the store
        self._emit(ev.OpFinished(now, run.run_id, node.id, run.op, run.worker or "", duration, result))
        for targ in sorted(node.targs):
            if os.path.isabs(targ):
                self._refresh_file_document(targ, by=node.id)
                self.graph.drifted.pop(targ, None)
            else:
                self._bump_document(targ, by=node.id)
        self.store.update_des([("ok", node.trace, None, False, node.id)])
        self._touched.append(node.id)

    def _finish_failed(self, run: OpenRun, error: str, tb: str | None, duration: float, cause: str | None = None) -> None:
        node = self.graph.nodes.get(run.des_id)
        self._open.pop(run.run_id, None)
        now = self.clock.time()
        status = "cancelled" if cause == "cancel" else "failed"
        self.store.finish_runs([self._finish_row(run, status, now, error, tb, None)])
        if node is None:
            return
        node.status = None
        retry_in: float | None = None
        if status == "failed" and run.attempt <= self.config.retries:
            retry_in = min(self.config.retry_max_delay, self.config.retry_delay * (2 ** (run.attempt - 1)))
            self._attempts[node.id] = run.attempt + 1
            node.status = "retry"
            node.reason = f"retry {run.attempt + 1} of {self.config.retries + 1} in {retry_in:g}s after: {error}"
            heapq.heappush(self._retries, (self.clock.monotonic() + retry_in, node.id))
            self.store.update_des([("retry", node.trace, node.failed_trace, node.forced, run.attempt + 1, node.id)])
        else:
            self._attempts.pop(node.id, None)
            node.failed_state = status  # type: ignore[assignment]
            node.failed_trace = dict(run.dep_versions)
            node.error = error
            node.forced = False
            self.store.update_des([(status, node.trace, node.failed_trace, False, node.id)])
            if status == "failed":
                self.failures += 1
        if status == "cancelled":
            self._emit(ev.OpCancelled(now, run.run_id, node.id, run.op, run.worker or ""))
        else:
            self._emit(ev.OpFailed(now, run.run_id, node.id, run.op, run.worker or "", duration, error, tb or "", retry_in))
        self._touched.append(node.id)

    def _due_retries(self, mono: float) -> None:
        while self._retries and self._retries[0][0] <= mono:
            _, des_id = heapq.heappop(self._retries)
            node = self.graph.nodes.get(des_id)
            if node is not None and node.status == "retry":
                node.status = None
                node.forced = True  # a retry runs even if the deps are as they were
                self._touched.append(des_id)

    def _check_timeouts(self) -> None:
        limit = self.config.op_timeout
        if not limit or not self._open or self._executor is None:
            return
        now = self.clock.time()
        for run_id, started in self._executor.running().items():
            if now - started > limit and run_id not in self._cancel_intent and run_id in self._open:
                self._cancel_intent[run_id] = "timeout"
                self._executor.cancel(run_id, "timeout")

    # ================================================================ readiness and dispatch
    def _settle_and_prepare(self) -> list[Task]:
        if self._touched:
            touched, self._touched = self._touched, []
            self._checks.built_targets(touched)  # a built DES whose target file drifted is stale, not up to date
            ready, changed = self.graph.settle(dict.fromkeys(touched))
            now = self.clock.time()
            for node in changed:
                if node.state == "failed":
                    self._failed_ids.add(node.id)
                else:
                    self._failed_ids.discard(node.id)
                self._des_moved(node, node.was, node.state)
                self._emit(ev.DESStateChanged(now, node.id, node.state, node.reason, node.was, node.targs))
            for des_id in ready:
                node = self.graph.nodes[des_id]
                reason = node.reason
                node.status = "queued"
                was, node.state = node.state, "queued"
                node.reason = f"queued: {reason}"
                self._ready.append(des_id)
                self._des_moved(node, was, "queued")
                self._emit(ev.DESQueued(now, des_id, frozenset(node.targs), reason))
                self._emit(ev.DESStateChanged(now, des_id, "queued", node.reason, was, node.targs))
        if self._stop_requested or not (self._ready or self._requeue) or self._executor is None or self._held():
            return []
        slots = self._executor.free_slots()
        tasks: list[Task] = []
        rows = []
        while slots > 0 and self._requeue:
            run = self._requeue.popleft()
            if run.run_id in self._open:
                run.submitted = True
                tasks.append(run.task)
                slots -= 1
        while slots > 0 and self._ready:
            des_id = self._ready.popleft()
            node = self.graph.nodes[des_id]
            if self._waits_for_files(node):
                continue
            ops = self._ops.get(des_id) or self._load_ops(des_id)
            if ops is None:
                continue
            attempt = self._attempts.get(des_id, 1)
            run_id = self._next_run_id
            self._next_run_id += 1
            dep_versions = self.graph.current(node) if self.graph.has_all_versions(node) else {}
            task = Task(run_id, des_id, attempt, self._recipe_path, ops, frozenset(node.deps), frozenset(node.targs))
            label = self._labels.get(node.ops_desc)
            if label is None:
                label = self._labels[node.ops_desc] = "+".join(node.ops_desc)  # == task.op_label
            self._open[run_id] = OpenRun(run_id, des_id, attempt, task, dep_versions, label, node.targs)
            rows.append((run_id, des_id, attempt, None, None, "queued", dep_versions))
            tasks.append(task)
            slots -= 1
        if rows:
            self.store.add_runs(rows)
        return tasks

    def _held(self) -> bool:
        """True while start-up holds dispatch: until the scan's files are all taken in and processed (or
        READY_MAX DES are ready, or intake is paused)."""
        if not self._holding:
            return False
        if (not self._paused and len(self._ready) < READY_MAX
                and (self._settling or not self._intake.empty() or self._backlog or self._backlog_in_store)):
            return True
        self._holding = False
        return False

    def _waits_for_files(self, node: Node) -> bool:
        """True (and the DES back to waiting) if a file dep of ``node`` is gone as it is about to run: it
        waits for the file (or, for a produced dep, for its producer to make it again)."""
        gone = self._checks.gone_deps(node)
        if not gone:
            return False
        for dep in gone:
            owner = self.graph.producer_of(dep)
            if owner is not None:
                self.graph.drifted[dep] = MISSING
                self._touched.append(owner)
            else:
                self._file_gone(dep)
        node.status = None
        self._touched.append(node.id)
        self._wake.set()
        return True

    def _load_ops(self, des_id: str) -> tuple[tuple[str, Any], ...] | None:
        row = self.store.des_row(des_id)
        if row is None or row.ops_blob is None:
            node = self.graph.nodes[des_id]
            node.status = None
            node.failed_state = "failed"
            node.failed_trace = self.graph.current(node)
            self._emit(ev.EngineNotice(self.clock.time(), "error",
                                       f"DES {des_id}: its ops were not stored (not importable); it runs again when "
                                       "its generator emits it"))
            self._touched.append(des_id)
            return None
        try:
            ops = tuple(load_ops(row.ops_blob))
        except Exception as exc:
            self._emit(ev.EngineNotice(self.clock.time(), "error", f"DES {des_id}: cannot load its stored ops: {exc}"))
            return None
        self._ops[des_id] = ops
        return ops

    # ================================================================ stopping
    def _graceful_stop(self) -> None:
        self._set_state("stopping", "stopping: no new work is started")
        while not self._intake.empty():
            self._store_intake()  # accepted events are stored (not processed): the next start takes them
        self._commit_and_publish([])
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
            while not self._intake.empty():
                self._store_intake()
            self._commit_and_publish([])
        begun = time.monotonic()
        # the grace is read each time round: a second stop() with a shorter timeout cuts it short
        while time.monotonic() < begun + self._stop_grace and any(r.start is not None for r in self._open.values()):
            self._wake.wait(0.05)
            self._wake.clear()
            self._cycle()
        self._teardown(grace=0.0)

    def _teardown(self, grace: float) -> None:
        self._generators.close()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._executor is not None:
            self._executor.shutdown(grace)
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item[0] in ("msgs", "lost", "worker"):
                    self._handle(item)
                elif item[0] == "query":
                    item[2].set_exception(TinyoError("the engine has stopped"))
        now = self.clock.time()
        detached = set(getattr(self._executor, "detached", list)()) if self._executor is not None else set()
        open_ids = [rid for rid in self._open if rid not in detached]
        self._state = "stopped"
        try:
            if open_ids:
                self.store.finish_runs([("interrupted", now, "the engine stopped before this run finished; it runs "
                                         "again at the next start", None, "\n".join(self._open[r].output), None, None, r)
                                        for r in open_ids])
            self.store.commit()
        except StoreError as exc:
            # the store cannot be written (disk full, I/O error): what was committed before stands, and runs
            # still open there are marked interrupted at the next start
            if self.fatal is None:
                self.fatal = exc
            self._emit(ev.EngineNotice(now, "error", str(exc)))
        finally:
            self._emit(ev.EngineState(now, "stopped", f"{len(open_ids)} run(s) interrupted" if open_ids else ""))
            self.store.close()
            out, self._bus_out = self._bus_out, []
            for event in out:
                self.bus.publish(event)
            self._stopped.set()

    # ================================================================ query bodies (engine thread)
    def _stats(self) -> EngineStats:
        now = self.clock.time()
        failed = len(self._failed_ids)
        running = sum(1 for r in self._open.values() if r.start is not None)
        return EngineStats(
            state=self._state,
            started_at=self.started_at or now,
            uptime=now - (self.started_at or now),
            events_total=self._events_base + self.events_taken,
            events_per_s=self._rate.rate(now),
            queued=len(self._ready) + sum(1 for r in self._open.values() if r.start is None),
            running=running,
            failed=failed,
            buffered=self._buffered() if self._paused else 0,
            des_total=self._des_total,
            docs_total=self._docs_total,
        )

    def _des_details(self, des_id: str) -> DESDetails | None:
        node = self.graph.node(des_id)
        if node is None:
            return None
        ops = [(ref.partition(":")[2], dict(cfg)) for ref, cfg in (self._ops.get(des_id) or self._load_ops_quiet(des_id))]
        runs = self.store.runs_for(des_id)
        last_tb = next((r.traceback or r.error for r in reversed(runs) if r.status in ("failed", "cancelled")), None)
        open_run = next((r for r in self._open.values() if r.des_id == des_id), None)
        output = list(open_run.output) if open_run else ((runs[-1].output or "").splitlines() if runs else [])
        return DESDetails(
            des_id=des_id, deps=frozenset(node.deps), targs=frozenset(node.targs), ops=ops, state=node.state,
            reason=node.reason,
            generator=node.generator, event=node.event,
            runs=[RunInfo(r.id, r.attempt, r.worker, r.start, r.end, r.status, r.error) for r in runs],
            last_traceback=last_tb, output=output,
        )

    def _load_ops_quiet(self, des_id: str) -> tuple[tuple[str, Any], ...]:
        row = self.store.des_row(des_id)
        if row is None or row.ops_blob is None:
            return ()
        try:
            return tuple(load_ops(row.ops_blob))
        except Exception:
            return ()

    def _documents(self, prefix: str | None, limit: int) -> list[DocInfo]:
        names = self.store.names_from(prefix or "", limit)
        return [i for i in map(self._doc_info, names) if i is not None]

    def _doc_info(self, name: str) -> DocInfo | None:
        state = self._doc_state(name)
        if state is None:
            return None
        owner = self.graph.producer_of(name)
        detail = ""
        if owner is not None:
            node = self.graph.nodes.get(owner)
            if node is not None and node.state in ("waiting", "stale", "failed", "retry"):
                detail = node.error if node.state == "failed" and node.error else node.reason
        readers = self.graph.readers(name)
        shown = tuple(heapq.nsmallest(READERS_SHOWN, readers))
        return DocInfo(name, self.graph.version(name), owner, state, detail, shown, len(readers))

    def _group_members(self, pattern: str, offset: int, limit: int) -> list[DocInfo]:
        rows = self.store.group_members(pattern, offset, limit)
        return [i for i in (self._doc_info(name) for name, _, _ in rows) if i is not None]

    def _des_info(self, des_id: str) -> DESInfo | None:
        node = self.graph.nodes.get(des_id)
        if node is None:
            row = self.store.des_lookup(des_id)
            if row is None:
                return None
            node = self._node_from_row(row)
            node.state, node.reason = "ok", ""
        run = next((r for r in self._open.values() if r.des_id == des_id), None) if node.status else None
        return DESInfo(des_id, tuple(sorted(node.deps)), tuple(sorted(node.targs)), node.ops_desc, node.generator,
                       node.event, node.state, node.reason, node.error,
                       run.run_id if run is not None else None, run.worker if run is not None else None)


class _StoreBacking:
    """The graph's view of the store: DES and document facts evicted from memory are read back here."""

    def __init__(self, store: Store, build: Callable[[Any], Node]) -> None:
        self.store = store
        self.build = build

    def node(self, des_id: str) -> Node | None:
        row = self.store.des_lookup(des_id)
        return None if row is None else self.build(row)

    def versions(self, docs: list[str]) -> dict[str, int]:
        return self.store.doc_versions_many(docs)

    def producers(self, docs: list[str]) -> dict[str, str]:
        return self.store.producers_many(docs)

    def consumers(self, docs: list[str]) -> dict[str, list[str]]:
        return self.store.consumers_many(docs)

    def existing_des(self, des_ids: list[str]) -> set[str]:
        return self.store.des_existing(des_ids)

    def known(self, docs: list[str]) -> set[str]:
        return self.store.names_known(docs)
