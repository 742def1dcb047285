"""One build per change set: inputs changed together, while the engine was down or while it runs, build a
DES reading them once, with all of them new."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import write_recipe
from tinyo import events as ev
from tinyo.intake import FileState, SettleWindow

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
    window.taken()
    window.saw(299.996)  # the watcher saw the file complete 4 ms before the loop stored its event
    window.arrived(300.0, 1)
    assert window.deadline() == pytest.approx(300.006) and not window.due(300.005) and window.due(300.0061)
    window.taken()
    window.saw(1.0)  # a time from long before (not this batch's): the store time counts
    window.arrived(400.0, 1)
    assert window.deadline() == pytest.approx(400.01)


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


def test_events_held_unstored_keep_their_window_open_from_when_they_were_seen() -> None:
    """``hold``: events taken in and not stored go on waiting while the window they open would not close
    (quiet, cap, count as for stored ones, from the watcher's times); once stored, the window they opened
    keeps its first and last times (its cap does not start again)."""
    window = SettleWindow(quiet=0.01, cap=0.2, count=30)
    window.saw(99.998)
    assert window.hold(100.0, 5) and window.deadline() == pytest.approx(100.008)
    window.saw(100.006)  # another delivery: its quiet period restarts the window's
    assert window.hold(100.007, 12) and window.deadline() == pytest.approx(100.016)
    assert not window.hold(100.017, 12), "quiet for 10 ms: it closes"
    window.arrived(100.017, 12)
    assert window.first == pytest.approx(99.998) and window.last == pytest.approx(100.006) and window.due(100.017)
    window.taken()
    window.saw(200.0)
    assert window.hold(200.0, 29) and not window.hold(200.001, 30), "count reached: stored at once"
    window.arrived(200.001, 30)
    window.taken()
    for k in range(40):  # a delivery every 5 ms: held until the cap closes the window
        window.saw(300.0 + k * 0.005)
        assert window.hold(300.0 + k * 0.005, 1 + k % 29)
    assert window.deadline() == pytest.approx(300.2)
    window.saw(300.2001)
    assert not window.hold(300.2001, 25)
    window.arrived(300.2001, 25)
    assert window.due(300.2001)
    window.taken()
    window.hold(400.0, 1)
    window.let_go()  # what was held was no event (unchanged files): nothing opened
    assert window.deadline() is None


HELD = '''
from tinyo import Execution, TinyOConfig, meta_task


@meta_task(root=True)
def nothing(event):
    return (None, [])


config = TinyOConfig(sql_conn=DB_PATH, dirs=[], execution=Execution.INLINE, settle=3600, settle_max=7200)
'''


def test_a_trickle_of_files_is_stored_and_fed_once_its_window_closes_in_one_commit(tmp_path: Path) -> None:
    """Files the watcher hands over a few at a time while their window is open wait in the intake queue: a
    cycle then stores nothing and commits nothing, and the watcher's deliveries do not wake the loop; the
    window's batch goes in one cycle, one commit, once it closes (here on its count: the quiet period is an
    hour). A command's event is stored at once, whatever is held."""
    from test_engine_parts import wire_loop

    loop = wire_loop(tmp_path, HELD)
    try:
        inflow, size = loop.inflow, loop.config.batch_events
        inflow.holding = False  # past the start-up scan's hold
        files = []
        for i in range(size):
            path = tmp_path / f"f{i:02d}.csv"
            path.write_text(str(i))
            files.append((str(path), FileState(path.stat().st_mtime_ns, path.stat().st_size, None)))
        commits = []
        commit = loop.store.commit
        loop.store.commit = lambda: commits.append(loop.store.conn.in_transaction) or commit()  # type: ignore
        loop.cycle()
        commits.clear()
        loop.wake.clear()
        for k in range(0, size - 10, 10):  # two deliveries of ten
            inflow.window.saw(time.monotonic())
            inflow.on_files(files[k:k + 10])
            assert loop.wake.is_set() == (k == 0), "the first opens the window; the next wakes no cycle"
            loop.wake.clear()
            loop.cycle()
            assert loop.store.conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
            assert inflow.held and inflow.window.deadline() is not None
            assert not loop.wake.is_set(), "the loop waits for the window's deadline, not at once again"
        assert not any(commits), "nothing written while they are held"
        inflow.window.saw(time.monotonic())
        inflow.on_files(files[size - 10:])  # the window's count: stored and fed at once
        assert loop.wake.is_set()
        commits.clear()
        loop.cycle()
        assert loop.store.conn.execute("SELECT count(*) FROM events").fetchone() == (size,)
        assert loop.store.pending_events() == 0, "fed to the generators in the cycle that stored them"
        assert sum(commits) == 1 and not inflow.held
        late = tmp_path / "late.csv"
        late.write_text("late")
        inflow.window.saw(time.monotonic())
        inflow.on_files([(str(late), FileState(late.stat().st_mtime_ns, late.stat().st_size, None))])
        loop.cycle()
        assert inflow.held
        sender = threading.Thread(target=inflow.put, args=(("manual", "asked", None), None))
        sender.start()
        sender.join()
        loop.cycle()
        names = [row[0] for row in loop.store.conn.execute("SELECT name FROM events WHERE id > ?", (size,))]
        assert names == [str(late), "asked"], names
    finally:
        loop.store.close()
