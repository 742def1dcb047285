"""Restart on the same state file: nothing processed twice, nothing arrived while down is lost,
an interrupted run is dispatched again."""

import os
import signal
import subprocess
import sys
import time

from tinyo import events as ev
from tinyo.store import Store

from conftest import drop, write_recipe

RECIPE = """
def work(context):
    (src,) = context['deps']
    with open('{ledger}', 'a') as fh:
        fh.write(os.path.basename(src) + '\\n')
    marker = '{marker}'
    if os.path.basename(src).startswith('slow') and not os.path.exists(marker):
        open(marker, 'w').close()
        time.sleep(60)
    print('done', os.path.basename(src))

@meta_task(root=True)
def gen(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + os.path.basename(event)]),
                           ops=[(work, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2)
"""


def make(tmp_path, inbox):
    return write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox, ledger=tmp_path / "ledger",
                        marker=tmp_path / "marker")


def test_restart_processes_nothing_again_and_picks_up_files_dropped_while_down(tmp_path, inbox, harness):
    recipe = make(tmp_path, inbox)
    with harness(recipe) as h:
        drop(inbox, "a.csv")
        drop(inbox, "b.csv")
        h.wait_idle()
        assert sorted(h.lines()) == ["done a.csv", "done b.csv"]
    # same state file, nothing new: nothing runs
    with harness(recipe) as h2:
        h2.wait_idle(quiet=0.5)
        assert h2.of(ev.OpStarted) == [] and h2.of(ev.EventReceived) == []
    # a file dropped (and one rewritten with identical content) while down
    drop(inbox, "c.csv")
    os.utime(inbox / "a.csv")  # touched only: same content, not an event
    with harness(recipe) as h3:
        h3.wait_idle()
        assert [e.name for e in h3.of(ev.EventReceived)] == [str(inbox / "c.csv")]
        assert h3.lines() == ["done c.csv"]
    assert sorted((tmp_path / "ledger").read_text().split()) == ["a.csv", "b.csv", "c.csv"]


def test_changed_content_while_down_reruns_only_that_des(tmp_path, inbox, harness):
    recipe = make(tmp_path, inbox)
    with harness(recipe) as h:
        drop(inbox, "a.csv", "one")
        drop(inbox, "b.csv", "one")
        h.wait_idle()
    drop(inbox, "a.csv", "two")
    with harness(recipe) as h2:
        h2.wait_idle()
        assert h2.lines() == ["done a.csv"]
        queued = [e for e in h2.told(ev.DESStateChanged) if e.state == "queued"]
        assert "dep changed" in queued[0].reason


def test_kill_9_mid_run_is_marked_interrupted_and_dispatched_again(tmp_path, inbox):
    recipe = make(tmp_path, inbox)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        time.sleep(1.0)
        drop(inbox, "slow.csv")
        while not (tmp_path / "marker").exists():
            assert time.monotonic() < deadline, "op never started"
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(str(tmp_path / "s.db"), lock=False)
    assert [r for _, r in store.open_runs()], "the killed run is still open in the store"
    store.close()
    result = subprocess.run([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--idle-exit", "0.5"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "interrupted by the last stop" in result.stdout
    assert "done slow.csv" in result.stdout
    store = Store(str(tmp_path / "s.db"), lock=False)
    runs = store.recent_runs(10)
    assert [r.status for r in runs] == ["interrupted", "ok"]
    assert store.integrity_check() == "ok"
    store.close()
    # the op ran twice: once when killed, once again (at-least-once), and the store says which
    assert (tmp_path / "ledger").read_text().split() == ["slow.csv", "slow.csv"]
