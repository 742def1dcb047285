"""Provides the state file's WAL checkpoints, run on a thread of their own so the cost of the engine's
commits does not grow with the size of the file."""

from __future__ import annotations

import os
import sqlite3
import threading

CHECKPOINT_BYTES = 4 << 20
"""WAL size past which the checkpoint thread copies it back into the database (passively: it never holds
up the engine's writes). When the WAL starts over, its file is also cut back to this size."""
KICK_BYTES = 3 << 20
"""WAL size past which a commit wakes the checkpoint thread at once: it keeps the WAL copied back as it
grows, so the engine's own checkpoint at RESET_BYTES has little left to do."""
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
