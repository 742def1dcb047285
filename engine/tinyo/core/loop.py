"""Provides the loop: the one thread that owns the engine's state, and its cycle.

Everything reaches the loop through two bounded queues (intake events; commands, queries and executor
reports) and a wake flag. A cycle: apply commands and reports, fire due timers and retries, store up to
a bounded number of intake events, feed at most ``maxevents`` stored events to the generators (when the
recipe leaves ``maxevents`` to the engine: several batches while a backlog waits, within a time budget),
register what they emit, settle the DES touched, write run rows, commit, hand tasks to the executor,
and only then release the cycle's facts on the bus (so the bus never announces what is not durable).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .. import events as ev
from ..clock import Clock, ManualClock
from ..dag import Graph
from ..errors import StoreError, TinyoError
from ..executors import Executor
from ..generators import Abandoned, Emission, GeneratorRunner, Hung
from ..messages import Message, Query, Report, Requeue, Rescan, WorkerLost, WorkerReports, WorkerState
from ..waker import Waker
from .backing import StoreBacking
from .commands import Commands, RunState
from .dispatch import READY_MAX, Dispatch
from .documents import Documents
from .inflow import INTAKE_MAX, STORE_PER_CYCLE, Inflow, Stored
from .outbox import Outbox
from .queries import Queries
from .registration import Registration
from .runbook import RunBook
from .start import start

if TYPE_CHECKING:
    from ..early import EarlyStart
    from ..model import Execution
    from ..recipe import OpResolver, Recipe
    from ..store import Store
    from ..worker import Task

T = TypeVar("T")

INBOX_MAX = 50_000
"""Executor reports and commands waiting for the loop; a full inbox back-pressures the workers."""
BATCHES_PER_CYCLE, BACKLOG_BUDGET, READY_FOR_MORE = 8, 0.02, READY_MAX // 2
"""A backlog's batches fed to the generators per commit, and for at most how many seconds (the wait of a burst's
first run), while fewer DES than READY_FOR_MORE wait for a worker (past it the engine is ahead of them)."""
REQUEST_POLL = 1.0
"""Seconds between looks at the store for requests from the CLI (``tinyo rerun`` while running)."""
TIMEOUT_CHECK, INBOX_SLICE = 0.05, 1000
"""Seconds between looks for runs past ``op_timeout`` (each asks the executor what runs); inbox messages taken
at once (room made for its producers a slice at a time)."""


class Loop:
    """The engine's thread and cycle, and the parts it drives."""

    def __init__(self, recipe: Recipe, store: Store, bus: ev.Bus, clock: Clock, resolver: OpResolver,
                 execution: Execution, max_workers: int, executor_address: str | None, watch: bool,
                 intake_max: int = INTAKE_MAX, early: EarlyStart | None = None) -> None:
        self.recipe = recipe
        self.config = config = recipe.config
        self.store = store
        self.clock = clock
        self.resolver = resolver
        self.execution = execution
        self.max_workers = max_workers
        self.executor_address = executor_address
        self.watch_files = watch
        self.early = early
        """Worker and watcher processes started before the engine was built: taken at the start."""
        self.timers = config.timer_specs
        self.outbox = Outbox(bus, clock)
        self.run = RunState()
        self.touched: list[str] = []
        """DES whose readiness must be settled this cycle (every part appends; dispatch drains)."""
        backing = StoreBacking(store)
        self.graph = Graph(backing)
        self.wake = Waker()
        """Set by any thread to wake the loop; the process pool's report pipes are read while it waits."""
        self.inflow = Inflow(store, config, clock, self.outbox, self.timers, lambda: self.send(Rescan()), intake_max,
                             self.wake.set)  # the watcher asks for a look at a folder (from its thread)
        self.documents = Documents(self.graph, store, config, clock, self.outbox, self.touched, self.inflow.mark_gone)
        self.registration = Registration(self.graph, store, self.documents, self.outbox, clock, resolver, execution,
                                         self.touched)
        backing.build = self.registration.node_from_row
        self.runbook = RunBook(self.graph, store, self.documents, self.registration, self.outbox, clock, config,
                               self.touched)
        self.dispatch = Dispatch(self.graph, store, self.documents, self.registration, self.runbook, self.outbox,
                                 clock, str(recipe.path), self.touched)
        self.commands = Commands(self.run, self.graph, store, self.inflow, self.runbook, self.outbox, clock,
                               self.touched, {t.name for t in self.timers})
        self.queries = Queries(self.run, self.graph, store, self.documents, self.registration, self.dispatch,
                               self.runbook, self.inflow, clock, lambda: self.executor)
        self.generators = GeneratorRunner(recipe.roots, config.generator_timeout)
        self.inbox: queue.Queue[Message] = queue.Queue(maxsize=INBOX_MAX)
        self.own_messages: deque[Message] = deque()
        """Messages sent from the loop's own thread: kept for the next cycle (see ``send``)."""
        self.thread: threading.Thread | None = None
        self.executor: Executor | None = None
        self.stopped = threading.Event()
        self.started = threading.Event()
        self.fatal: BaseException | None = None
        self.idle_mark: float | None = None
        """Monotonic time since when nothing was pending or running (loop thread writes)."""
        self.went_idle = threading.Event()
        """Set when the loop becomes idle or stops (whoever waits for that clears it first)."""
        self._next_request_poll = 0.0
        self._next_timeout_check = 0.0
        self._processed = 0
        self._since_prune = 0

    # ================================================================ other threads
    def send(self, message: Message) -> None:
        """Hand ``message`` to the loop. On the loop's own thread (a command from inside a query, or a
        callback run there) it is kept for the next cycle instead: a put on the full inbox only the loop
        drains would wait for itself."""
        if threading.current_thread() is self.thread:
            self.own_messages.append(message)
            self.wake.set()
            return
        while not self.stopped.is_set():
            try:
                self.inbox.put(message, timeout=0.5)
            except queue.Full:
                continue  # the loop drains the inbox every cycle; a stopped loop ends the wait
            self.wake.set()
            return

    def report(self, item: Report) -> None:
        """The executor's sink (its threads, or the loop's own while it waits: the process pool's reports are
        read there, and a put on the full inbox only the loop drains would wait for itself)."""
        if threading.current_thread() is self.thread:
            self.own_messages.append(item)
            self.wake.set()
            return
        self.inbox.put(item)  # blocks while the inbox is full: the executor's threads wait
        self.wake.set()

    def idle_since(self) -> float | None:
        """The loop's idle mark, None while anything sent is not yet taken in: ``unfinished_tasks`` falls
        only after the loop has marked itself busy (``_take``), so no message slips through unseen."""
        inflow = self.inflow
        if inflow.queue.unfinished_tasks or self.inbox.unfinished_tasks or inflow.own or self.own_messages:
            return None
        return self.idle_mark

    def _take(self, source: queue.Queue[T]) -> T:
        """The next item of ``source`` (queue.Empty when none), the loop marked busy before it is."""
        item = source.get_nowait()
        self.idle_mark = None
        source.task_done()
        return item

    def _take_many(self, source: queue.Queue[T], limit: int) -> list[T]:
        """Up to ``limit`` items of ``source`` at once, the loop marked busy before they leave its count, as
        ``_take`` does: one round of its lock for a burst, not two per item."""
        with source.mutex:
            waiting = source.queue
            count = min(limit, len(waiting))
            if count <= 0:
                return []
            items = [waiting.popleft() for _ in range(count)]
            self.idle_mark = None
            source.unfinished_tasks -= count
            if not source.unfinished_tasks:
                source.all_tasks_done.notify_all()
            source.not_full.notify(count)  # producers blocked on a full queue may put again
        return items

    # ================================================================ life
    def main(self) -> None:
        try:
            start(self)
            self._commit_and_publish([])
        except BaseException as exc:
            if self.early is not None:
                self.early.dismiss()
            self.fatal = exc
            self.outbox.publish_now(ev.EngineNotice(self.clock.time(), "error", f"engine could not start: {exc}"))
            self.run.state = "stopped"
            self.started.set()
            self._teardown(grace=0)
            return
        self.started.set()
        self.loop()

    def loop(self, first: Callable[[], None] | None = None) -> None:
        """The loop, until a stop is asked for and done. ``first``: what to finish before it (the rest of a
        cycle whose generator hung on the thread that ran the loop until then)."""
        try:
            if first is not None:
                first()
            while not self.run.stop_requested:
                self.wake.wait(self._wait_time())
                self.wake.clear()
                self.cycle()
            self._graceful_stop()
        except Abandoned:
            return  # a generator hung on this thread and has now returned: another thread runs the loop
        except BaseException as exc:
            self.fatal = exc
            message = str(exc) if isinstance(exc, TinyoError) else f"engine stopped on an unexpected error: {exc!r}"
            self.outbox.drop()  # facts of the failed cycle were not committed: they are not announced
            self.outbox.publish_now(ev.EngineNotice(self.clock.time(), "error", message))
            self._teardown(grace=0)

    def _wait_time(self) -> float | None:
        """Seconds until the next thing the loop must do by itself (None: only a wake-up); each source is looked
        at only when it has something (a chain's link waits here once)."""
        mono, inflow = self.clock.monotonic(), self.inflow
        due = [] if self.store.memory else [self._next_request_poll]
        if self.timers and (nxt := inflow.schedule.next_due()) is not None:
            due.append(mono + max(0.0, nxt.timestamp() - self.clock.time()))
        if self.runbook.retries:
            due.append(self.runbook.retries[0][0])
        if inflow.next_rescan is not None:
            due.append(inflow.next_rescan)
        if self.config.op_timeout and self.runbook.open:
            due.append(max(mono, self._next_timeout_check))
        # the window counts only while its close would feed a batch (else a command or a report wakes the loop)
        window = inflow.window.deadline() if not self.run.paused and not self.dispatch.full() else None
        if window is not None or inflow.settling:
            # real time, whatever the clock: files arrive in it
            wait = max(0.0, window - time.monotonic()) if window is not None else 0.05
            due.append(mono + (min(wait, 0.05) if inflow.settling else wait))
        if not due:
            return None
        # a ManualClock does not move by itself: wake at least every 50 ms so tests that advance it are seen
        return min(max(0.0, min(due) - mono), 0.05 if isinstance(self.clock, ManualClock) else 3600.0)

    # ================================================================ the cycle
    def cycle(self) -> None:
        mono = self.clock.monotonic()
        while self.own_messages:
            self._handle(self.own_messages.popleft())
        inbox, handled = self.inbox, 0
        # looked at without its lock (only this thread takes; a put is followed by a wake-up): no queue.Empty
        while inbox.queue and handled < INBOX_MAX:
            items = self._take_many(inbox, min(INBOX_SLICE, INBOX_MAX - handled))
            handled += len(items)
            for item in items:
                self._handle(item)
        # the fixed checks, each only when it may have something due
        inflow = self.inflow
        if self.timers:
            inflow.fire_due_timers()
        if self.runbook.retries:
            self.runbook.due_retries(mono)
        if self.config.op_timeout and self.runbook.open and mono >= self._next_timeout_check:
            self._next_timeout_check = mono + TIMEOUT_CHECK
            self.runbook.check_timeouts()
        if mono >= self._next_request_poll:
            self._next_request_poll = mono + REQUEST_POLL
            self.commands.poll_requests(room=STORE_PER_CYCLE)
            inflow.check_watched_folders()
        if inflow.next_rescan is not None and mono >= inflow.next_rescan:
            inflow.next_rescan = mono + (self.config.rescan_interval or 0)
            inflow.rescan_wanted = True
        if inflow.rescan_wanted:
            inflow.rescan_wanted = False
            inflow.scan()
        if (inflow.own or inflow.queue.queue) and not inflow.holds_intake(
                self.run.paused or self.run.stop_requested, self.dispatch.full()):
            self._store_intake(batch=True)
        if inflow.settling:
            inflow.look_at_settling()
        if inflow.has_backlog():
            if not self.run.paused and not self.dispatch.full() and inflow.window.due(time.monotonic()):
                self._process_batches()
        elif inflow.window.first is not None:
            inflow.window.taken()  # all it held went on (a cycle finished after a hang): else it stays due
        self._finish_cycle()

    def _process_batches(self) -> None:
        """Feed the backlog to the generators a batch at a time, within the bounds above: one commit for several
        batches writes the pages every commit rewrites (the ends of tables and indexes) once for all of them.
        A recipe's own ``maxevents`` is the most events a cycle feeds before it dispatches (SPEC): one batch."""
        until = time.monotonic() + BACKLOG_BUDGET
        inflow = self.inflow
        for _ in range(BATCHES_PER_CYCLE if self.config.maxevents is None else 1):
            self._store_intake(batch=True)  # the next batch, if the backlog lacks one
            self._process_backlog()
            if not inflow.has_backlog():
                inflow.window.taken()
                if not inflow.waiting():
                    return
            if (self.dispatch.full() or self.run.paused or self.run.stop_requested or time.monotonic() >= until
                    or len(self.dispatch.ready) + len(self.touched) >= READY_FOR_MORE):
                return

    def _handle(self, item: Message) -> None:
        if isinstance(item, WorkerReports):
            self.runbook.on_reports(item.worker, item.messages)
        elif isinstance(item, WorkerLost):
            self.runbook.on_lost(item)
        elif isinstance(item, Requeue):
            self.runbook.give_back(item.tasks)
        elif isinstance(item, WorkerState):
            self.outbox.emit(ev.WorkerChanged(self.clock.time(), item.worker, item.pid, item.state, item.detail))
        elif isinstance(item, Query):
            try:
                item.future.set_result(item.ask())
            except BaseException as exc:  # the caller gets the exception
                item.future.set_exception(exc)
        else:
            self.commands.apply(item)

    def _store_intake(self, batch: bool = False) -> None:
        """Store intake events: all that wait (up to STORE_PER_CYCLE), or with ``batch`` no more than the
        generators' next batch while the cycle feeds them from intake (``Inflow.room``)."""
        feeding = batch and not (self.run.paused or self.config.maxevents is not None or self.dispatch.full())
        room = self.inflow.room(feeding, self.config.batch_events) if batch else STORE_PER_CYCLE
        if self.inflow.store_events(self._take_many, room) and self.run.paused:
            self.commands.set_state("paused", f"paused: {self.inflow.pending} buffered")

    def _process_backlog(self) -> None:
        batch = self.inflow.next_batch(self.config.batch_events)
        if not batch:
            return
        self._processed += len(batch)
        self.documents.begin_batch()
        self.documents.from_events(batch)
        events = [(eid, name) for eid, _, name, *_ in batch]
        emissions = self.generators.run(events, lambda done, hung: self._take_over(batch, done, hung))
        self._apply_batch(batch, emissions, None)

    def _apply_batch(self, batch: list[Stored], emissions: list[Emission], hung: Hung | None) -> None:
        """Register what the generators emitted for a batch (and, if one hung, report it and put the events
        after it back at the front of the backlog)."""
        registration = self.registration
        registration.prefetch(emissions)
        registration.begin_batch()
        self.documents.begin_batch()
        done_ids = {e.event_id for e in emissions}
        # no trim between slices: it would drop what ``prefetch`` found for the rest (a lookup per DES then)
        flush = lambda: self._commit_and_publish(self._settle_and_take(), trim=False)  # noqa: E731
        stored = {item[0]: item for item in batch}
        emit, now, versions, received = self.outbox.emit, self.clock.time(), self.documents.event_versions, ev.EventReceived
        for emission in emissions:  # the batch's events first, as they came, then what they made
            # one fact per event, once the generators have seen it: what it was, what came of it, its version
            event_id, source, name, _, taken = stored[emission.event_id]
            emit(received(now, event_id, name, source, taken, len(emission.des), len(emission.errors),  # type: ignore[arg-type]
                          versions.pop(event_id, None)))
        marks = registration.register_batch(emissions, flush)
        if hung is not None:
            event_id, generator, given = hung
            message = f"did not return within {self.config.generator_timeout:g}s (it is left running, abandoned)"
            if event_id in stored:
                _, source, name, _, taken = stored[event_id]
                version = versions.pop(event_id, None)
                emit(received(now, event_id, name, source, taken, version=version))  # type: ignore[arg-type]
            emit(ev.GeneratorError(self.clock.time(), generator, given, message, ""))
            marks.append(("error", f"generator {generator} hung", event_id))
            done_ids.add(event_id)
            self.inflow.put_back([item for item in batch if item[0] not in done_ids])
        self.documents.tell_untold(batch)
        registration.end_batch()
        self.documents.end_batch()
        self.store.mark_events(marks)

    def _take_over(self, batch: list[Stored], done: list[Emission], hung: Hung) -> None:
        """A generator outlived its bound on the loop's thread (called on the runner's monitor thread): a
        fresh thread finishes that cycle and runs the loop from then on; the stuck one touches nothing more."""
        def finish_the_cycle() -> None:
            self._apply_batch(batch, done, hung)
            self._finish_cycle()

        thread = threading.Thread(target=self.loop, args=(finish_the_cycle,), name="tinyo-engine", daemon=True)
        thread.start()
        self.thread = thread  # after start: stop() takes a thread that has not started for one that ended

    def _settle_and_take(self) -> list[Task]:
        self.dispatch.settle()
        executor = self.executor
        if self.run.stop_requested or executor is None or not self.dispatch.waiting():
            return []
        if self.inflow.holds_dispatch(self.run.paused, self.dispatch.full()):
            return []
        return self.dispatch.take(executor.free_slots())

    def _finish_cycle(self) -> None:
        """Dispatch what is ready, commit, announce."""
        self._commit_and_publish(self._settle_and_take())
        inflow, dispatch = self.inflow, self.dispatch
        more = ((inflow.waiting() and not inflow.held) or not self.inbox.empty() or self.own_messages or self.touched
                or (not self.run.paused and inflow.has_backlog() and not dispatch.full()
                    and inflow.window.due(time.monotonic()))
                or (dispatch.ready and not inflow.holding and self.executor is not None
                    and self.executor.free_slots() > 0))
        if more:
            self.wake.set()
        self._update_idle()

    def _commit_and_publish(self, tasks: list[Task], trim: bool = True) -> None:
        # rows a batch still holds go with this commit: the facts released below may speak of them
        self.registration.write_batch()
        self.documents.write_batch()
        config = self.config
        if (config.retention_events or config.retention_runs) and self._processed - self._since_prune >= 500:
            self._since_prune = self._processed
            self.store.prune(config.retention_events, config.retention_runs)
        self.store.commit()
        if tasks and self.executor is not None:
            self.executor.submit(tasks)
        groups = self.documents.groups.take_touched()
        if groups:
            self.outbox.emit(ev.GroupsChanged(self.clock.time(), groups))
        self.outbox.release()
        if not trim:
            return
        # after the commit (nothing is deferred): drop up-to-date DES and cached file states from memory
        if self.graph.evict():
            self.registration.trim()
        self.documents.trim()
        self.inflow.trim()

    def _update_idle(self) -> None:
        busy = (self.runbook.open or self.dispatch.ready or self.runbook.retries or self.inflow.has_backlog()
                or self.inflow.settling or self.inflow.waiting() or not self.inbox.empty() or self.own_messages)
        if busy:
            self.idle_mark = None
        elif self.idle_mark is None:
            self.idle_mark = time.monotonic()
            self.went_idle.set()

    # ================================================================ stopping
    def _graceful_stop(self) -> None:
        self.commands.set_state("stopping", "stopping: no new work is started")
        while self.inflow.waiting():
            self._store_intake()  # accepted events are stored (not processed): the next start takes them
        self._commit_and_publish([])
        if self.inflow.watcher is not None:
            self.inflow.ask_watcher_stop()  # its process ends while the workers do (waited for in the teardown)
            while self.inflow.waiting():
                self._store_intake()
            self._commit_and_publish([])
        run = self.run
        while time.monotonic() < run.stop_began + run.stop_grace and self.runbook.any_running():
            self.wake.wait(0.05)
            self.wake.clear()
            self.cycle()
        self._teardown(grace=0.0)

    def _teardown(self, grace: float) -> None:
        self.generators.close()
        self.inflow.ask_watcher_stop()
        executor = self.executor
        if executor is not None:
            executor.shutdown(grace)
            mine, self.own_messages = self.own_messages, deque()
            for item in mine:  # reports read on this thread while the pool stopped (the rest stay)
                if isinstance(item, (WorkerReports, WorkerLost, WorkerState)):
                    self._handle(item)
                else:
                    self.own_messages.append(item)
            while True:
                try:
                    item = self._take(self.inbox)
                except queue.Empty:
                    break
                if isinstance(item, (WorkerReports, WorkerLost, WorkerState)):
                    self._handle(item)
                elif isinstance(item, Query):
                    item.future.set_exception(TinyoError("the engine has stopped"))
        self.inflow.stop_watcher()  # its reader has delivered all it will: stored below with the rest
        now = self.clock.time()
        detached = set(getattr(executor, "detached", list)()) if executor is not None else set()
        self.run.state = "stopped"
        interrupted = 0
        try:
            if self.fatal is None:
                while self.inflow.waiting():
                    self._store_intake()  # files reported just before the watcher was asked to stop
            self.registration.write_batch()  # rows of a batch a failure left open: as written before it
            self.documents.write_batch()
            interrupted = self.runbook.interrupt_open(detached)
            self.store.commit()
        except StoreError as exc:
            # the store cannot be written (disk full, I/O error): what was committed before stands, and runs
            # still open there are marked interrupted at the next start
            if self.fatal is None:
                self.fatal = exc
            self.outbox.emit(ev.EngineNotice(now, "error", str(exc)))
        finally:
            detail = f"{interrupted} run(s) interrupted" if interrupted else ""
            self.outbox.emit(ev.EngineState(now, "stopped", detail))
            self.store.close()
            self.outbox.release()
            self.stopped.set()
            self.went_idle.set()
            self.wake.close()  # nothing waits on it any more

