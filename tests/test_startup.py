"""Start-up: the workers and the watcher ``tinyo run`` starts before the engine is built are taken by the engine,
a file written while the engine starts is taken in exactly once, and no process is left behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import drop, write_recipe
from tinyo.early import start_early
from tinyo.engine import Engine
from tinyo.recipe import load_recipe
from tinyo.store import Store

RECIPE = """
def copy(context):
    print('ran', sorted(context['deps'])[0].rsplit('/', 1)[-1])

@meta_task(root=True)
def on_file(event):
    name = event.rsplit('/', 1)[-1]
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out/' + name]), ops=[(copy, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2)
"""


def _runs(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT des_id, status FROM runs ORDER BY id").fetchall()
    finally:
        conn.close()


def _processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line mentions ``text`` (zombies have none)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


def test_a_file_written_while_the_engine_starts_is_taken_in_exactly_once(tmp_path, inbox):
    recipe = load_recipe(write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox))
    early = start_early(recipe, db=None, execution=None, max_workers=None)
    watcher = early.watcher
    assert watcher is not None and len(early.workers) == 2
    # the early watcher watches before the engine exists; what it reports waits in its pipe meanwhile
    assert watcher._events is not None and watcher._events.poll(30), "the early watcher did not get ready"
    drop(inbox, "during.dat")  # after the watch began, before the engine's first scan: both see it
    engine = Engine(recipe, early=early)
    engine.start()
    try:
        assert engine.fatal is None
        assert engine.loop.inflow.watcher is watcher, "the engine did not take the watcher started early"
        assert early.workers == [] and early.watcher is None
        deadline = time.monotonic() + 30
        while not (engine.is_idle() and engine.events_taken >= 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        drop(inbox, "after.dat")  # the taken watcher goes on reporting
        while not (engine.is_idle() and engine.events_taken >= 2) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        engine.stop()
    runs = _runs(tmp_path / "s.db")
    assert [status for _, status in runs] == ["ok", "ok"], runs
    assert len({des for des, _ in runs}) == 2
    assert engine.events_taken == 2


def _tinyo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True, timeout=60)


def test_a_bounded_run_leaves_no_process_behind(tmp_path, inbox):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    drop(inbox, "one.dat")
    result = _tinyo("run", str(recipe), "--stop-after", "1")
    assert result.returncode == 0, result.stderr
    assert "ok     copy" in result.stdout
    assert _processes_naming(str(tmp_path)) == []  # workers and watcher exited, and were reaped
    assert [status for _, status in _runs(tmp_path / "s.db")] == ["ok"]


def test_processes_started_for_an_engine_that_cannot_start_are_stopped(tmp_path, inbox):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    holder = Store(str(tmp_path / "s.db"))  # another engine's lock on the state file
    try:
        result = _tinyo("run", str(recipe), "--stop-after", "1")
    finally:
        holder.close()
    assert result.returncode == 2
    assert "another tinyo engine is running" in result.stderr
    assert _processes_naming(str(tmp_path)) == []


def _wakeups(pid: int) -> int:
    """How often the process's main thread has gone to sleep and woken (voluntary context switches)."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches:"))


def test_a_bounded_run_waiting_for_more_events_sleeps_instead_of_polling(tmp_path, inbox):
    drop(inbox, "first.txt")
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--stop-after", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ran first.txt" in line:
                break
        time.sleep(0.5)  # the run is recorded and the engine idle, one event short of its bound
        before = _wakeups(proc.pid)
        time.sleep(2.0)
        woke = _wakeups(proc.pid) - before
        # a look every 10 ms is ~200 wake-ups here; sleeping until the engine does more is a few
        assert woke < 40, f"the waiting command woke {woke} times in 2 s"
        drop(inbox, "second.txt")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_waiting_for_a_helper_process_returns_its_exit_status_as_soon_as_it_ends():
    from tinyo.children import wait_exit

    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"])
    try:
        assert wait_exit(proc, 0.01) is None  # still running: no status, and it is not reaped
        assert proc.returncode is None
        assert wait_exit(proc, 30) == 3
        assert proc.returncode == 3  # reaped
        assert wait_exit(proc, 0) == 3  # once reaped, its status again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_complete_file_written_just_before_the_start_is_taken_in_without_waiting_for_it_to_stay_quiet(tmp_path,
                                                                                                    inbox):
    # the start-up scan finds it written moments ago; nobody has it open for writing, so it is complete: it is
    # not held back for `debounce` seconds of quiet (here longer than this test would wait)
    recipe = write_recipe(tmp_path, RECIPE.replace("max_workers=2)", "max_workers=2, debounce=120)"),
                          db=tmp_path / "s.db", inbox=inbox)
    drop(inbox, "fresh.dat")
    result = _tinyo("run", str(recipe), "--stop-after", "1")
    assert result.returncode == 0, result.stderr
    assert [status for _, status in _runs(tmp_path / "s.db")] == ["ok"]
