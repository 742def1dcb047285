"""Provides the file watcher: watchdog events turned into one event per file once it is complete.

A file is reported when it is written and closed, or moved in; a file created without a close
(a hard link, a file system without close events) is reported once its size and mtime have stayed
the same for ``debounce`` seconds. Only these event types are asked for (not every write's "modified"), which
keeps the kernel queue from overflowing under bursts; when it overflows anyway (watchdog only logs
it), ``on_overflow`` is called so the engine rescans. Changes made without a close (mmap) are found
by the rescan (``rescan_interval``). Knows nothing of the store or the UI: it calls back with paths.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class _OverflowHook(logging.Handler):
    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.callback()


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FileWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            self.watcher._complete(os.fsdecode(event.dest_path))
        elif isinstance(event, FileClosedEvent):
            self.watcher._complete(os.fsdecode(event.src_path))
        elif isinstance(event, FileCreatedEvent):
            self.watcher._touch(os.fsdecode(event.src_path))


class FileWatcher:
    """Watches folders; calls ``on_file(abs_path)`` once per completed write or move-in."""

    def __init__(
        self,
        dirs: Iterable[str],
        on_file: Callable[[str], None],
        on_overflow: Callable[[], None],
        *,
        recursive: bool = False,
        debounce: float = 0.2,
        ignore: Iterable[str] = (),
    ) -> None:
        self.dirs = [str(Path(d).expanduser().resolve()) for d in dirs]
        self.on_file = on_file
        self.on_overflow = on_overflow
        self.recursive = recursive
        self.debounce = debounce
        self.ignore = {str(Path(p).resolve()) for p in ignore}
        self._observer: Observer | None = None
        self._pending: dict[str, tuple[float, tuple[int, int] | None]] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._debouncer: threading.Thread | None = None
        self._hook = _OverflowHook(on_overflow)
        self._roots: dict[str, tuple[int, int] | None] = {}

    def start(self) -> None:
        for folder in self.dirs:
            os.makedirs(folder, exist_ok=True)
        self._roots = {folder: _identity(folder) for folder in self.dirs}
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self._hook)
        observer = Observer()
        handler = _Handler(self)
        kinds = [FileClosedEvent, FileMovedEvent, FileCreatedEvent]
        for folder in self.dirs:
            observer.schedule(handler, folder, recursive=self.recursive, event_filter=kinds)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._debouncer = threading.Thread(target=self._debounce_loop, name="tinyo-debounce", daemon=True)
        self._debouncer.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._hook)

    def roots_changed(self) -> bool:
        """True when a watched folder was replaced (moved over, or deleted and made again) or is gone:
        the kernel watch follows the old folder, so the watcher must be started again and the folder
        rescanned."""
        if any(_identity(folder) != ident for folder, ident in self._roots.items()):
            return True
        # a folder deleted and made again may get the same inode number back; watchdog stops the
        # emitter of a watch whose folder was deleted, so a dead emitter says it too
        observer = self._observer
        return observer is not None and any(not e.is_alive() for e in list(observer.emitters))

    def _wanted(self, path: str) -> bool:
        return path not in self.ignore

    def _complete(self, path: str) -> None:
        if not self._wanted(path):
            return
        with self._cond:
            self._pending.pop(path, None)
        self.on_file(path)

    def settle(self, path: str) -> None:
        """Report ``path`` once its size and mtime stay the same for ``debounce`` seconds (or at once on
        its close): for files found by a scan that may still be being written."""
        self._touch(path)

    def _touch(self, path: str) -> None:
        if not self._wanted(path):
            return
        with self._cond:
            was_empty = not self._pending
            self._pending[path] = (time.monotonic() + self.debounce, _signature(path))
            if was_empty:
                self._cond.notify()

    def _debounce_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()  # no timer runs while nothing is pending
                if self._stop:
                    return
                now = time.monotonic()
                due = [(p, sig) for p, (t, sig) in self._pending.items() if t <= now]
                if not due:
                    self._cond.wait(timeout=max(0.001, min(t for t, _ in self._pending.values()) - now))
                    continue
                quiet = []
                for path, sig in due:
                    current = _signature(path)
                    if current is not None and current != sig:
                        self._pending[path] = (now + self.debounce, current)  # still being written
                    else:
                        del self._pending[path]
                        if current is not None:
                            quiet.append(path)
            for path in quiet:
                self.on_file(path)


def _identity(folder: str) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def scan_folder(folder: str, recursive: bool) -> Iterable[tuple[str, os.stat_result]]:
    """Every regular file in ``folder`` (and below, if recursive) with its stat."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    yield entry.path, entry.stat(follow_symlinks=False)
                elif recursive and entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
            except FileNotFoundError:
                continue
