"""Provides the message pipe of tinyo's helper processes (workers, the watcher): pickled messages, each behind
its length, as ``multiprocessing.connection.Connection`` frames them (the engine's side uses that class),
without importing ``multiprocessing.connection``, which costs a helper process a good part of its start-up.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from typing import Any

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class Pipe:
    """One end of a pipe (a file descriptor), reading or writing whole messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

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
        os.close(self.fd)

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
