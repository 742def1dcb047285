"""Provides the bounded log of an engine started by ``tinyo start``: rotated by size.

The engine process's standard output and error (and those of the worker processes it starts, which
inherit them) go into a pipe; one thread of the engine process copies the pipe into the log file.
When the file would pass its limit it becomes ``<log>.1`` (``.1`` becomes ``.2``, up to ``KEEP``;
the oldest is removed) and a new file is started, so a service that runs for months keeps at most
``(KEEP + 1) x limit`` of log.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ..pipe import write_all

LOG_MAX_BYTES = 10 << 20
"""The size past which the log is rotated (``tinyo start --log-max-mb``)."""
KEEP = 2
"""Rotated logs kept: ``<log>.1`` (the newer) and ``<log>.2``."""
_CHUNK = 1 << 16


class RotatingLog:
    """Appends to ``path``; past ``limit`` bytes, rotates it (see the module doc). One thread writes."""

    def __init__(self, path: str | os.PathLike[str], limit: int = LOG_MAX_BYTES, keep: int = KEEP) -> None:
        self.path = Path(path)
        self.limit = max(1, limit)
        self.keep = max(1, keep)
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, data: bytes) -> None:
        """Append ``data``; rotate first when it would pass the limit (a chunk is never split)."""
        size = os.fstat(self._fd).st_size
        if size and size + len(data) > self.limit:
            self.rotate()
        write_all(self._fd, data)

    def rotate(self) -> None:
        """``<log>`` becomes ``<log>.1``, ``.1`` becomes ``.2`` ... (the oldest goes), and a new log begins."""
        os.close(self._fd)
        for n in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
            try:
                os.replace(newer, older)
            except FileNotFoundError:
                pass
        self._fd = self._open()

    def close(self) -> None:
        os.close(self._fd)


def rotate_if_full(path: str | os.PathLike[str], limit: int = LOG_MAX_BYTES, keep: int = KEEP) -> None:
    """Rotate the log at ``path`` now if it is at its limit already (before an engine starts writing)."""
    try:
        full = os.stat(path).st_size >= limit
    except FileNotFoundError:
        return
    if full:
        log = RotatingLog(path, limit, keep)
        log.rotate()
        log.close()


def capture(path: str | os.PathLike[str], limit: int = LOG_MAX_BYTES, keep: int = KEEP) -> Callable[[], None]:
    """Send this process's stdout and stderr, and its future children's, into the rotating log at ``path``.
    Returns the function that ends it: what is written until then reaches the log."""
    log = RotatingLog(path, limit, keep)
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        try:
            while True:
                chunk = os.read(read_end, _CHUNK)
                if not chunk:
                    return  # every writer closed its end: this process's and its children's
                log.write(chunk)
        except OSError as exc:  # the disk is full or the file went away: say so once where it can be seen
            try:
                os.write(log._fd, f"tinyo: error: the log stopped: {exc}\n".encode())
            except OSError:
                pass
        finally:
            os.close(read_end)
            log.close()

    thread = threading.Thread(target=copy, name="tinyo-log", daemon=True)
    thread.start()

    def end(timeout: float = 5.0) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # this process's ends of the pipe closed: the copy ends at the end of the stream
        os.dup2(null, 2)
        os.close(null)
        thread.join(timeout)

    return end
