"""Provides the recipe index: which running engine serves a recipe's own state file, found without loading
the recipe.

A CLI command names a recipe; its state file is the recipe's ``sql_conn``, known only by running the
recipe, which costs more than the command itself. An engine serving the control channel on the state
file its recipe names records it here, one small JSON file per recipe (named from the recipe's real
path) in a folder only the user can enter: ``$XDG_RUNTIME_DIR/tinyo/``, else ``/tmp/tinyo-<uid>/``.
The entry holds what a reader needs to tell whether the recipe would still name that state file: the
``sql_conn`` as written (a relative one depends on the working folder) and the recipe file's identity
(an edit may name another). It is removed when the engine stops serving; one left by a killed engine is
harmless (nothing answers on its socket, the caller takes the long way) and is swept by the next engine.

Only the standard library and ``paths`` are imported: the reader runs before anything else in ``tinyo``.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from .paths import private_dir, short_digest, state_key

ENTRY_MAX = 1 << 16
"""The largest index entry read (an entry is a few hundred bytes)."""
SWEEP_MAX = 200
"""Entries an engine looks at, when it records its own, for ones whose engine is gone."""


def index_dir() -> str:
    """The folder of the index (not made here)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "tinyo")
    return f"/tmp/tinyo-{os.getuid()}"


def entry_path(recipe: str) -> str:
    """The index entry of the recipe at real path ``recipe``."""
    return os.path.join(index_dir(), f"recipe-{short_digest(recipe)}.json")


def recipe_identity(recipe: str) -> list[int]:
    """What changes when the recipe file is edited, replaced or its mode changed (device, inode, size,
    modification and change times): a recipe may then name another state file, or not load at all."""
    st = os.stat(recipe)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


# ------------------------------------------------------------------------------------------ the engine's side
def record(recipe: str, sql_conn: str, db: str, pid: int) -> str | None:
    """Record that process ``pid`` serves ``db``, the state file of ``recipe`` (real paths); the entry's
    path, or None when the recipe names another state file from here (the engine runs on ``--db``)."""
    if sql_conn == ":memory:" or state_key(sql_conn) != state_key(db):
        return None
    from pathlib import Path

    folder = private_dir(Path(index_dir()))
    _sweep(str(folder))
    entry = {"recipe": recipe, "sql_conn": sql_conn, "db": state_key(db), "pid": pid,
             "identity": recipe_identity(recipe)}
    path = entry_path(recipe)
    temporary = f"{path}.{pid}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(entry, f)
    os.replace(temporary, path)  # a reader sees the old entry or the new one, never half of one
    return path


def forget(path: str, pid: int) -> None:
    """Remove the entry at ``path`` if it is still the one process ``pid`` wrote (another engine may have
    taken the recipe over since)."""
    entry = _read(path)
    if entry is not None and entry.get("pid") == pid:
        try:
            os.unlink(path)
        except OSError:
            pass


def _sweep(folder: str) -> None:
    """Remove entries whose engine has ended (a killed engine could not remove its own)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith("recipe-") and n.endswith(".json")][:SWEEP_MAX]
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        entry = _read(path)
        pid = entry.get("pid") if entry is not None else None
        if isinstance(pid, int) and pid > 0 and not _alive(pid):
            forget(path, pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone's process has that pid now: leave the entry, it is harmless
    return True


# ------------------------------------------------------------------------------------------ the CLI's side
def lookup(recipe: str) -> dict[str, Any] | None:
    """The entry for the recipe at real path ``recipe`` when it still holds: the recipe file is the one the
    engine loaded and its ``sql_conn`` names the same state file from this working folder; else None."""
    folder = index_dir()
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o700:
        return None  # not the private folder an engine of this user makes: trust nothing in it
    entry = _read(entry_path(recipe))
    if entry is None or entry.get("recipe") != recipe:
        return None
    sql_conn, db = entry.get("sql_conn"), entry.get("db")
    if not isinstance(sql_conn, str) or not isinstance(db, str) or state_key(sql_conn) != db:
        return None
    try:
        if recipe_identity(recipe) != entry.get("identity"):
            return None
    except OSError:
        return None
    return entry


def _read(path: str) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return None
        data = os.read(fd, ENTRY_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        entry = json.loads(data)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
