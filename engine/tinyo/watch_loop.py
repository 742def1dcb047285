"""Provides the file watcher's loop: watchdog events turned into one event per file once it is complete.

A file is reported when it is written and closed, or moved in: a file opened for writing is taken in at
its close, once, however long the writer pauses (renamed meanwhile too). A file that appears with no close
to come (moved in from an unwatched folder, which the kernel reports as a create) is reported ``debounce``
seconds after it appeared, once no process has it open for writing: the kernel grants a read lease only
then. Only where that cannot be told is a file reported once its size and mtime have stayed the same for
``debounce`` seconds: a hard link (its link count is over 1: the writes may go through its other name), a
file whose lease the watcher may not ask for (another user's, without CAP_LEASE), and a file a scan hands
over (``settle``: written moments before the scan) that is open for writing when the scan finds it. Only
these event types are asked for (not every write's "modified"), which keeps the kernel queue from
overflowing under bursts; when it overflows anyway, ``on_overflow`` is called so the engine rescans, once
watchdog has watched anew the folders it lost track of (where watchdog cannot say when, at its log line).
Changes made without a close (mmap) are found by the rescan (``rescan_interval``). Knows nothing of the
store or the UI: it calls back with paths.
"""

from __future__ import annotations

import fcntl
import fnmatch
import logging
import os
import re
import select
import signal
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .watch_events import file_handler, file_observer

if TYPE_CHECKING:
    from watchdog.observers import Observer

OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class _OverflowHook(logging.Handler):
    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.callback()


BURST = 0.01
"""A read of the kernel's events less than this many seconds after the previous one means a burst."""
GATHER = 0.002
"""Seconds the loop lets the kernel queue more events before reading them during a burst: fewer, larger
reads and batches (each costing a wake-up, a read, and a message to the engine). The first file after a
quiet spell is read at once."""
INBOX_MAX = 50_000
"""Files other threads (watchdog's emitter, a scan) may have waiting for the loop; past it, a rescan instead."""


class FileWatcher:
    """Watches folders; calls ``on_files(paths, seen)`` with the files completed (written and closed, or
    moved in), each once, and the monotonic time the latest of them was seen complete.

    One thread owns the files created and not yet complete (``_pending``, in the order they are due to be
    looked at) and the files complete and not yet handed over: where watchdog allows, the thread that reads
    the kernel's events (:func:`tinyo.watch_events.file_observer`), which also calls ``on_files``. A burst
    then costs one wake-up per read of the kernel's queue, not a hand-off per file between threads. Other
    threads (watchdog's emitter for moves, a scan's :meth:`settle`) post to it through a small inbox and a
    wake-up pipe."""

    def __init__(
        self,
        dirs: Iterable[str],
        on_files: Callable[[list[str], float], None],
        on_overflow: Callable[[], None],
        *,
        recursive: bool = False,
        debounce: float = 0.2,
        ignore: Iterable[str] = (),
        ignore_names: Iterable[str] = (),
    ) -> None:
        self.dirs = [str(Path(d).expanduser().resolve()) for d in dirs]
        self.on_files = on_files
        self.ignored_name = IgnoredNames(ignore_names)
        self.on_overflow = on_overflow
        self.recursive = recursive
        self.debounce = debounce
        self.ignore = {str(Path(p).resolve()) for p in ignore}
        self._observer: Observer | None = None
        self._loop_thread: threading.Thread | None = None
        self._pending: dict[str, tuple[float, tuple[int, int] | None, bool]] = {}
        """path -> (when to look, (mtime_ns, size) at the last look, created: a close may still come); in the
        order of when to look (an entry set again moves to the end). The loop thread's."""
        self._done: dict[str, None] = {}
        """Files complete since the last hand-over, each once. The loop thread's."""
        self._now = 0.0
        self._inbox: list[tuple[str, str]] = []
        self._inbox_lock = threading.Lock()
        self._overfull = False
        """Whether a post found the inbox full since the loop last took it (a rescan was asked for)."""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop = False
        self.failure: str | None = None
        """Why the loop stopped on its own (None: it did not)."""
        self._hook = _OverflowHook(on_overflow)
        self._roots: dict[str, tuple[int, int] | None] = {}

    def start(self) -> None:
        for folder in self.dirs:
            os.makedirs(folder, exist_ok=True)
        self._roots = {folder: _identity(folder) for folder in self.dirs}
        # a close needs no look at who has the file open; a move does (renamed before its writer was done)
        moved, closed = self._complete_unless_open, partial(self._post, "complete")
        created = partial(self._post, "created")
        handler, kinds, reports_loss = file_handler(moved, closed, created, self.on_overflow)
        if not reports_loss:  # an older watchdog: its log line is the only sign
            for name in OVERFLOW_LOGGERS:
                logging.getLogger(name).addHandler(self._hook)
        observer, reader = file_observer(self._loop, moved, closed, created)
        self._observer = observer
        if reader is None:
            reader = threading.Thread(target=self._loop, args=(None,), name="tinyo-watch", daemon=True)
            reader.start()
        self._loop_thread = reader
        try:
            for folder in self.dirs:
                observer.schedule(handler, folder, recursive=self.recursive, event_filter=kinds)
        except Exception:
            self.stop()
            raise
        observer.daemon = True
        observer.start()

    def stop(self) -> None:
        self._stop = True
        self._wake()
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=5)
        loop = self._loop_thread
        if loop is not None and loop is not threading.current_thread():
            loop.join(timeout=5)
        if (loop is None or not loop.is_alive()) and self._wake_w >= 0:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1  # a late post writes nowhere
            for fd in fds:
                os.close(fd)
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._hook)

    def roots_changed(self) -> bool:
        """True when a watched folder was replaced (moved over, or deleted and made again) or is gone, or the
        watcher's loop died: the kernel watch follows the old folder, so the watcher must be started again
        and the folder rescanned."""
        if any(_identity(folder) != ident for folder, ident in self._roots.items()):
            return True
        # a folder deleted and made again may get the same inode number back; watchdog stops the
        # emitter of a watch whose folder was deleted, so a dead emitter says it too
        observer, loop = self._observer, self._loop_thread
        return ((observer is not None and any(not e.is_alive() for e in list(observer.emitters)))
                or (loop is not None and not loop.is_alive() and not self._stop))

    def settle(self, path: str) -> None:
        """Report ``path``, found by a scan moments after it was written, once it is complete: at once when no
        process has it open for writing (the kernel grants a read lease; a file with one name), else at its
        close, or once its size and mtime stay the same for ``debounce`` seconds where that cannot be told.
        (The folders are watched before a scan, so a writer's close is seen.)"""
        self._post("complete" if _signature(path, created=True) is _COMPLETE else "settle", path)

    def _complete_unless_open(self, path: str) -> None:
        """From watchdog's threads: ``path`` was moved within the watched folders. Complete, unless
        some process still has it open for writing (renamed before its writer was done): then its close
        reports it."""
        self._post("created" if _signature(path, created=True) is _CLOSE_COMES else "complete", path)

    def _post(self, kind: str, path: str) -> None:
        """From a thread other than the loop's: hand it a file complete, created or to settle. Past
        ``INBOX_MAX`` waiting (a loop held back by a slow engine while folders full of files are moved in) a
        file is not queued: the engine is asked for a rescan instead, once, which finds it."""
        with self._inbox_lock:
            inbox = self._inbox
            full = len(inbox) >= INBOX_MAX
            if not full:
                inbox.append((kind, path))
            first = len(inbox) == 1
            ask, self._overfull = full and not self._overfull, self._overfull or full
        if ask:
            self.on_overflow()
        if first:
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already due to wake, or closed

    # The loop thread's own

    def _loop(self, reader: Any) -> None:
        """Wait for the kernel's events (when ``reader`` reads them), the inbox or the next file due to be
        looked at; hand what is complete over; until stopped."""
        try:
            self._serve(reader)
        except Exception as exc:  # the thread ends: roots_changed() is true, and the watcher process says why
            self.failure = f"{type(exc).__name__}: {exc}"

    def _serve(self, reader: Any) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        events = kill = -1
        if reader is not None:
            events, kill = reader.fd, reader.kill_fd
            poller.register(events, select.POLLIN)
            poller.register(kill, select.POLLIN)
        complete, created = self._complete, self._created
        last_read = seen = 0.0
        while not self._stop:
            timeout = None
            if self._pending:
                due = next(iter(self._pending.values()))[0] - time.monotonic()
                timeout = max(0, int(due * 1000 + 0.999))
            for fd, _ in poller.poll(timeout):
                if fd == events:
                    if time.monotonic() - last_read < BURST:
                        time.sleep(GATHER)
                    buffer = reader.read()
                    self._now = last_read = seen = time.monotonic()
                    reader.dispatch(buffer, complete, created)
                elif fd == self._wake_r:
                    self._take_inbox()
                    seen = self._now
                elif fd == kill:
                    return  # the reader is closing
            if self._pending and next(iter(self._pending.values()))[0] <= time.monotonic():
                self._look_at_due()
                seen = max(seen, self._now)
            if self._done and not self._stop:
                paths = list(self._done)
                self._done.clear()
                self.on_files(paths, seen)

    def _take_inbox(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
            self._overfull = False
        self._now = time.monotonic()
        for kind, path in inbox:
            if kind == "complete":
                self._complete(path)
            else:
                self._created(path, kind == "created")

    def _complete(self, path: str) -> None:
        self._pending.pop(path, None)
        if path not in self.ignore and not self.ignored_name(path):
            self._done[path] = None

    def _created(self, path: str, created: bool = True) -> None:
        # no stat and no name test here: a burst's creates cost the loop no file system call, and the name is
        # tested once, when the file is complete or due to be looked at
        self._pending.pop(path, None)
        self._pending[path] = (self._now + self.debounce, None, created)

    def _look_at_due(self) -> None:
        self._now = now = time.monotonic()
        due = []
        for path, entry in self._pending.items():
            if entry[0] > now:
                break
            due.append((path, entry))
        wall = time.time()
        for path, (_, sig, created) in due:
            del self._pending[path]
            if path in self.ignore or self.ignored_name(path):
                continue  # never taken in: no lease asked for, no look again
            current = _signature(path, created and sig is None)
            if current is _CLOSE_COMES:
                continue  # open for writing: its close reports it
            if current is _COMPLETE:
                self._complete(path)  # nobody has it open for writing: complete now
                continue
            if sig is None and current is not None:
                # first look: quiet if not modified for ``debounce`` seconds (by the file's mtime)
                still = wall - current[0] / 1e9 < self.debounce  # a clock behind the file's: look again
            else:
                still = current is not None and current != sig
            if still:
                self._pending[path] = (now + self.debounce, current, created)  # still being written
            elif current is not None:
                self._complete(path)


class IgnoredNames:
    """Which file names are never taken in (``TinyOConfig.ignore``): one compiled test of the name alone."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self.patterns = patterns
        self._match = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match if patterns else None

    def __call__(self, path: str) -> bool:
        """True if the file at ``path`` is to be ignored (its name matches a pattern)."""
        return self._match is not None and self._match(path.rpartition("/")[2]) is not None


def _identity(folder: str) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


_CLOSE_COMES = (-1, -1)
"""What :func:`_signature` says of a created file some process has open for writing: its close comes."""
_COMPLETE = (-2, -2)
"""What :func:`_signature` says of a created file with one name that no process has open for writing."""


def _signature(path: str, created: bool = False) -> tuple[int, int] | None:
    """(mtime_ns, size) of ``path`` (None: gone). For a file just ``created`` with a single name (a hard
    link has two or more, and its writes may go through another), _CLOSE_COMES or _COMPLETE when the
    kernel can tell whether it is open for writing."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if created and st.st_nlink <= 1 and stat_mod.S_ISREG(st.st_mode):
        writing = open_for_writing(path)
        if writing is not None:
            return _CLOSE_COMES if writing else _COMPLETE
    return (st.st_mtime_ns, st.st_size)


def open_for_writing(path: str) -> bool | None:
    """Whether some process has ``path`` open for writing: the kernel grants a read lease only when none
    has (released at once). None when that cannot be told: the lease may not be asked for (another
    user's file without CAP_LEASE, a file system without leases), or a lease break would kill this
    process (SIGIO not ignored: the watcher process ignores it)."""
    if signal.getsignal(signal.SIGIO) != signal.SIG_IGN:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        except OSError:
            pass  # no lease was taken
        os.close(fd)
    return False
