"""Provides the command line of the watcher process: ``python -m tinyo._watch_main CMD_FD OUT_FD SETTINGS``.

Started by :class:`tinyo.watch.WatcherProcess`. It runs a :class:`tinyo.watch_loop.FileWatcher`, whose
loop thread also reads each completed file's state (mtime, size and, when hashing, its content hash) here,
off the engine's loop, and sends the engine batches of ``(path, mtime_ns, size, digest)`` with the
monotonic time the latest of them was seen complete. The main thread serves the engine's commands and
looks, once a second, whether a watched folder was replaced or the loop stopped. Messages out:
``("ready",)`` once the folders are watched, ``("error", text)`` if they cannot be, ``("files", [...])``,
``("overflow",)`` (the kernel dropped events: rescan), ``("replaced",)`` (a watched folder was replaced
or removed: watch anew and rescan). Messages in: ``("settle", path)``, ``("stop",)``.
"""

from __future__ import annotations

import json
import os
import signal
import stat as stat_mod
import sys
import threading
import time
from collections import deque

from tinyo.children import exit_now
from tinyo.filedigest import digest_fd, stat_file
from tinyo.pipe import Pipe
from tinyo.watch_loop import FileWatcher

ROOTS_CHECK = 1.0
"""Seconds between looks at whether a watched folder was replaced."""
BATCH = 500
"""Files read and sent per message at most."""
LARGE = 1 << 20
"""Bytes: a larger file is read and hashed on a thread of its own (:class:`_LargeFiles`), so that the loop
thread goes on reading the kernel's events meanwhile."""
LARGE_QUEUE = 64
"""Large files waiting to be read at most: beyond, the loop thread waits (and the kernel queues its events)."""


class _Sender:
    """Reads completed files' states and sends them to the engine in batches, on the watcher's loop thread
    (:class:`tinyo.watch_loop.FileWatcher`): a file's stat and content through one open, a message per batch.
    A file over ``LARGE`` bytes goes to :class:`_LargeFiles`."""

    def __init__(self, out: Pipe, use_hash: bool) -> None:
        self.out = out
        self.use_hash = use_hash
        self._send_lock = threading.Lock()
        self._large: _LargeFiles | None = None

    def files(self, paths: list[str], seen: float) -> None:
        """Read ``paths`` (complete, each once) and send their states, with ``seen`` (monotonic: the same clock
        in every process), when the latest of them was seen complete."""
        items = []
        large = self._large
        for path in paths:
            if large is not None and large.take(path, seen):
                continue  # queued there already: its states go out in the order they were read
            item = read_state(path, LARGE) if self.use_hash else stat_state(path)
            if item is TOO_LARGE:
                if large is None:
                    large = self._large = _LargeFiles(self)
                large.take(path, seen, always=True)
            elif item is not None:  # else gone, not a regular file, or unreadable now: a later event or scan says
                items.append(item)
                if len(items) == BATCH:
                    self.send(("files", items, seen))
                    items = []
        if items:
            self.send(("files", items, seen))

    def send(self, message: tuple[object, ...]) -> None:
        with self._send_lock:
            try:
                self.out.send(message)
            except OSError:
                pass  # the engine is gone: nothing to tell


class _LargeFiles:
    """Reads and hashes large files on a thread of its own, sending each state when read. A file queued here
    stays here until its state is sent: a later event for it is queued behind (:meth:`take`), so its states
    reach the engine in order."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender
        self._queue: deque[tuple[str, float]] = deque()
        self._queued: dict[str, int] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._loop, name="tinyo-watch-large", daemon=True).start()

    def take(self, path: str, seen: float, always: bool = False) -> bool:
        """Queue ``path`` if it is queued here already (or ``always``); False if it was not queued."""
        if not always and path not in self._queued:
            return False  # read without the lock: only this (the loop's) thread adds a path, so "not in" holds
        with self._cond:
            if not always and path not in self._queued:
                return False
            while len(self._queue) >= LARGE_QUEUE:
                self._cond.wait()
            self._queued[path] = self._queued.get(path, 0) + 1
            self._queue.append((path, seen))
            self._cond.notify_all()
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                path, seen = self._queue[0]
            item = read_state(path)
            if item is not None:
                self.sender.send(("files", [item], seen))
            with self._cond:
                self._queue.popleft()
                left = self._queued[path] - 1
                if left:
                    self._queued[path] = left
                else:
                    del self._queued[path]
                self._cond.notify_all()


TOO_LARGE = ("", 0, 0, None)
"""What :func:`read_state` says of a file over its ``limit``."""


def stat_state(path: str) -> tuple[str, int, int, None] | None:
    """``(path, mtime_ns, size, None)`` of a regular file (None: gone, or not a regular file)."""
    st = stat_file(path)
    return None if st is None else (path, st.st_mtime_ns, st.st_size, None)


def read_state(path: str, limit: int | None = None) -> tuple[str, int, int, str | None] | None:
    """``(path, mtime_ns, size, hash)`` of a regular file, its stat and content read through one open (the
    path is looked up once); None if it is gone, not a regular file or unreadable; TOO_LARGE if it is over
    ``limit`` bytes. Opened without blocking: a FIFO in its place must not hang the watcher."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        if limit is not None and st.st_size > limit:
            return TOO_LARGE
        digest = digest_fd(fd, st.st_size)
    finally:
        os.close(fd)
    return None if digest is None else (path, st.st_mtime_ns, st.st_size, digest)


def main(argv: list[str]) -> int:
    cmd_fd, out_fd, settings_json = argv
    signal.signal(signal.SIGIO, signal.SIG_IGN)  # a lease break (see watch_loop.open_for_writing) is not a kill
    settings = json.loads(settings_json)
    commands = Pipe(int(cmd_fd))
    sender = _Sender(Pipe(int(out_fd)), settings["hash"])
    watcher = FileWatcher(settings["dirs"], sender.files, lambda: sender.send(("overflow",)),
                          recursive=settings["recursive"], debounce=settings["debounce"], ignore=settings["ignore"],
                          ignore_names=settings["ignore_names"])
    try:
        watcher.start()
    except Exception as exc:  # an inotify limit, a folder that cannot be made: the engine says it
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
        return 1
    sender.send(("ready",))
    try:
        return _serve(commands, sender, watcher)
    except Exception as exc:  # a bug here must not pass silently: the engine starts a new watcher
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


def _serve(commands: Pipe, sender: _Sender, watcher: FileWatcher) -> int:
    replaced = False
    next_check = time.monotonic() + ROOTS_CHECK
    try:
        while True:
            if commands.poll(max(0.0, next_check - time.monotonic())):
                try:
                    message = commands.recv()
                except (EOFError, OSError):
                    break  # the engine is gone
                if message[0] == "stop":
                    break
                if message[0] == "settle":
                    watcher.settle(message[1])
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + ROOTS_CHECK
                if watcher.failure is not None:  # a bug: the process ends, the engine says why and starts another
                    sender.send(("error", f"the watcher's loop stopped: {watcher.failure}"))
                    return 1
                if not replaced and watcher.roots_changed():
                    replaced = True  # said once: the engine starts a new watcher
                    sender.send(("replaced",))
    finally:
        watcher.stop()
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
