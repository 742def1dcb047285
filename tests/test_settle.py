"""One build per change set: inputs changed together, while the engine was down or while it runs, build a
DES reading them once, with all of them new."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import write_recipe
from tinyo import events as ev
from tinyo.intake import SettleWindow

JOIN = """
NAMES = {names}

def join(context):
    parts = [open('{inbox}/' + n).read() for n in NAMES]
    with open('{out}', 'w') as fh:
        fh.write('+'.join(parts))
    print('joined', '+'.join(parts))

@meta_task(root=True)
def on_file(event):
    if os.path.basename(event) in NAMES:
        return (None, [DES(deps=['{inbox}/' + n for n in NAMES], targs=['{out}'], ops=[(join, Config())])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, maxevents={maxevents})
"""


def join_recipe(tmp_path: Path, inbox: Path, names: list[str], maxevents: int = 30) -> Path:
    return write_recipe(tmp_path, JOIN, db=tmp_path / "s.db", inbox=inbox, out=tmp_path / "joined",
                        names=repr(names), maxevents=maxevents)


def test_the_window_closes_on_quiet_on_its_cap_or_on_its_count() -> None:
    window = SettleWindow(quiet=0.01, cap=0.2, count=3)
    assert window.due(100.0) and window.deadline() is None  # nothing open
    window.arrived(100.0, 1)
    assert not window.due(100.005) and window.deadline() == pytest.approx(100.01)
    window.arrived(100.008, 1)  # a new event restarts the quiet period
    assert not window.due(100.015) and window.due(100.018)
    for k in range(1, 40):
        window.arrived(100.0 + k * 0.005, 0)  # events every 5 ms: the cap closes it
    assert window.due(100.2) and window.deadline() == pytest.approx(100.2)
    window.taken()
    window.arrived(200.0, 3)  # count reached
    assert window.due(200.0)


@pytest.mark.parametrize("maxevents", [30, 2])
def test_inputs_changed_while_down_are_built_once(tmp_path: Path, inbox: Path, harness, maxevents: int) -> None:
    """Changed while the engine was down, one long ago and the others moments before the start (the scan
    lets those settle first): the DES reading them all runs once, on the new contents, even when the
    events take several batches (maxevents=2)."""
    names = ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]
    recipe = join_recipe(tmp_path, inbox, names, maxevents)
    for n in names:
        (inbox / n).write_text(n[0])
    with harness(recipe) as h:
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 1, what="the first build")
        h.wait_idle()
    for n in names:
        (inbox / n).write_text(n[0].upper())
    past = time.time() - 30
    os.utime(inbox / "a.txt", (past, past))  # changed long ago: the scan takes it in at once
    with harness(recipe) as h2:
        h2.wait_idle(quiet=0.8)
        assert h2.lines() == ["joined A+B+C+D+E"], h2.lines()


@pytest.mark.skipif(shutil.which("cp") is None, reason="cp is not installed")
def test_cp_of_several_files_while_running_is_one_build(tmp_path: Path, inbox: Path, harness) -> None:
    names = ["a.txt", "b.txt", "c.txt"]
    recipe = join_recipe(tmp_path, inbox, names)
    staging = tmp_path / "staging"
    staging.mkdir()
    with harness(recipe) as h:
        for n in names:
            (inbox / n).write_text(n[0])
        h.wait_for(lambda: "joined a+b+c" in h.lines(), what="the first build")
        h.wait_idle()
        for round_ in range(1, 4):
            for n in names:
                (staging / n).write_text(f"{n[0]}{round_}")
            subprocess.run(["cp", *[str(staging / n) for n in names], str(inbox)], check=True)
            want = "joined " + "+".join(f"{n[0]}{round_}" for n in names)
            h.wait_for(lambda w=want: w in h.lines(), what=want)
            h.wait_idle()
        joined = [line for line in h.lines() if line.startswith("joined")]
        assert joined == ["joined a+b+c", "joined a1+b1+c1", "joined a2+b2+c2", "joined a3+b3+c3"], joined
