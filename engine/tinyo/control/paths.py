"""Provides where an engine's control socket lives, and the checks that keep it private.

One socket per state file, named from the state file's real path, in a folder only the user can
enter: ``$XDG_RUNTIME_DIR/tinyo/`` when that is set, else ``<state file>.ctl/`` beside the state file
(its name starts with the state file's, so the engine's own scans pass over it). A Unix socket path
must fit ``sun_path`` (108 bytes with its NUL); when neither fits, ``/tmp/tinyo-<uid>/`` is used.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import TinyoError

SUN_PATH_MAX = 107
"""Bytes a socket path may have (``sun_path`` is 108 bytes on Linux, one of them the NUL)."""


class ControlError(TinyoError):
    """The control channel cannot be set up or used (unsafe folder, path too long, protocol error)."""


def state_key(db_path: str | os.PathLike[str]) -> str:
    """The real, absolute path of a state file: every spelling of one file names one socket."""
    return os.path.realpath(os.path.expanduser(os.fspath(db_path)))


def log_path(db_path: str | os.PathLike[str]) -> Path:
    """Where ``tinyo start`` writes the engine's log: beside the state file."""
    return Path(state_key(db_path) + ".log")


def short_digest(key: str) -> str:
    """16 hex digits naming ``key`` (a real path) in a file name."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _socket_name(key: str) -> str:
    digest = short_digest(key)
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(key).name)[:40]
    return f"{stem}-{digest}.sock"


def candidate_dirs(db_path: str | os.PathLike[str]) -> list[Path]:
    """The folders tried for a state file's socket, in order."""
    key = state_key(db_path)
    dirs = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        dirs.append(Path(runtime) / "tinyo")
    else:
        dirs.append(Path(key + ".ctl"))
    dirs.append(Path("/tmp") / f"tinyo-{os.getuid()}")
    return dirs


def socket_path(db_path: str | os.PathLike[str]) -> Path:
    """The control socket of the engine serving ``db_path`` (the first candidate that fits sun_path)."""
    key = state_key(db_path)
    name = _socket_name(key)
    for folder in candidate_dirs(key):
        path = folder / name
        if len(os.fsencode(path)) <= SUN_PATH_MAX:
            return path
    raise ControlError(f"{key}: no socket path short enough for it (a Unix socket path has at most "
                       f"{SUN_PATH_MAX} bytes)")


def private_dir(folder: Path) -> Path:
    """Make ``folder`` (mode 0700), or check that an existing one is ours, not a link, and closed to others."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ControlError(f"{folder}: cannot make the control folder ({exc.strerror})") from exc
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"{folder}: the control folder is a link or not a folder; remove it")
    if st.st_uid != os.getuid():
        raise ControlError(f"{folder}: the control folder belongs to uid {st.st_uid}, not to you "
                           f"(uid {os.getuid()}); remove it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)  # ours, but opened up (umask, a copy): close it before a socket goes in
    return folder
