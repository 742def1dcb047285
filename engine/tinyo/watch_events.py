"""Provides the watchdog side of the file watcher: the observer and handler that turn the kernel's events
into two calls, a file complete (closed after writing, moved within the watched folders) and a file
created (a close may follow, or not: a hard link, a file moved in from outside).

watchdog is imported inside the functions: only the watcher process needs it, not the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def file_handler(complete: Callable[[str], None], created: Callable[[str], None]) -> tuple[Any, list[Any]]:
    """watchdog's handler, and the event kinds it asks for: ``complete(path)`` for a file closed after
    writing or moved within the watched folders, ``created(path)`` for one created or moved in from
    outside (no close may come)."""
    from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent, FileSystemEventHandler

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if event.is_directory:
                return
            if isinstance(event, FileMovedEvent):
                complete(os.fsdecode(event.dest_path))
            elif isinstance(event, FileClosedEvent):
                complete(os.fsdecode(event.src_path))
            elif isinstance(event, FileCreatedEvent):
                created(os.fsdecode(event.src_path))

    return Handler(), [FileClosedEvent, FileMovedEvent, FileCreatedEvent]


def file_observer(complete: Callable[[str], None], created: Callable[[str], None]) -> Any:
    """A watchdog observer handing a file's own events (closed after writing, created, moved) straight to
    ``complete`` and ``created`` (as :func:`file_handler`): a close or a create on the thread that parses
    the kernel's events, a move (which must be paired with its source first) on the emitter's thread. In a
    burst, each event then costs no event objects (watchdog makes two per close: the file's and its
    folder's "modified") and no hand-off through queues to other threads (two per event: the emitter's and
    the observer's). Folders, overflow and a
    watched folder deleted take watchdog's usual way to the handler. Where watchdog has no such hooks
    (another platform, another version), a plain observer."""
    from watchdog.observers import Observer

    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
        from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent
    except ImportError:
        return Observer()
    if not hasattr(InotifyEmitter, "build_and_queue_event"):
        return Observer()
    direct_group = (hasattr(InotifyWatchGroup, "_build_event_source_path")
                    and "_lock" in getattr(InotifyWatchGroup, "__dataclass_fields__", ()))

    class FileEventsDirectGroup(InotifyWatchGroup):  # type: ignore[misc, valid-type]
        def on_event(self, event: Any) -> None:
            if event.is_directory or not (event.is_close_write or event.is_create):
                super().on_event(event)  # folders (watches to add), moves (to pair), the rest
                return
            with self._lock:
                path = self._build_event_source_path(event) if self.is_active else None
            if path is None:
                return
            if event.is_close_write:
                complete(os.fsdecode(path))
            else:
                created(os.fsdecode(path))

    class FileEventsDirect(InotifyEmitter):  # type: ignore[misc, valid-type]
        def on_thread_start(self) -> None:
            if not direct_group:
                super().on_thread_start()
                return
            self._inotify = FileEventsDirectGroup(
                self._inotify_fd, os.fsencode(self.watch.path), is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(), follow_symlink=self.watch.follow_symlink)

        def build_and_queue_event(self, event: Any, *, full_events: bool = False) -> None:
            # what still comes this way: moves, the files found in a new folder, and all that direct_group
            # does not take
            if isinstance(event, PathedInotifyEvent):
                ev = event.ev
                if not ev.is_directory:
                    if ev.is_close_write:
                        complete(os.fsdecode(event.path))
                        return
                    if ev.is_create or ev.is_moved_to:  # moved in from an unwatched folder: no close comes
                        created(os.fsdecode(event.path))
                        return
            elif not event[0].ev.is_directory:  # a file moved within the watched folders
                complete(os.fsdecode(event[1].path))
                return
            super().build_and_queue_event(event, full_events=full_events)

    observer = InotifyObserver()
    observer._emitter_class = FileEventsDirect
    return observer
