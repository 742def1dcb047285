"""Provides a file's state as the watcher process and the engine read it: a stat of regular files only, and
a BLAKE2b hash of the content. Kept to the standard library's light modules: the watcher process (which
imports this) starts faster without the engine's (dataclasses, datetime), and the engine's first scan waits
until it watches."""

from __future__ import annotations

import hashlib
import os
from stat import S_ISREG


def stat_file(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return st if S_ISREG(st.st_mode) else None  # runs two or three times per file of a burst: no call more


READ_CHUNK = 1 << 20
"""Bytes read at a time when hashing."""


def digest_file(path: str, size: int | None = None) -> str | None:
    """BLAKE2b of the file's content, or None if it cannot be read. ``size``: the size a stat just gave
    (a small file is then read with one call; a file that grew since is still read to its end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return digest_fd(fd, size)
    finally:
        os.close(fd)


def digest_fd(fd: int, size: int | None = None) -> str | None:
    """BLAKE2b of what is left to read from ``fd``, or None if it cannot be read (as :func:`digest_file`)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        want = READ_CHUNK if size is None else min(READ_CHUNK, size + 1)
        total = 0
        while chunk := os.read(fd, want):
            h.update(chunk)
            total += len(chunk)
            if total == size and len(chunk) < want:
                break  # exactly the size just stat'ed, and no more: no second read to see the end
            want = READ_CHUNK
    except OSError:
        return None
    return h.hexdigest()
