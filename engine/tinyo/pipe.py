"""Provides the message pipe between the engine and its helper processes (workers, the watcher): pickled
messages, each behind its length, as ``multiprocessing.connection.Connection`` frames them, and ``wait`` for
several pipes at once. :meth:`Pipe.recv_all` takes every message waiting in one read (a worker's task and a
chain link's report each cost one system call, not two). Both ends use it: importing ``multiprocessing.connection`` (and the ``tempfile``,
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
READ_SIZE = 1 << 16
"""Bytes ``recv_all`` asks the pipe for at once (a pipe's buffer: everything waiting, most often)."""


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``, which may take less at a time (a pipe, a terminal)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Pipe:
    """One end of a pipe (a file descriptor), reading or writing whole messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._held = b""
        """Bytes ``recv_all`` read past its last whole message: the start of the next one."""

    def fileno(self) -> int:
        if self.fd < 0:
            raise OSError("the pipe is closed")
        return self.fd

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        size = len(data)
        if size < 1 << 16:  # one write, whole most often (a pipe takes 64 KiB at once)
            frame = _SHORT.pack(size) + data
            written = os.write(self.fd, frame)
            if written < len(frame):
                self._write(memoryview(frame)[written:])
            return
        self._write(_SHORT.pack(size) if size <= 0x7FFFFFFF else _SHORT.pack(-1) + _LONG.pack(size))
        self._write(data)

    def recv(self) -> Any:
        """The next message (EOFError once the other end is closed)."""
        (size,) = _SHORT.unpack(self._read(4))
        if size == -1:
            (size,) = _LONG.unpack(self._read(8))
        return pickle.loads(self._read(size))

    def recv_all(self) -> list[Any]:
        """Every whole message that can be read now, at least one (waiting for it); EOFError once the other end
        is closed. One read takes what the pipe holds; a message's end still on its way is waited for, and the
        start of one after it kept for the next call (so no whole message is ever left unread behind a poll)."""
        held = self._held
        if not held:
            chunk = os.read(self.fd, READ_SIZE)
            if len(chunk) >= 4 and _SHORT.unpack_from(chunk)[0] == len(chunk) - 4:
                return [pickle.loads(memoryview(chunk)[4:])]  # one whole message: most often (a chain's link)
            if not chunk:
                raise EOFError("the other end of the pipe is closed")
            held = chunk
        buf = bytearray(held)
        self._held = b""
        messages: list[Any] = []
        at = 0
        while True:  # what was read above, or kept from the last call, is parsed first
            end = len(buf)
            with memoryview(buf) as view:
                while end - at >= 4:
                    (size,) = _SHORT.unpack_from(view, at)
                    start = at + 4
                    if size == -1:
                        if end - start < 8:
                            break
                        (size,) = _LONG.unpack_from(view, start)
                        start += 8
                    if end - start < size:
                        break
                    messages.append(pickle.loads(view[start:start + size]))
                    at = start + size
            if messages:
                self._held = bytes(buf[at:]) if at < end else b""
                return messages
            chunk = os.read(self.fd, READ_SIZE)
            if not chunk:
                raise EOFError("the other end of the pipe is closed")
            buf += chunk

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True when a message (or the end) can be read within ``timeout`` seconds."""
        readable, _, _ = select.select([self.fd], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        """Close this end (again: nothing); a later send or receive raises OSError."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def _write(self, data: bytes | memoryview) -> None:
        write_all(self.fd, data)

    def _read(self, size: int) -> bytes:
        held = self._held
        if held:  # what ``recv_all`` read of this message
            self._held = held[size:]
            if len(held) >= size:
                return held[:size]
            size -= len(held)
        chunks = [held] if held else []
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
