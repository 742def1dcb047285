"""Provides the state file's WAL checkpoints, run on a thread of their own so the cost of the engine's
commits does not grow with the size of the file."""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import threading

CHECKPOINT_BYTES = 4 << 20
"""WAL size past which the checkpoint thread copies it back into the database (passively: it never holds
up the engine's writes). When the WAL starts over, its file is also cut back to this size."""
KICK_BYTES = 3 << 20
"""WAL size past which a commit wakes the checkpoint thread at once: it keeps the WAL copied back as it
grows, so the engine's own checkpoint at RESET_BYTES has little left to do."""
KICK_STEP = 1 << 20
"""Past KICK_BYTES, a commit wakes the checkpoint thread again each time the WAL has grown by this much since
the last wake-up: the thread keeps the WAL copied back in a few rounds of 1 MB or so (not one round per commit,
each with its syncs), so the engine's own checkpoint at RESET_BYTES has little left to copy."""
RESET_BYTES = 8 << 20
"""WAL size past which the engine finishes the checkpoint itself right after a commit, so that its next
write starts the WAL over: under a steady stream of commits a passive checkpoint never catches up, and the
WAL must not fill the disk."""


class Checkpointer(threading.Thread):
    """Runs WAL checkpoints on its own connection, so the engine's commits stay cheap."""

    def __init__(self, path: str) -> None:
        super().__init__(name="tinyo-checkpoint", daemon=True)
        self.path = path
        self.stopping = threading.Event()
        self.kick = threading.Event()
        """Set by the engine when the WAL grew past KICK_BYTES: copy it back now, not at the next round."""
        self.busy = threading.Lock()
        """Held while a checkpoint runs (the thread's or the engine's): SQLite runs one at a time, and a
        passive one that finds another running gives up at once."""
        self.failures = 0

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 2000")
        try:
            while not self.stopping.is_set():
                self.kick.wait(0.25)
                self.kick.clear()
                try:
                    if os.path.getsize(self.path + "-wal") > KICK_BYTES:
                        with self.busy:
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except (OSError, sqlite3.Error):
                    self.failures += 1  # busy or gone: the next round tries again; close checkpoints anyway
        finally:
            conn.close()


WAL_INDEX_VERSION = 3007000
"""The WAL index format whose header ``WalMeter`` reads (SQLite's since 3.7.0; another one is not read)."""


class WalMeter:
    """How many bytes of the WAL are in use, read after each commit without a system call: the frame count
    (``mxFrame``) and page size in the header of the WAL index (the ``-shm`` file beside the WAL, which SQLite
    keeps mapped in memory while a connection is open; mapped here once, read-only). The engine is the only
    writer, and it reads the header right after its own commit, when nobody else changes it.

    Where that file cannot be read that way (not there yet, another format), the WAL file's size stands in."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._header: mmap.mmap | None = None
        self._unreadable = False
        """The WAL index is in another format: the file's size stands in from then on."""

    def in_use(self) -> int:
        header = self._header if self._header is not None else self._map()
        if header is None:
            return os.path.getsize(self.path + "-wal")
        # WalIndexHdr: iVersion u32 @0, szPage u16 @14 (1 means 65536), mxFrame u32 @16; native byte order
        version, page, frames = _HEADER.unpack_from(header)
        if version != WAL_INDEX_VERSION:
            self._unreadable = True
            self.close()
            return os.path.getsize(self.path + "-wal")
        return 32 + frames * ((page if page != 1 else 65536) + 24) if frames else 0

    def _map(self) -> mmap.mmap | None:
        if self._unreadable:
            return None
        try:
            fd = os.open(self.path + "-shm", os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < _HEADER.size:
                return None
            self._header = mmap.mmap(fd, _HEADER.size, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)  # the mapping keeps the file
        return self._header

    def close(self) -> None:
        if self._header is not None:
            self._header.close()
            self._header = None


_HEADER = struct.Struct("=I10xHI")
