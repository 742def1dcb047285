"""Provides the Engine: the orchestrator's public face. Commands are thread-safe method calls that send
typed messages to the loop; queries run on the loop's thread; facts come up as bus events.

The work is done by the parts in ``tinyo.core``, all owned by one loop thread (``core.loop``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import events as ev
from .clock import Clock, SystemClock
from .core.loop import Loop
from .errors import TinyoError
from .messages import Cancel, FireTimer, Pause, Query, Rerun, RerunDocument, Rescan, Resume, Stop
from .model import Execution, TimerSpec
from .names import name_problem
from .queries import Asking, checked
from .recipe import OpResolver, Recipe, load_recipe
from .store import Store

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .early import EarlyStart

T = TypeVar("T")

INTAKE_MAX = 100_000
"""Events waiting to be stored; a full intake blocks the watcher (the kernel queue then overflows and
the rescan finds the files), so memory stays bounded and nothing is lost."""


class Engine(Asking):
    """The orchestrator. Commands are thread-safe method calls; queries are typed (``ask``, and the named
    calls of ``Asking``); facts come up as bus events."""

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
        early: EarlyStart | None = None,
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
        try:
            self.store = Store(self.db_path)
        except BaseException:
            if early is not None:
                early.dismiss()
            raise
        self.resolver = OpResolver(recipe.module, recipe.path)
        self.loop = Loop(recipe, self.store, self.bus, self.clock, self.resolver, self.execution, self.max_workers,
                         self.executor_address, watch, intake_max=INTAKE_MAX, early=early)
        """The loop and its parts (its thread alone touches them; tests may read them through ``call``)."""
        self.graph = self.loop.graph
        self.groups = self.loop.documents.groups
        """Documents counted per name pattern and state (what the console's tree shows)."""
        self.timers: list[TimerSpec] = self.loop.timers
        self._queries = self.loop.queries

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
        loop = self.loop
        if loop.thread is not None:
            return
        loop.thread = threading.Thread(target=loop.main, name="tinyo-engine", daemon=True)
        loop.thread.start()
        loop.started.wait(timeout=60)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully: intake stops, running ops get ``timeout`` seconds to finish (then they are
        stopped and recorded as interrupted, to run again next start), the state is committed. A second
        call with a shorter ``timeout`` shortens a stop under way."""
        loop = self.loop
        if loop.thread is None:
            if not loop.stopped.is_set():
                self.store.close()
                loop.stopped.set()
            return
        loop.send(Stop(timeout))
        # the loop may have moved to another thread (a generator hung): wait for the loop's stop, whichever
        # thread runs it, or for that thread to end
        deadline = time.monotonic() + timeout + 30
        while not loop.stopped.wait(0.05):
            thread = loop.thread
            if time.monotonic() > deadline or thread is None or not thread.is_alive():
                break
        thread = loop.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the engine has stopped; True if it did."""
        return self.loop.stopped.wait(timeout)

    def wait_idle(self, timeout: float) -> float | None:
        """Block until the engine is idle (or has stopped), at most ``timeout`` seconds; its idle mark
        (see :attr:`idle_since`), None if it is still busy."""
        went_idle = self.loop.went_idle
        went_idle.clear()  # before looking: going idle from now on ends the wait
        idle = self.idle_since
        if idle is None and not self.loop.stopped.is_set():
            went_idle.wait(timeout)
            idle = self.idle_since
        return idle

    def wait_next_idle(self, mark: float, timeout: float) -> None:
        """Block until the engine has gone busy and idle again since its idle mark ``mark`` (or has
        stopped), at most ``timeout`` seconds: a caller waiting for more work to be done sleeps meanwhile."""
        went_idle = self.loop.went_idle
        went_idle.clear()  # before looking: going idle from now on ends the wait
        if self.idle_since == mark and not self.loop.stopped.is_set():
            went_idle.wait(timeout)

    @property
    def state(self) -> ev.EngineStateName:
        return self.loop.run.state

    @property
    def paused(self) -> bool:
        return self.loop.run.paused

    @property
    def fatal(self) -> BaseException | None:
        """What stopped the engine unexpectedly (None while it runs, or after a clean stop)."""
        return self.loop.fatal

    @property
    def failures(self) -> int:
        """Runs that failed for good in this engine's lifetime (for the exit status)."""
        return self.loop.runbook.failures

    @property
    def events_taken(self) -> int:
        """Events stored by this engine (for ``--stop-after``)."""
        return self.loop.inflow.taken

    @property
    def started_at(self) -> float | None:
        return self.loop.run.started_at

    @property
    def idle_since(self) -> float | None:
        """Monotonic time since when nothing was pending or running (None while busy, including while
        something sent to the engine is not yet taken in)."""
        return self.loop.idle_since()

    def is_idle(self) -> bool:
        return self.idle_since is not None

    # ================================================================ commands (any thread)
    def inject(self, event: str) -> None:
        """Take ``event`` in as if it had happened (source ``manual``)."""
        if not isinstance(event, str) or not event:
            raise TinyoError(f"an event must be a non-empty string, got {event!r}")
        problem = name_problem(event)
        if problem is not None:
            raise TinyoError(f"the event {event!r} {problem}")
        self.loop.inflow.put(("manual", event, None), self.loop.thread)  # it wakes the loop

    def fire_timer(self, name: str) -> None:
        """Fire timer ``name`` now, off the grid (the event uses the current time as its tick)."""
        if name not in {t.name for t in self.timers}:
            known = ", ".join(t.name for t in self.timers) or "none"
            raise TinyoError(f"no timer named {name!r} in {self.recipe.path.name} (timers: {known})")
        self.loop.send(FireTimer(name))

    def rerun(self, des_id: str, downstream: bool = False) -> None:
        """Run a DES again even if it is up to date (and, with ``downstream``, all that depends on it)."""
        self.loop.send(Rerun(des_id, downstream))

    def rerun_document(self, name: str, downstream: bool = False) -> None:
        """Rerun the DES that produces document ``name``."""
        self.loop.send(RerunDocument(name, downstream))

    def pause(self) -> None:
        """Stop feeding events to the generators; they are still stored, in order, and kept."""
        self.loop.send(Pause())

    def resume(self) -> None:
        self.loop.send(Resume())

    def cancel(self, run_id: int) -> None:
        """Cancel a queued or running run (the worker running it is stopped and replaced)."""
        self.loop.send(Cancel(run_id))

    def rescan(self) -> None:
        """Look at the watched folders for files the watcher did not report."""
        self.loop.send(Rescan())

    # ================================================================ queries (any thread)
    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the engine thread and return its result (directly if the loop is not running)."""
        thread = self.loop.thread
        if thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return fn()
        from concurrent.futures import Future  # a query from another thread: not needed to start

        future: Future[T] = Future()
        self.loop.send(Query(fn, future))
        return future.result(timeout)

    def ask(self, query: Any) -> Any:
        """The answer to the typed query ``query`` (``tinyo.queries``; QueryError if it is not a valid one),
        worked out on the engine thread (or by the part that answers for itself)."""
        query = checked(query)
        if not query.on_loop:
            return self._queries.answer(query)
        return self.call(lambda: self._queries.answer(query))
