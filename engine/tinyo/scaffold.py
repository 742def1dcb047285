"""Provides ``tinyo init``: a small commented recipe to start from."""

from __future__ import annotations

import os
from pathlib import Path

RECIPE_NAME = "recipe.py"

RECIPE = '''\
"""A tinyo recipe (written by `tinyo init`): count the lines of every file dropped into inbox/.

Run it headless:    tinyo run recipe.py      (a live log; Ctrl-C stops gracefully)
or in the console:  tinyo-tui recipe.py
then drop a file:   echo hello > inbox/hello.txt
and look:           cat out/hello.txt.lines; tinyo status recipe.py; tinyo why recipe.py <document>
"""

from datetime import datetime, timedelta
from pathlib import Path

from tinyo import DES, Config, TinyOConfig, meta_task

HERE = Path(__file__).resolve().parent  # paths below are next to this file, wherever tinyo runs from
INBOX = HERE / "inbox"                  # the watched folder: every file written here is an event
OUT = HERE / "out"


# An op does the work. It is a module-level function, so a worker process can import it by name.
# context["deps"] and context["targs"] are the DES's inputs and outputs; context["config"] its Config.
def count_lines(context):
    (source,) = context["deps"]
    (target,) = context["targs"]
    lines = len(Path(source).read_text(errors="replace").splitlines())
    Path(target).parent.mkdir(exist_ok=True)
    Path(target).write_text(f"{lines}\\n")
    print(f"{Path(source).name}: {lines} lines")  # shows in the log and the console's Output pane


def counting(path):
    """The DES that keeps out/NAME.lines up to date with inbox/NAME."""
    target = OUT / (Path(path).name + ".lines")
    return DES(deps=frozenset([str(path)]), targs=frozenset([str(target)]), ops=[(count_lines, Config({}))])


# A generator turns each event into DES (deps, targs, ops); a root generator sees every event.
# Events are strings: a file's absolute path, or "<timer>_<timestamp>" when a timer ticks.
@meta_task(root=True)
def on_event(event):
    if event.startswith(str(INBOX) + "/"):
        return (None, [counting(event)])
    if event.startswith("hourly_"):
        # Every hour, offer a DES for every file in the inbox again: tinyo runs only those whose
        # inputs changed since their last success, so an hour without changes runs nothing.
        return (None, [counting(path) for path in sorted(INBOX.iterdir()) if path.is_file()])
    return (None, [])


config = TinyOConfig(
    sql_conn=str(HERE / "tinyo.db"),  # the state file: documents, DES, runs (SQLite)
    dirs=[str(INBOX)],
    timers=[{"name": "hourly", "initial": datetime(2024, 1, 1), "interval": timedelta(hours=1)}],
    max_workers=2,
)
'''


def write_recipe(folder: Path) -> Path:
    """Write ``recipe.py`` (and an empty ``inbox/``) into ``folder``; FileExistsError if a recipe is there."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / RECIPE_NAME
    # O_EXCL: never overwrite; 0o644 whatever the umask allows beyond it (tinyo refuses world-writable recipes)
    fd = os.open(recipe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(RECIPE)
    (folder / "inbox").mkdir(exist_ok=True)
    return recipe
