"""Provides the command line of the watcher process: ``python -m tinyo._watch_main CMD_FD OUT_FD SETTINGS``.

Started by :class:`tinyo.watch.WatcherProcess`. It runs a :class:`tinyo.watch.FileWatcher` and reads
each completed file's state (mtime, size and, when hashing, its content hash) here, off the engine's
loop, then sends the engine batches of ``(path, mtime_ns, size, digest)`` with the monotonic time the
latest of them was seen complete. Messages out:
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

from tinyo.children import exit_now
from tinyo.filedigest import digest_fd, stat_file
from tinyo.pipe import Pipe
from tinyo.watch import FileWatcher

ROOTS_CHECK = 1.0
"""Seconds between looks at whether a watched folder was replaced."""
BATCH = 500
"""Files read and sent per message at most (the first of a burst goes out without waiting for the rest)."""
GATHER = 0.002
"""Seconds a batch waits for more files while a burst is under way (the previous batch went out less than
BURST ago): fewer, larger messages, each costing both processes a pickle, a write and a wake-up. The
first file after a quiet spell goes out at once."""
BURST = 0.01
"""A batch sent less than this many seconds ago means a burst is under way."""


class _Sender:
    """Collects completed files from the watcher's threads; its own thread reads their states and sends
    them in batches (one writer).

    The watcher's threads only hand paths over: the stat and the hash run here, a batch at a time, so the
    threads that parse the kernel's events never wait on file I/O (each such call lets another thread
    take the interpreter, and getting it back can take a switch interval, 5 ms, while they are busy)."""

    def __init__(self, out: Pipe, use_hash: bool) -> None:
        self.out = out
        self.use_hash = use_hash
        self._paths: list[str] = []
        self._seen = 0.0  # when the latest path was handed over (monotonic: the same clock in every process)
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="tinyo-watch-send", daemon=True)
        self._thread.start()

    def file(self, path: str) -> None:
        with self._cond:
            self._seen = time.monotonic()
            self._paths.append(path)
            if len(self._paths) == 1:
                self._cond.notify()

    def _states(self, paths: list[str]) -> list[tuple[str, int, int, str | None]]:
        items = []
        for path in dict.fromkeys(paths):  # reported twice while waiting: read once
            item = read_state(path) if self.use_hash else stat_state(path)
            if item is not None:  # else gone, not a regular file, or unreadable now: a later event or scan says
                items.append(item)
        return items

    def send(self, message: tuple[object, ...]) -> None:
        with self._send_lock:
            try:
                self.out.send(message)
            except OSError:
                pass  # the engine is gone: nothing to tell

    def _loop(self) -> None:
        sent = 0.0
        while True:
            with self._cond:
                while not self._paths and not self._closed:
                    self._cond.wait()
            if time.monotonic() - sent < BURST and not self._closed:
                time.sleep(GATHER)
            with self._cond:
                paths, self._paths = self._paths[:BATCH], self._paths[BATCH:]
                seen = self._seen
                closed = self._closed and not self._paths
            items = self._states(paths)
            if items:
                self.send(("files", items, seen))  # while this is read and sent, the next batch collects
                sent = time.monotonic()
            if closed:
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)


def stat_state(path: str) -> tuple[str, int, int, None] | None:
    """``(path, mtime_ns, size, None)`` of a regular file (None: gone, or not a regular file)."""
    st = stat_file(path)
    return None if st is None else (path, st.st_mtime_ns, st.st_size, None)


def read_state(path: str) -> tuple[str, int, int, str] | None:
    """``(path, mtime_ns, size, hash)`` of a regular file, its stat and content read through one open (the
    path is looked up once); None if it is gone, not a regular file or unreadable. Opened without
    blocking: a FIFO in its place must not hang the watcher."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        digest = digest_fd(fd, st.st_size)
    finally:
        os.close(fd)
    return None if digest is None else (path, st.st_mtime_ns, st.st_size, digest)


def main(argv: list[str]) -> int:
    cmd_fd, out_fd, settings_json = argv
    signal.signal(signal.SIGIO, signal.SIG_IGN)  # a lease break (see watch.open_for_writing) is not a kill
    settings = json.loads(settings_json)
    commands = Pipe(int(cmd_fd))
    sender = _Sender(Pipe(int(out_fd)), settings["hash"])
    watcher = FileWatcher(settings["dirs"], sender.file, lambda: sender.send(("overflow",)),
                          recursive=settings["recursive"], debounce=settings["debounce"], ignore=settings["ignore"],
                          ignore_names=settings["ignore_names"])
    try:
        watcher.start()
    except Exception as exc:  # an inotify limit, a folder that cannot be made: the engine says it
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
        sender.close()
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
                if not replaced and watcher.roots_changed():
                    replaced = True  # said once: the engine starts a new watcher
                    sender.send(("replaced",))
    finally:
        watcher.stop()
        sender.close()
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
