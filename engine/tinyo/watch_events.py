"""Provides the watchdog side of the file watcher: the observer and handler that turn the kernel's events
into two calls, a file complete (closed after writing, moved within the watched folders) and a file
created (a close may follow, or not: a hard link, a file moved in from outside).

watchdog is imported inside the functions: only the watcher process needs it, not the engine's.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from typing import Any

_EVENT = struct.Struct("iIII")
"""``struct inotify_event`` without its name: wd, mask, cookie, name length."""
_IN_CLOSE_WRITE = 0x00000008
_IN_CREATE = 0x00000100
_IN_ISDIR = 0x40000000
_IN_Q_OVERFLOW = 0x00004000
READ_SIZE = 1 << 16
"""Bytes read from the inotify descriptor at a time (about 600 files' create and close)."""


def file_handler(moved: Callable[[str], None], closed: Callable[[str], None], created: Callable[[str], None],
                 lost: Callable[[], None]) -> tuple[Any, list[Any], bool]:
    """watchdog's handler, the event kinds it asks for, and whether this watchdog reports lost events:
    ``moved(path)`` for a file moved within the watched folders (its writer may still have it open),
    ``closed(path)`` for one closed after writing, ``created(path)``
    for one created or moved in from outside (no close may come), ``lost()`` when the kernel dropped events
    (its queue overflowed), once watchdog has watched anew the folders it could no longer follow (its
    ``EventsLostEvent``): a rescan asked for sooner could pass a new folder before it is watched, and miss
    what is written there next. Where watchdog has no such event, False: only its log says it."""
    from watchdog import events
    from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent, FileSystemEventHandler

    lost_kind = getattr(events, "EventsLostEvent", None)

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if lost_kind is not None and isinstance(event, lost_kind):
                lost()
                return
            if event.is_directory:
                return
            if isinstance(event, FileMovedEvent):
                moved(os.fsdecode(event.dest_path))
            elif isinstance(event, FileClosedEvent):
                closed(os.fsdecode(event.src_path))
            elif isinstance(event, FileCreatedEvent):
                created(os.fsdecode(event.src_path))

    kinds = [FileClosedEvent, FileMovedEvent, FileCreatedEvent]
    return Handler(), kinds + ([lost_kind] if lost_kind is not None else []), lost_kind is not None


def file_observer(run: Callable[[Any], None], moved: Callable[[str], None], closed: Callable[[str], None],
                  created: Callable[[str], None]) -> tuple[Any, threading.Thread | None]:
    """A watchdog observer, and the thread running ``run(reader)`` if that thread reads the kernel's events.

    Where watchdog's inotify parts allow, the observer's inotify reader is an :class:`InotifyReader`
    whose thread runs ``run(reader)``: that one function waits for the kernel's events, reads them
    (:meth:`InotifyReader.read`) and hands a file's close or create straight back to it
    (:meth:`InotifyReader.dispatch`), with no event object and no hand-off to another thread (watchdog
    makes three objects per close, the file's event and its folder's "modified", and passes them
    through two queues and three threads). Folders, moves (paired with their source first, on the
    emitter's thread), overflow (watches repaired, then the handler's ``lost``) and a watched folder
    deleted take watchdog's usual way: moves and the files found in a new folder reach ``moved``, ``closed``
    and ``created`` from the emitter's thread, the rest the handler of :func:`file_handler`. Elsewhere (another
    platform, another version of watchdog) a plain observer, and None: then ``run`` needs a thread of its own."""
    from watchdog.observers import Observer

    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
        from watchdog.observers.inotify_c import InotifyEvent, InotifyFD
        from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent
    except ImportError:
        return Observer(), None
    fields = set(InotifyFD.__init__.__code__.co_names) | set(InotifyObserver.__init__.__code__.co_names)
    if not ({"_watch_for_wd", "_kill_r", "_inotify_fd", "_closed", "_is_reading", "_lock"} <= fields
            and all(hasattr(InotifyFD, name) for name in ("_close_resources", "handle_event"))
            and hasattr(InotifyWatchGroup, "_resolve_path") and hasattr(InotifyEmitter, "build_and_queue_event")):
        return Observer(), None

    class InotifyReader(InotifyFD):  # type: ignore[misc, valid-type]
        """watchdog's inotify reader, its thread running ``run(self)`` instead of a reader and a
        dispatcher thread."""

        def run(self) -> None:
            with self._lock:
                if self._closed:
                    return
                self._is_reading = True  # close() wakes this thread (the kill pipe): it closes the descriptors
            try:
                run(self)
            finally:
                with self._lock:
                    self._is_reading = False
                    if self._closed:
                        self._close_resources()

        @property
        def fd(self) -> int:
            return self._inotify_fd

        @property
        def kill_fd(self) -> int:
            return self._kill_r

        def read(self) -> bytes:
            """What the kernel has queued (b"" once closed); call when the descriptor is readable."""
            try:
                return os.read(self._inotify_fd, READ_SIZE)
            except OSError:
                return b""

        def dispatch(self, buffer: bytes, complete: Callable[[str], None], created: Callable[[str], None]) -> None:
            """Parse ``buffer``: a file's close or create goes to ``complete`` or ``created``, every other event
            watchdog's way (:meth:`InotifyFD.handle_event`)."""
            folders: dict[int, list[bytes] | None] = {}  # wd -> the watched folders' paths, each ending in "/"
            unpack = _EVENT.unpack_from
            end = len(buffer)
            i = 0
            while i + 16 <= end:
                wd, mask, cookie, length = unpack(buffer, i)
                name = buffer[i + 16:i + 16 + length].rstrip(b"\0")
                i += 16 + length
                if mask & (_IN_CLOSE_WRITE | _IN_CREATE) and not mask & _IN_ISDIR and name:
                    prefixes = folders.get(wd, ())
                    if prefixes == ():
                        prefixes = folders[wd] = self._folders(wd)
                    if prefixes is not None:
                        call = complete if mask & _IN_CLOSE_WRITE else created
                        for prefix in prefixes:
                            call(os.fsdecode(prefix + name))
                        continue
                if wd == -1 and not mask & _IN_Q_OVERFLOW:
                    continue
                folders.clear()  # a folder event may add, move or drop watches
                self.handle_event(InotifyEvent(wd, mask, cookie, name))

        def _folders(self, wd: int) -> list[bytes] | None:
            """The paths (ending in "/") of the folder ``wd`` watches, one per watch group; None when an
            event on it must take watchdog's way."""
            with self._lock:
                watch = self._watch_for_wd.get(wd)
                groups = list(watch.callbacks.values()) if watch is not None else []
            prefixes = []
            for group in groups:
                if not isinstance(group, InotifyWatchGroup):
                    return None
                with group._lock:
                    path = group._resolve_path(wd) if group.is_active else None
                if path is not None:
                    prefixes.append(path if path.endswith(b"/") else path + b"/")
            return prefixes

    class FileEventsDirect(InotifyEmitter):  # type: ignore[misc, valid-type]
        def build_and_queue_event(self, event: Any, *, full_events: bool = False) -> None:
            # what still comes this way: moves, the files found in a new folder
            if isinstance(event, PathedInotifyEvent):
                ev = event.ev
                if not ev.is_directory:
                    if ev.is_close_write:
                        closed(os.fsdecode(event.path))
                        return
                    if ev.is_create or ev.is_moved_to:  # moved in from an unwatched folder: no close comes
                        created(os.fsdecode(event.path))
                        return
            elif not event[0].ev.is_directory:  # a file moved within the watched folders
                moved(os.fsdecode(event[1].path))
                return
            super().build_and_queue_event(event, full_events=full_events)

    observer = InotifyObserver()
    observer._emitter_class = FileEventsDirect
    reader = InotifyReader()
    reader.name, reader.daemon = "tinyo-watch", True
    observer._inotify_fd = reader  # the observer's one reader, as its schedule() would make it
    observer._emitter_kwargs["inotify_fd"] = reader
    reader.start()
    return observer, reader
