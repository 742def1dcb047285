"""Provides the file watcher: watchdog events turned into one event per file once it is complete.

A file is reported when it is written and closed, or moved in: a file opened for writing is taken in at
its close, once, however long the writer pauses. A file that appears with no close to come (moved in
from an unwatched folder, which the kernel reports as a create) is reported ``debounce`` seconds after it
appeared, once no process has it open for writing: the kernel grants a read lease only then. Only where
that cannot be told is a file reported once its size and mtime have stayed the same for ``debounce``
seconds: a hard link (its link count is over 1: the writes may go through its other name), a file whose
lease the watcher may not ask for (another user's, without CAP_LEASE), and a file a scan hands over
(``settle``: written moments before the scan) that is open for writing when the scan finds it. Only
these event types are asked for (not every write's "modified"), which keeps the kernel queue from
overflowing under bursts; when it overflows anyway (watchdog only logs
it), ``on_overflow`` is called so the engine rescans. Changes made without a close (mmap) are found
by the rescan (``rescan_interval``). Knows nothing of the store or the UI: it calls back with paths.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import logging
import os
import re
import signal
import stat as stat_mod
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .children import child_env, wait_exit
from .errors import WatchError
from .pipe import Pipe
from .watch_events import file_handler, file_observer

if TYPE_CHECKING:  # the watcher process imports this module: it needs neither these nor the engine's modules
    import subprocess

    from .intake import FileState

    from watchdog.observers import Observer

OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class _OverflowHook(logging.Handler):
    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.callback()


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
        ignore_names: Iterable[str] = (),
    ) -> None:
        self.dirs = [str(Path(d).expanduser().resolve()) for d in dirs]
        self.on_file = on_file
        self.ignored_name = IgnoredNames(ignore_names)
        self.on_overflow = on_overflow
        self.recursive = recursive
        self.debounce = debounce
        self.ignore = {str(Path(p).resolve()) for p in ignore}
        self._observer: Observer | None = None
        self._pending: dict[str, tuple[float, tuple[int, int] | None, bool]] = {}
        """path -> (when to look, (mtime_ns, size) at the last look, created: a close may still come)"""
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
        observer = file_observer(self._complete, self._touch)
        handler, kinds = file_handler(self._complete, self._touch)
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
        return path not in self.ignore and not self.ignored_name(path)

    def _complete(self, path: str) -> None:
        if not self._wanted(path):
            return
        with self._cond:
            self._pending.pop(path, None)
        self.on_file(path)

    def settle(self, path: str) -> None:
        """Report ``path``, found by a scan moments after it was written, once it is complete: at once when no
        process has it open for writing (the kernel grants a read lease; a file with one name), else at its
        close, or once its size and mtime stay the same for ``debounce`` seconds where that cannot be told.
        (The folders are watched before a scan, so a writer's close is seen.)"""
        if _signature(path, created=True) is _COMPLETE:
            self._complete(path)
        else:
            self._touch(path, created=False)

    def _touch(self, path: str, created: bool = True) -> None:
        if not self._wanted(path):
            return
        with self._cond:  # no stat here: a burst's creates cost the event threads no file system call
            was_empty = not self._pending
            self._pending[path] = (time.monotonic() + self.debounce, None, created)
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
                due = [(p, entry) for p, entry in self._pending.items() if entry[0] <= now]
                if not due:
                    self._cond.wait(timeout=max(0.001, min(e[0] for e in self._pending.values()) - now))
                    continue
            looked = [(path, entry, _signature(path, entry[2] and entry[1] is None)) for path, entry in due]
            quiet = []
            with self._cond:
                wall = time.time()
                for path, entry, current in looked:
                    if self._pending.get(path) is not entry:
                        continue  # closed (reported) or touched again meanwhile
                    sig = entry[1]
                    if current is _CLOSE_COMES or current is _COMPLETE:
                        del self._pending[path]
                        if current is _COMPLETE:
                            quiet.append(path)  # nobody has it open for writing: complete now
                        continue  # else it is open for writing: its close reports it
                    if sig is None and current is not None:
                        # first look: quiet if not modified for ``debounce`` seconds (by the file's mtime)
                        still = wall - current[0] / 1e9 < self.debounce  # a clock behind the file's: look again
                    else:
                        still = current is not None and current != sig
                    if still:
                        self._pending[path] = (now + self.debounce, current, entry[2])  # still being written
                    else:
                        del self._pending[path]
                        if current is not None:
                            quiet.append(path)
            for path in quiet:
                self.on_file(path)


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


def state_files(state_path: str) -> list[str]:
    """The state file's own files and its control socket: never events, though they may sit in a watched
    folder."""
    from .control.paths import socket_path

    ignore = [state_path + s for s in ("", "-wal", "-shm", "-journal", ".lock", ".log")]
    ignore.append(str(socket_path(state_path)))
    return ignore


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


class WatcherProcess:
    """A :class:`FileWatcher` in a process of its own (``python -m tinyo._watch_main``).

    The kernel's events are parsed, and each completed file is stat'ed and hashed, there; the engine's
    process only receives ``on_files([(path, FileState), ...])`` batches, so a burst of files costs its
    loop (and the console sharing its interpreter) no watcher threads and no hashing. ``on_overflow`` is
    called when the kernel dropped events; :meth:`roots_changed` is true once a watched folder was replaced,
    or the process died: either way the engine starts a new watcher and rescans.
    """

    def __init__(
        self,
        dirs: Iterable[str],
        on_files: Callable[[list[tuple[str, FileState]]], None],
        on_overflow: Callable[[], None],
        *,
        recursive: bool = False,
        debounce: float = 0.2,
        ignore: Iterable[str] = (),
        use_hash: bool = True,
        ignore_names: Iterable[str] = (),
        on_seen: Callable[[float], None] | None = None,
    ) -> None:
        self.dirs = [str(Path(d).expanduser().resolve()) for d in dirs]
        self.ignore_names = list(ignore_names)
        self.on_seen = on_seen
        """Called before each batch with the monotonic time its latest file was seen complete."""
        self.on_files = on_files
        self.on_overflow = on_overflow
        self.recursive = recursive
        self.debounce = debounce
        self.ignore = {str(Path(p).resolve()) for p in ignore}
        self.use_hash = use_hash
        self._process: subprocess.Popen[bytes] | None = None
        self._commands: Pipe | None = None
        self._events: Pipe | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: str | None = None
        """Why the watcher process could not watch, or stopped on its own (None: it did not)."""
        self._replaced = False
        self._deaf = False
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        """What the process is started with (two watchers with the same settings watch alike)."""
        return {"dirs": self.dirs, "recursive": self.recursive, "debounce": self.debounce,
                "ignore": sorted(self.ignore), "hash": self.use_hash, "ignore_names": self.ignore_names}

    def launch(self) -> None:
        """Start the process (it watches in the background: :meth:`wait_ready` waits for it)."""
        self.spawn()
        self.listen()

    def bind(self, on_files: Callable[[list[tuple[str, FileState]]], None], on_overflow: Callable[[], None],
             on_seen: Callable[[float], None] | None) -> None:
        """Give a watcher :meth:`spawn` started early its callbacks, and listen to it (what it reported
        meanwhile waited in its pipe)."""
        self.on_files, self.on_overflow, self.on_seen = on_files, on_overflow, on_seen
        self.listen()

    def spawn(self) -> None:
        """Start the process; nothing it reports is read until :meth:`listen`."""
        import subprocess

        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        env = child_env()
        args = [sys.executable, "-m", "tinyo._watch_main", str(cmd_r), str(out_w), json.dumps(self.settings())]
        try:
            # its own session (a Ctrl-C meant for the engine does not hit it); quiet (it reports by messages)
            self._process = subprocess.Popen(args, pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                             start_new_session=True, close_fds=True)
        finally:
            os.close(cmd_r)
            os.close(out_w)
        self._commands = Pipe(cmd_w)
        self._events = Pipe(out_r)

    def listen(self) -> None:
        """Read what the process reports, on a thread of its own, calling back with it."""
        self._reader = threading.Thread(target=self._read_loop, name="tinyo-watch-reader", daemon=True)
        self._reader.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the folders are watched; WatchError naming the folders and the reason if they cannot be."""
        if not self._ready.wait(timeout) or self.error is not None:
            reason = self.error or f"no answer within {timeout:g}s"
            self.stop()
            raise WatchError(f"config: dirs: cannot watch {', '.join(self.dirs)}: {reason}")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def _read_loop(self) -> None:
        from .intake import FileState

        events = self._events
        assert events is not None
        while True:
            try:
                message = events.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "files":
                if not self._deaf:
                    if self.on_seen is not None:
                        self.on_seen(message[2])
                    self.on_files([(path, FileState(mtime_ns, size, digest))
                                   for path, mtime_ns, size, digest in message[1]])
            elif kind == "ready":
                self._ready.set()
            elif kind == "error":
                self.error = message[1]
                self._ready.set()
            elif kind == "overflow":
                if not self._deaf:
                    self.on_overflow()
            elif kind == "replaced":
                self._replaced = True
        if not self._ready.is_set():
            self.error = self.error or "the watcher process exited"
            self._ready.set()

    def settle(self, path: str) -> None:
        """Report ``path`` once it stays the same for ``debounce`` seconds (or at once on its close)."""
        with self._lock:
            if self._commands is None:
                return
            try:
                self._commands.send(("settle", path))
            except OSError:
                pass  # the process is gone: roots_changed() says so, and the engine starts another

    def roots_changed(self) -> bool:
        """True when a watched folder was replaced or removed, or the watcher process died."""
        process = self._process
        return self._replaced or (process is not None and process.poll() is not None)

    def stopped_why(self) -> str:
        """Why :meth:`roots_changed` is true, in words."""
        process = self._process
        code = process.poll() if process is not None else None
        if code is not None and not self._replaced:
            detail = self.error or (f"killed by signal {-code}" if code < 0 else f"exit status {code}")
            return f"the watcher process stopped ({detail})"
        return "a watched folder was replaced or removed"

    def ask_stop(self) -> None:
        """Tell the process to stop, without waiting for it (:meth:`stop` waits); from the moment this
        is called, nothing more is reported."""
        self._deaf = True
        with self._lock:
            commands, self._commands = self._commands, None
        if commands is not None:
            try:
                commands.send(("stop",))
            except OSError:
                pass  # already gone
            commands.close()

    def stop(self) -> None:
        """Stop watching and wait for the process to end; from the moment this is called, nothing more is
        reported."""
        self.ask_stop()
        process = self._process
        if process is not None and wait_exit(process, 5) is None:
            process.kill()
            process.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if self._events is not None:
            self._events.close()
            self._events = None
