"""Provides the engine's side of the file watcher: :class:`WatcherProcess`, which runs a
:class:`tinyo.watch_loop.FileWatcher` in a process of its own (``python -m tinyo._watch_main``), and the
scans that complement it (:func:`scan_folder`, :func:`state_files`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .children import child_env, wait_exit
from .errors import WatchError
from .pipe import Pipe
from .watch_loop import FileWatcher, IgnoredNames

__all__ = ["FileWatcher", "IgnoredNames", "WatcherProcess", "scan_folder", "state_files"]

if TYPE_CHECKING:  # the engine imports this module early: it needs none of these to start
    import subprocess

    from .intake import FileState


def state_files(state_path: str) -> list[str]:
    """The state file's own files and its control socket: never events, though they may sit in a watched
    folder."""
    from .control.paths import socket_path

    ignore = [state_path + s for s in ("", "-wal", "-shm", "-journal", ".lock", ".log")]
    ignore.append(str(socket_path(state_path)))
    return ignore


def scan_folder(folder: str, recursive: bool) -> Iterable[tuple[str, os.stat_result]]:
    """Every regular file in ``folder`` (and below, if recursive) with its stat. A symlink to a regular file
    counts, with its target's stat, as the watcher takes it in when it appears; a symlinked folder is never
    entered."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_file():
                    yield entry.path, entry.stat()
                elif recursive and entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
            except OSError:  # gone meanwhile, or a symlink that loops or leads where we may not look
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
                messages = events.recv_all()  # one read for all that waits (two per message with ``recv``)
            except (EOFError, OSError):
                break
            for message in messages:
                self._on_message(message, FileState)
        if not self._ready.is_set():
            self.error = self.error or "the watcher process exited"
            self._ready.set()

    def _on_message(self, message: tuple[Any, ...], state: type[FileState]) -> None:
        kind = message[0]
        if kind == "files":
            if not self._deaf:
                if self.on_seen is not None:
                    self.on_seen(message[2])
                self.on_files([(path, state(mtime_ns, size, digest)) for path, mtime_ns, size, digest in message[1]])
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
