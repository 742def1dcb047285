"""Provides intake as the loop sees it: the bounded queue other threads (the watcher, ``inject``)
fill, the events the loop takes in itself (timer ticks, CLI requests), storing events in order,
the backlog of stored events not yet fed to the generators, folder scans and the watcher process."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from .. import events as ev
from ..clock import Clock
from ..engine_state import RateMeter
from ..intake import FileState, SettleWindow, TimerSchedule, compare_file, stat_file, timer_event
from ..watch import IgnoredNames, WatcherProcess, scan_folder, state_files

if TYPE_CHECKING:
    from ..model import TimerSpec, TinyOConfig
    from ..store import Store
    from .outbox import Outbox

INTAKE_MAX = 100_000
"""Events waiting to be stored; a full intake blocks the watcher (the kernel queue then overflows and
the rescan finds the files), so memory stays bounded and nothing is lost."""
BACKLOG_MAX = 5_000
"""Stored-but-unprocessed events kept in memory; the rest are read back from the store in order."""
STORE_PER_CYCLE = 5_000
"""The most intake events stored in one cycle."""
LOOKAHEAD = 256
"""Intake items a burst's batch looks at past itself: their files' last-evented states are asked for with its
own (one query for a cycle's batches, not one per batch)."""
SCAN_QUIET = 0.5
"""A file a scan finds modified less than this many seconds ago waits to be quiet (it may be half written)."""
FILE_CACHE_MAX = 4096
"""File states (last evented) cached in memory; the store has them all."""

GONE = FileState(0, -1, None)
"""The last-seen state of a file that was gone when its event was processed (no file has it)."""

Intake = tuple[str, str, "FileState | None"]
"""(source, event name, the file's state as read by the watcher or None)."""
Stored = tuple[int, str, str, "FileState | None", float]
"""An event waiting for the generators: id, source, name, file state, when it was taken in (stored)."""
"""(event id, source, event name, file state): a stored event waiting for the generators."""


class Inflow:
    """Events in, stored in order, and handed to the generators in batches. ``put`` from any thread;
    everything else on the loop thread."""

    def __init__(self, store: Store, config: TinyOConfig, clock: Clock, outbox: Outbox, timers: list[TimerSpec],
                 rescan: Callable[[], None], intake_max: int, wake: Callable[[], None]) -> None:
        self.store = store
        self._wake = wake
        """Wakes the loop (from any thread): an event put on ``queue`` is seen now, not at the next timeout."""
        self.config = config
        self.clock = clock
        self.outbox = outbox
        self._ask_rescan = rescan
        self.queue: queue.Queue[Intake] = queue.Queue(maxsize=intake_max)
        self.own: deque[Intake] = deque()
        """Events the loop itself takes in (timers, CLI requests): never put on ``queue``, which only the
        loop drains (a blocking put there from the loop would wait for itself)."""
        self.backlog: deque[Stored] = deque()
        self.backlog_in_store = True
        """Stored events wait that are not in ``backlog`` (read back from the store in order)."""
        self.pending = 0
        """Stored events not yet fed to the generators."""
        self.base = 0
        """Events stored before this engine started."""
        self.taken = 0
        """Events stored by this engine (for ``--stop-after``)."""
        self.rate = RateMeter()
        self.timers = timers
        self.schedule = TimerSchedule(timers)
        self.watcher: WatcherProcess | None = None
        self._ending: list[WatcherProcess] = []
        """Watchers asked to stop whose processes have not yet been waited for."""
        self.rescan_wanted = False
        self.next_rescan: float | None = None
        self._last_backlog_id = 0
        self._files: dict[str, FileState | None] = {}
        self._ignored_name = IgnoredNames(config.ignore)
        self.window = SettleWindow(config.settle, config.settle_max, config.batch_events)
        """When events that arrive together have all arrived (the generators get them as one batch)."""
        self.holding = True
        """Nothing is dispatched until the start-up scan's files are all taken in and processed (one build
        for what changed while the engine was down)."""
        self.settling: dict[str, float] = {}  # start-up scan files still being written -> when to look again
        self.asked = False
        """An event was put from another thread (a command's): the next store takes all that waits."""
        self.held = False
        """The intake queue's events wait unstored for their window to close (``holds_intake``)."""

    # ------------------------------------------------------------ taking in
    def put(self, item: Intake, loop_thread: threading.Thread | None) -> None:
        """Take in an event from any thread (blocks while the queue is full, except on the loop's thread)."""
        if threading.current_thread() is loop_thread:
            self.own.append(item)
        else:
            self.queue.put(item)
            self.asked = True  # acknowledged to its sender (tinyo inject): stored in the next cycle, not a batch later
        self._wake()

    def on_files(self, files: list[tuple[str, FileState]]) -> None:
        """Completed files from the watcher process, each with its state as read there (watcher thread): as
        many as the queue has room for in one round of its lock (a burst's batch is hundreds of files, each
        ``put`` a round of locks and a notify), the rest one by one, waiting while the intake is full."""
        items = [("file", path, state) for path, state in files]
        waiting = self.queue
        with waiting.mutex:  # as ``Queue.put`` does, for many (the loop takes many the same way: ``Loop._take_many``)
            room = len(items) if waiting.maxsize <= 0 else max(0, waiting.maxsize - len(waiting.queue))
            fits = items if room >= len(items) else items[:room]
            if fits:
                waiting.queue.extend(fits)
                waiting.unfinished_tasks += len(fits)
                waiting.not_empty.notify(len(fits))
        for item in items[len(fits):]:
            waiting.put(item)  # blocks while the intake is full: the watcher waits
        # a hint read across threads: while the loop holds the queue's files for their window, it wakes by
        # itself at the window's deadline (at worst earlier than these files would have it, and holds again)
        if not self.held or len(waiting.queue) >= self.window.count:
            self._wake()

    def waiting(self) -> bool:
        """Events taken in and not yet stored."""
        return bool(self.own) or not self.queue.empty()

    def holds_intake(self, paused: bool, ready_full: bool) -> bool:  # paused: or stopping
        """Whether the watcher's files in the queue wait there, unstored, for their settle window to close
        (``SettleWindow.hold``): only while nothing stored waits for the generators and the cycle would feed
        them. A command's event (acknowledged to its sender), the loop's own, a paused or stopping intake, the start-up
        scan's hold and a queue half full are stored at once, as before. A held file is in the queue as
        one the loop has not reached yet: a crash before its commit leaves it to the start-up scan."""
        queued = len(self.queue.queue)
        self.held = bool(queued and not (self.own or self.asked or paused or ready_full or self.holding
                                         or self.settling or self.has_backlog() or self.window.first is not None
                                         or queued > self.queue.maxsize // 2)
                         and self.window.hold(time.monotonic(), queued))
        return self.held

    def store_events(self, take: Callable[[queue.Queue[Intake], int], list[Intake]],
                     limit: int = STORE_PER_CYCLE) -> int:
        """Store waiting intake events (file events only when the file's content is new); returns how many
        were stored. ``take``: the loop's way to take up to n items from the queue (marking itself busy first);
        ``limit``: the most taken from it (the loop's own events are all stored)."""
        items: list[tuple[str, str]] = []
        files: dict[str, FileState | None] = {}  # path -> its latest state as the watcher read it (None: unread)
        settling = self.settling
        limit = min(limit, STORE_PER_CYCLE)
        while len(items) < STORE_PER_CYCLE:
            if self.own:
                taken = [self.own.popleft()]
            elif len(items) >= limit:
                break
            else:
                # no more than can be stored: each item taken adds at most one event
                taken = take(self.queue, limit - len(items))
                if not taken:
                    break
            for source, name, seen in taken:
                if source in ("file", "scan"):
                    if settling:
                        settling.pop(name, None)
                    if name in files:
                        files[name] = seen
                        continue  # a burst on one path coalesces into one event
                    files[name] = seen
                items.append((source, name))
        if not items:
            return 0
        self.held = False
        now = self.clock.time()
        known = self._files
        unknown = [name for name in files if name not in known]
        if unknown:
            if limit < STORE_PER_CYCLE:  # a batch of a burst: the files of the next ones are looked up with it
                with self.queue.mutex:
                    ahead = [item[1] for item in islice(self.queue.queue, LOOKAHEAD) if item[0] in ("file", "scan")]
                unknown.extend(name for name in dict.fromkeys(ahead) if name not in known and name not in files)
            # no flush: every file whose seen state this commit defers is in ``_files`` (cleared only after a
            # commit), so the store is asked only about files it holds as committed
            found = self.store.files_seen_many(unknown, flush=False)
            for name in unknown:
                row = found.get(name)
                known[name] = FileState(*row) if row else None
        rows = []
        states: list[FileState | None] = []  # a file's state as read now: its document need not read it again
        file_change, set_seen = self._file_change, self.store.set_file_seen
        for source, name in items:
            if source == "file" or source == "scan":
                seen = files[name]
                was = known.get(name) if seen is not None and seen.digest else GONE
                if was is None or (was is not GONE and was.digest is not None and was.digest != seen.digest):
                    # as ``_file_change`` takes a state the watcher hashed, for other content than the last
                    # event's (a burst's new files): changed, no stat or hash again
                    set_seen(name, seen.mtime_ns, seen.size, seen.digest)
                    known[name] = state = seen
                else:
                    state = file_change(name, seen)
                if state is None:
                    continue
            else:
                state = None
            rows.append((now, source, name, "new"))
            states.append(state)
        if not rows:
            self.window.let_go()
            return 0
        ids = self.store.add_events(rows)
        self.window.arrived(time.monotonic(), len(ids))
        self.taken += len(ids)
        self.pending += len(ids)
        self.rate.add(now, len(ids))
        # in order, into memory while the backlog has room and none waits in the store; the rest is read back
        room = 0 if self.backlog_in_store else max(0, BACKLOG_MAX - len(self.backlog))
        kept = min(room, len(ids))
        if kept:
            append = self.backlog.append
            for event_id, row, state in zip(ids[:kept], rows, states):
                append((event_id, row[1], row[2], state, now))
            self._last_backlog_id = ids[kept - 1]
        if kept < len(ids):
            self.backlog_in_store = True
        return len(ids)

    def room(self, feeding: bool, batch: int) -> int:
        """How many intake events to store before the generators' next batch. While the loop is ``feeding``
        them from intake under a burst, that batch only: a file's event, its seen state and its first version
        then share one commit (its document row is written once, not twice), and the rest wait in the queue,
        in order. Else all that waits: when an event a command put was acknowledged (it must not wait in
        memory behind a burst), and once the queue is half full (a burst far larger than the loop keeps
        pace with goes to the store, far from the bound at which the watcher waits)."""
        waiting = self.queue
        if not feeding or self.backlog_in_store or self.asked or len(waiting.queue) > waiting.maxsize // 2:
            self.asked = False
            return STORE_PER_CYCLE
        return max(0, batch - len(self.backlog))

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

    # ------------------------------------------------------------ the backlog
    def has_backlog(self) -> bool:
        return bool(self.backlog) or self.backlog_in_store

    def next_batch(self, size: int) -> list[Stored]:
        """The next stored events for the generators, oldest first (read back from the store if needed)."""
        if not self.backlog and self.backlog_in_store:
            self._refill()
        batch = [self.backlog.popleft() for _ in range(min(size, len(self.backlog)))]
        self.pending -= len(batch)
        return batch

    def put_back(self, rest: list[Stored]) -> None:
        """Events of a batch the generators did not get to go back to the front, in order."""
        self.backlog.extendleft(reversed(rest))
        self.pending += len(rest)

    def _refill(self) -> None:
        rows = self.store.new_events(self._last_backlog_id, BACKLOG_MAX // 2)
        # a file event's state as intake last recorded it: the file is not read again (as for the events
        # that stayed in memory); a file changed since has a later event of its own
        seen = self.store.files_seen_many([name for _, _, source, name in rows if source in ("file", "scan")])
        for event_id, taken, source, name in rows:
            state = seen.get(name) if source in ("file", "scan") else None
            self.backlog.append((event_id, source, name, FileState(*state) if state is not None else None, taken))
            self._last_backlog_id = event_id
        if len(rows) < BACKLOG_MAX // 2:
            self.backlog_in_store = False

    def trim(self) -> None:
        if len(self._files) > FILE_CACHE_MAX:
            self._files.clear()

    def mark_gone(self, path: str) -> None:
        """``path`` was gone when its event was processed: the file coming back, even as it was, is a new event."""
        self._files[path] = GONE
        self.store.set_file_seen(path, GONE.mtime_ns, GONE.size, None)

    # ------------------------------------------------------------ holding dispatch at start-up
    def holds_dispatch(self, paused: bool, ready_full: bool) -> bool:
        """True while start-up holds dispatch: until the scan's files are all taken in and processed (or
        enough DES are ready, or intake is paused)."""
        if not self.holding:
            return False
        if not paused and not ready_full and (self.settling or not self.queue.empty() or self.own
                                                  or self.has_backlog()):
            return True
        self.holding = False
        return False

    def look_at_settling(self) -> None:
        """Start-up scan files the watcher has not reported yet: one that is gone is not waited for."""
        mono = time.monotonic()
        for path, when in list(self.settling.items()):
            if mono >= when:
                if stat_file(path) is None:
                    del self.settling[path]
                else:
                    self.settling[path] = mono + SCAN_QUIET

    # ------------------------------------------------------------ timers
    def start_timers(self, now: float) -> None:
        """Start the timers' grid; ticks missed while the engine was down fire per the catch-up policy."""
        catch_up = self.schedule.start(datetime.fromtimestamp(now), self.store.timer_ticks(), self.config.catch_up,
                                       self.config.catch_up_limit)
        for name, tick in catch_up:
            self.fire(name, tick, manual=False)

    def fire_due_timers(self) -> None:
        if not self.timers:
            return
        for name, tick in self.schedule.due(datetime.fromtimestamp(self.clock.time())):
            self.fire(name, tick, manual=False)

    def fire(self, name: str, tick: datetime, manual: bool) -> None:
        """Take in a timer's event (loop thread: never through the queue)."""
        event = timer_event(name, tick)
        if not manual:
            self.store.set_timer_tick(name, tick.timestamp())
        self.outbox.emit(ev.TimerFired(self.clock.time(), name, tick.timestamp(), event, manual))
        self.own.append(("timer", event, None))

    # ------------------------------------------------------------ folders
    def start_watcher(self, launched: WatcherProcess | None = None) -> None:
        """Start watching the folders; ``launched``: a watcher process started earlier for this recipe,
        taken if it watches as this engine would (else it is stopped and another started)."""
        self.watcher = self._new_watcher(state_files(self.store.path))
        if launched is not None and launched.settings() == self.watcher.settings():
            self.watcher = launched
            launched.bind(self.on_files, self._ask_rescan, self.window.saw)
            return
        if launched is not None:
            launched.stop()
        self.watcher.launch()  # it starts while the executor does

    def _new_watcher(self, ignore: Iterable[str]) -> WatcherProcess:
        return WatcherProcess(self.config.dirs, self.on_files, self._ask_rescan, recursive=self.config.recursive,
                              debounce=self.config.debounce, ignore=ignore, use_hash=self.config.hash_files,
                              ignore_names=self.config.ignore, on_seen=self.window.saw)

    def check_watched_folders(self) -> None:
        """A watched folder replaced wholesale, or a watcher process that died, gets a new watcher and a
        rescan (about once a second)."""
        watcher = self.watcher
        if watcher is None or not watcher.roots_changed():
            return
        why = watcher.stopped_why()
        watcher.stop()
        self.watcher = self._new_watcher(watcher.ignore)
        self.watcher.start()
        self.rescan_wanted = True
        self.outbox.notice("warning", f"{why}: watching anew and rescanning")

    def ask_watcher_stop(self) -> None:
        """Stop taking in files now; the watcher process ends meanwhile (:meth:`stop_watcher` waits for it),
        so that it and the workers stop side by side."""
        if self.watcher is not None:
            self.watcher.ask_stop()
            self._ending.append(self.watcher)
            self.watcher = None

    def stop_watcher(self) -> None:
        """Stop taking in files and wait until the watcher process has ended (and its reader delivered
        what it had)."""
        self.ask_watcher_stop()
        while self._ending:
            self._ending.pop().stop()

    def scan(self) -> None:
        """Take in files in the watched folders whose content differs from the last event."""
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
                if self.watcher is not None and now - st.st_mtime < max(self.config.debounce, SCAN_QUIET):
                    # written moments ago: maybe still being written; its close (or its staying quiet) reports it
                    self.watcher.settle(path)
                    if self.holding:
                        self.settling[path] = time.monotonic() + SCAN_QUIET
                    continue
                try:
                    self.queue.put_nowait(("scan", path, None))
                    found += 1
                except queue.Full:
                    self.rescan_wanted = True  # the rest next cycle; nothing is lost
                    break
        if found:
            self.outbox.notice("info", f"scan found {found} new or changed file(s)")

    def _is_own_file(self, path: str) -> bool:
        return path.startswith(self.store.path) if not self.store.memory else False
