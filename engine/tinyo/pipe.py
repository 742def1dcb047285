"""Provides the message pipe between the engine and its helper processes (workers, the watcher): pickled
messages, each behind its length, as ``multiprocessing.connection.Connection`` frames them, and ``wait`` for
several pipes at once. Both ends use it: importing ``multiprocessing.connection`` (and the ``tempfile``,
``shutil`` and compression modules it brings) cost a helper process a good part of its start-up, and the
engine's process some 10 ms before its workers could be started.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class Pipe:
    """One end of a pipe (a file descriptor), reading or writing whole messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        if self.fd < 0:
            raise OSError("the pipe is closed")
        return self.fd

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        size = len(data)
        header = _SHORT.pack(size) if size <= 0x7FFFFFFF else _SHORT.pack(-1) + _LONG.pack(size)
        self._write(header + data if size < 1 << 16 else header)
        if size >= 1 << 16:
            self._write(data)

    def recv(self) -> Any:
        """The next message (EOFError once the other end is closed)."""
        (size,) = _SHORT.unpack(self._read(4))
        if size == -1:
            (size,) = _LONG.unpack(self._read(8))
        return pickle.loads(self._read(size))

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True when a message (or the end) can be read within ``timeout`` seconds."""
        readable, _, _ = select.select([self.fd], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        """Close this end (again: nothing); a later send or receive raises OSError."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self.fd, size)
            if not chunk:
                raise EOFError("the other end of the pipe is closed")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def wait(objects: Iterable[T], timeout: float | None = None) -> list[T]:
    """Those of ``objects`` (pipes, or file descriptors) that can be read without blocking, or are at their
    end, within ``timeout`` seconds (None: until one can); as ``multiprocessing.connection.wait``, with no
    limit on descriptor numbers."""
    poller = select.poll()
    by_fd: dict[int, T] = {}
    for obj in objects:
        fd = obj if isinstance(obj, int) else obj.fileno()  # type: ignore[attr-defined]
        by_fd[fd] = obj
        poller.register(fd, select.POLLIN)
    ready = poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
    return [by_fd[fd] for fd, _ in ready]
