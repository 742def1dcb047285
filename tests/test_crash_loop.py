"""Crash-restart loop: the orchestrator is killed with SIGKILL at random moments while files keep
arriving, and restarted each time. At the end every file's DES succeeded exactly once, the ledger
written by the op has each file once (plus at most one more line per run the store marks
``interrupted``), no worker outlived its orchestrator, and the state file is intact."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path


from conftest import drop, write_recipe

RECIPE = """
def record(context):
    (src,) = context['deps']
    time.sleep(0.003)  # an op takes a little time, so that kills land while runs are open
    fd = os.open('{ledger}', os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (os.path.basename(src) + '\\n').encode())  # one write: atomic under O_APPEND
    finally:
        os.close(fd)

@meta_task(root=True)
def on_file(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['done.' + os.path.basename(event)]),
                           ops=[(record, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.PROCESSES,
                     maxevents=50, debounce=0.05)
"""

FILES = 1000
KILLS = 6
"""Kills at least; more (up to MAX_KILLS) until two of them landed while runs were open."""
MAX_KILLS = 12
KNOWN_BUG_PARTIAL_SCAN = False
"""Engine bug (test_faults_live.py::test_a_file_still_being_written_at_start_up_is_processed_once_complete):
the start-up scan can take in a file the dropper is still writing, so its DES succeeds twice, once
per content (different dep versions, so no promise about same inputs is broken). Set to False once
fixed: then every DES must succeed exactly once."""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _watchers_of(folder: Path) -> list[int]:
    """Live watcher processes (``python -m tinyo._watch_main``) watching ``folder``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tinyo._watch_main" in cmdline and str(folder).encode() in cmdline and _alive(int(entry)):
            found.append(int(entry))
    return found


def _run_until_kill(cmd: list[str], env: dict[str, str], rng: random.Random, work: int) -> tuple[set[int], str]:
    """Start the engine, SIGKILL it at a random moment; return (worker pids seen, how it was killed).

    ``work`` is about how many ops this round has to run: most kills land after a random number of
    them (so runs are open), the others at a random time from the start (start-up, scan, or work).
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    pids: set[int] = set()
    mode = rng.choice(["after_ops", "after_ops", "after_ops", "timed"])
    target = rng.randint(5, max(6, min(150, work - 20)))
    delay = rng.uniform(0.05, 1.0)
    # "after_ops" falls back to a timed kill when fewer ops than its target are left (the engine is
    # idle and prints nothing more)
    timer = threading.Timer(delay if mode == "timed" else 4.0,
                            lambda: proc.poll() is None and proc.send_signal(signal.SIGKILL))
    timer.start()
    finished = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["type"] == "worker" and event.get("pid"):
                pids.add(int(event["pid"]))
            elif event["type"] == "op_finished":
                finished += 1
                if mode == "after_ops" and finished >= target:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    how = f"after {finished} ops" if mode == "after_ops" and finished >= target else f"timed ({finished} ops)"
    return pids, how


def test_sigkill_restart_loop_loses_nothing_and_reruns_only_interrupted_runs(tmp_path):
    seed = int(os.environ.get("TINYO_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    pace = random.Random(seed + 1)  # the dropper thread's own
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    db = tmp_path / "state.db"
    ledger = tmp_path / "ledger"
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox, ledger=ledger)
    names = [f"f{i:04d}.txt" for i in range(FILES)]
    todo = list(names)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--json"]

    def take(n: int) -> list[str]:
        chunk = todo[:n]
        del todo[:n]
        return chunk

    def drop_later(batch: list[str], delay: float) -> None:
        time.sleep(delay)
        for k in range(0, len(batch), 10):
            for name in batch[k:k + 10]:
                drop(inbox, name, name)
            time.sleep(pace.uniform(0.0, 0.03))

    kills: list[str] = []
    landed = 0
    while len(kills) < KILLS or (landed < 2 and len(kills) < MAX_KILLS):
        before, during = take(rng.randint(40, 100)), take(rng.randint(40, 100))
        for name in before:  # dropped while the engine is down
            drop(inbox, name, name)
        dropper = threading.Thread(target=drop_later, args=(during, rng.uniform(0.05, 0.6)))
        dropper.start()  # and while it runs
        try:
            pids, how = _run_until_kill(cmd, env, rng, len(before) + len(during))
        finally:
            dropper.join(timeout=30)
        # workers must not outlive the orchestrator (they would run ops behind the next engine's back)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        survivors = [p for p in pids if _alive(p)]
        assert not survivors, f"workers {survivors} outlived the killed orchestrator (seed {seed})"
        # nor does the watcher process (it exits when its pipe from the engine closes)
        while _watchers_of(inbox) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _watchers_of(inbox), f"a watcher process outlived the killed orchestrator (seed {seed})"
        if not db.exists():  # killed before it even opened its state file: nothing was stored
            kills.append(f"{how}: before the state file existed")
            continue
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            open_runs = conn.execute("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()[0]
        finally:
            conn.close()
        landed += open_runs > 0
        kills.append(f"{how}: {open_runs} open")
    for name in take(len(todo)):
        drop(inbox, name, name)
    assert len(list(inbox.iterdir())) == FILES

    final = subprocess.run([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--idle-exit", "0.5"],
                           capture_output=True, text=True, env=env, timeout=120)
    context = f"seed {seed}, kills: {kills}"
    assert final.returncode == 0, f"{context}\n{final.stderr[-2000:]}"

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        des = {des_id: (state, json.loads(targs)) for des_id, state, targs in
               conn.execute("SELECT id, state, targs FROM des")}
        runs = conn.execute("SELECT des_id, status, dep_versions FROM runs").fetchall()
        seen = {Path(p).name for (p,) in conn.execute("SELECT name FROM documents WHERE seen_size IS NOT NULL")}
        # not processed: past the watermark, with no status of their own
        new_events = conn.execute("SELECT count(*) FROM events WHERE id > coalesce((SELECT max(last_id) FROM processed), 0) "
                                  "AND status IS NULL").fetchone()[0]
    finally:
        conn.close()
    assert seen == set(names), context
    assert new_events == 0, context
    assert len(des) == FILES, context
    assert {state for state, _ in des.values()} == {"ok"}, context
    file_of = {des_id: targs[0].removeprefix("done.") for des_id, (_, targs) in des.items()}
    status_by_file: dict[str, Counter[str]] = {name: Counter() for name in names}
    ok_inputs: dict[str, list[str]] = {name: [] for name in names}
    for des_id, status, dep_versions in runs:
        status_by_file[file_of[des_id]][status] += 1
        if status == "ok":
            ok_inputs[file_of[des_id]].append(dep_versions)
    assert {s for c in status_by_file.values() for s in c} <= {"ok", "interrupted"}, context
    twice = {n: v for n, v in ok_inputs.items() if len(v) != len(set(v))}
    assert not twice, f"DES that succeeded twice for the same inputs: {list(twice.items())[:5]} ({context})"
    allowed = (lambda n: len(ok_inputs[n]) >= 1) if KNOWN_BUG_PARTIAL_SCAN else (lambda n: len(ok_inputs[n]) == 1)
    bad_ok = {n: c for n, c in status_by_file.items() if not allowed(n)}
    assert not bad_ok, f"DES that succeeded other than exactly once: {list(bad_ok.items())[:5]} ({context})"

    lines = Counter(ledger.read_text().split())
    assert set(lines) == set(names), context
    # an op runs again only if the store says its run was interrupted: at most once more per such run
    extra = {n: (lines[n], status_by_file[n]["interrupted"]) for n in names
             if lines[n] - len(ok_inputs[n]) > status_by_file[n]["interrupted"]}
    assert not extra, f"ops ran more often than their interrupted runs explain: {list(extra.items())[:5]} ({context})"
    interrupted = sum(c["interrupted"] for c in status_by_file.values())
    print(f"{context}; interrupted runs {interrupted}, extra ledger lines {sum(lines.values()) - FILES}")
    assert landed >= 2, f"fewer than two kills landed while runs were open; the loop tested little ({context})"
    assert interrupted >= 1, context
