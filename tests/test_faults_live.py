"""Faults met by a running engine: bad DES and generators in a live run, workers that die, hang or
raise (with retries), a watched folder replaced wholesale, a full disk, bad or read-only state files,
network exposure, and hostile names in ``tinyo why``. The engine must report each one clearly and
go on (or, for the state file, stop with one clear line and no partial writes)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyo import events as ev
from tinyo.control.paths import socket_path
from tinyo.errors import StoreError
from tinyo.store import SCHEMA_VERSION, Store

from conftest import drop, write_recipe

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def tinyo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ====================================================================== small tmpfs mounts


class Mount:
    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> Path:
        """Fill the file system with a filler file, leaving about ``leave`` bytes free."""
        filler = self.path / "filler"
        with open(filler, "wb") as fh:
            fh.write(b"\0" * max(0, self.free() - leave))
        return filler


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """``tmpfs(size)`` mounts a fresh tmpfs of that size (root only; skipped where mounts are refused)."""
    mounted: list[Path] = []

    def make(size: str = "2m", name: str = "mnt") -> Mount:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root and mount(8)")
        target = tmp_path / name
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"this sandbox refuses to mount a tmpfs: {result.stderr.strip()}")
        mounted.append(target)
        return Mount(target)

    yield make
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


# ====================================================================== bad DES and generators, live

LIVE = """
import ctypes, signal

def ok(context):
    print('ok', context['config']['n'])

def make_nested():
    def inner(context):
        print('inner ran')
    return inner

def flaky(context):
    kind = context['config']['kind']
    if context['attempt'] == 1:
        if kind == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == 'segv':
            ctypes.string_at(0)
        if kind == 'hang':
            time.sleep(60)
        if kind == 'raise':
            raise RuntimeError('first attempt fails')
    print('flaky', kind, 'attempt', context['attempt'])

def des(deps, targs, fn=ok, **cfg):
    return DES(deps=frozenset(deps), targs=frozenset(targs), ops=[(fn, Config(cfg))])

@meta_task(root=True)
def gen(event):
    if event == 'cycle':
        return (None, [des(['cyc.x'], ['cyc.y'], n='xy'), des(['cyc.y'], ['cyc.x'], n='yx')])
    if event == 'longcycle':
        return (None, [des(['lc.a'], ['lc.b'], n='ab'), des(['lc.b'], ['lc.c'], n='bc'), des(['lc.c'], ['lc.a'], n='ca')])
    if event == 'self':
        return (None, [des(['loop'], ['loop'], n='self')])
    if event == 'conflict':
        return (None, [des(['conflict'], ['shared'], n='first'), des(['conflict'], ['shared'], n='second')])
    if event == 'lambda':
        return (None, [DES(deps=frozenset(['lambda']), targs=frozenset(['lam.out']), ops=[(lambda c: None, Config({}))])])
    if event == 'nested':
        return (None, [DES(deps=frozenset(['nested']), targs=frozenset(['nest.out']), ops=[(make_nested(), Config({}))])])
    if event == 'raise':
        raise LookupError('generator blew up on purpose')
    if event == 'shape':
        return 'not a pair'
    if event == 'hang':
        time.sleep(30)
    m = re.fullmatch(r'flaky_(\\w+)', event)
    if m:
        return (None, [des([event], ['out.' + event], flaky, kind=m.group(1))])
    m = re.fullmatch(r'ok_(\\w+)', event)
    if m:
        return (None, [des([event], ['out.' + event], n=m.group(1))])
    return (None, [])

@meta_task(root=True)
def witness(event):
    # a second root: it must see every event, whatever the first generator did with it
    return (None, [des([event], ['witness.' + event], n='witness ' + event)])

config = TinyOConfig(sql_conn='{db}', dirs=[], max_workers=2, execution=Execution.PROCESSES,
                     generator_timeout=0.5, retries={retries}, retry_delay=0.2, op_timeout={timeout})
"""


def live(tmp_path: Path, retries: int = 0, timeout: float | None = None) -> Path:
    return write_recipe(tmp_path, LIVE, db=tmp_path / "live.db", retries=retries, timeout=timeout)


def test_bad_des_in_a_live_run_are_rejected_by_name_and_the_engine_goes_on(tmp_path, harness):
    bad = ["cycle", "longcycle", "self", "conflict", "lambda", "nested"]
    with harness(live(tmp_path)) as h:
        for i, event in enumerate(bad):
            h.engine.inject(event)
            h.engine.inject(f"ok_{i}")
        h.wait_idle()
        rejected = {e.event: e for e in h.of(ev.DESRejectedEvent)}
        assert sorted(rejected) == sorted(bad), "each bad DES is rejected exactly once"
        assert all(e.generator == "gen" for e in rejected.values())
        assert rejected["cycle"].reason.startswith("cycle:") and "'cyc.x'" in rejected["cycle"].reason
        assert "lc.a -> lc.b -> lc.c" in rejected["longcycle"].reason
        assert rejected["self"].reason == "cycle: DES reads and writes 'loop'"
        first = next(d for d in h.of(ev.DESRegistered) if d.targs == frozenset({"shared"}))
        assert f"conflict: target 'shared' is already produced by DES {first.des_id}" in rejected["conflict"].reason
        assert "'gen.<locals>.<lambda>' is a lambda or a nested function" in rejected["lambda"].reason
        assert "'make_nested.<locals>.inner' is a lambda or a nested function" in rejected["nested"].reason
        errors = {e.event for e in h.of(ev.GeneratorError)}
        assert errors == set(bad), "each rejection is also one generator error naming the event"
        lines = h.lines()
        assert sorted(line for line in lines if line.startswith("ok ") and not line.startswith("ok witness")) == \
            sorted([f"ok {i}" for i in range(len(bad))] + ["ok first"])
        assert "inner ran" not in lines and "ok xy" not in lines
        # the part of a cycle that was accepted waits for a version; nothing else is stuck
        assert h.engine.stats().state == "running" and h.engine.stats().failed == 0
        h.engine.inject("ok_after")
        h.wait_idle()
        assert "ok after" in h.lines()
    assert h.engine.fatal is None


def test_generators_that_raise_return_junk_or_hang_fail_alone(tmp_path, harness):
    with harness(live(tmp_path)) as h:
        for event in ("raise", "ok_1", "shape", "ok_2", "hang", "ok_3"):
            h.engine.inject(event)
        h.wait_idle(timeout=30)
        errors = {e.event: e for e in h.of(ev.GeneratorError)}
        assert sorted(errors) == ["hang", "raise", "shape"]
        assert errors["raise"].generator == "gen"
        assert errors["raise"].error.startswith("raised LookupError: generator blew up on purpose")
        assert "returned 'not a pair'; expected (key, [DES, ...])" in errors["shape"].error
        assert "did not return within 0.5s" in errors["hang"].error
        lines = h.lines()
        assert {"ok 1", "ok 2", "ok 3"} <= set(lines)
        # the other root generator still saw the events whose first generator failed
        assert {"ok witness raise", "ok witness shape"} <= set(lines)
    store = Store(str(tmp_path / "live.db"), lock=False)
    try:
        assert store.pending_events() == 0
        marks = {name: status for _, _, _, name, status, _ in store.recent_events(20)}
        assert marks["raise"] == marks["shape"] == marks["hang"] == "error" and marks["ok_3"] == "done"
    finally:
        store.close()


def test_generator_error_message_names_file_and_line(tmp_path):
    recipe = live(tmp_path)
    result = tinyo("inject", str(recipe), "raise")
    line = next(x for x in result.stdout.splitlines() if "ERROR" in x)
    line_no = next(i for i, text in enumerate(recipe.read_text().splitlines(), 1) if "generator blew up" in text)
    assert f"{recipe.name}:{line_no}" in line, line


def test_cli_bounded_run_with_bad_generators_reports_each_once_and_exits_cleanly(tmp_path):
    recipe = live(tmp_path)
    for event in ("cycle", "raise", "lambda"):
        result = tinyo("inject", str(recipe), event)
        assert result.returncode == 0, result.stderr  # README: exit 1 only when an op failed
        assert "Traceback" not in result.stdout + result.stderr
        flagged = [x for x in result.stdout.splitlines() if " ERROR " in x or " REJECT " in x]
        assert flagged and all(repr(event) in x or event in x for x in flagged), result.stdout
    assert "ok witness lambda" in result.stdout


# ====================================================================== worker faults with retries


def test_worker_faults_fail_alone_retry_with_backoff_and_the_pool_recovers(tmp_path, harness):
    kinds = {"kill": "was killed (SIGKILL) while running op flaky", "segv": "segmentation fault",
             "hang": "timed out after 1.5s", "raise": "op flaky raised RuntimeError: first attempt fails"}
    with harness(live(tmp_path, retries=2, timeout=1.5)) as h:
        for i, kind in enumerate(kinds):
            h.engine.inject(f"flaky_{kind}")
            for j in range(5):
                h.engine.inject(f"ok_{i}_{j}")
        h.wait_for(lambda: sum(1 for e in h.of(ev.OpFinished) if e.op == "flaky") == 4, timeout=40,
                   what="every flaky op to succeed on its second attempt")
        h.wait_idle(timeout=30)
        failed = {e.des_id: e for e in h.of(ev.OpFailed)}
        assert len(failed) == 4 and len(h.of(ev.OpFailed)) == 4, "one failure per faulty op, no more"
        kind_of = {d.des_id: next(iter(d.targs)).removeprefix("out.flaky_") for d in h.of(ev.DESRegistered)
                   if d.ops == ("flaky",)}
        retried = {s.des_id: s for s in h.of(ev.OpStarted) if s.op == "flaky" and s.attempt == 2}
        assert sorted(kind_of[d] for d in failed) == sorted(kinds) and set(retried) == set(failed)
        for des_id, failure in failed.items():
            kind = kind_of[des_id]
            assert kinds[kind] in failure.error, (kind, failure.error)
            assert failure.retry_in == 0.2, kind
            assert retried[des_id].ts - failure.ts >= 0.18, f"{kind}: retried before the backoff"
            assert f"flaky {kind} attempt 2" in h.lines()
        assert sorted(x for x in h.lines() if x.startswith("ok ") and "witness" not in x) == \
            sorted(f"ok {i}_{j}" for i in range(4) for j in range(5))
        dead = [w for w in h.of(ev.WorkerChanged) if w.state == "dead"]
        assert len(dead) == 3, "kill, segfault and timeout each cost one worker; raising costs none"
        assert [w.state for w in h.engine.workers()].count("dead") == 0
        assert h.engine.failures == 0 and h.engine.stats().failed == 0


def test_fast_ops_do_not_wait_behind_a_hung_op_while_a_worker_is_idle(tmp_path, harness):
    with harness(live(tmp_path)) as h:
        for i in range(40):  # warm up: the pool now believes ops are fast
            h.engine.inject(f"ok_warm{i}")
        h.wait_idle(quiet=0.2)
        h.engine.inject("flaky_hang")
        for i in range(10):
            h.engine.inject(f"ok_b{i}")
        want = {f"ok b{i}" for i in range(10)}
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not want <= set(h.lines()):
            time.sleep(0.05)
        missing = sorted(want - set(h.lines()))
        hang = next(r for r in h.of(ev.OpStarted) if r.op == "flaky")
        h.engine.cancel(hang.run_id)
        assert not missing, f"{missing} waited behind the hung op"


WORKER_IMPORT = """
import multiprocessing
if multiprocessing.current_process().name.startswith('tinyo-w'):
    raise ImportError('this module is missing on the workers')

def ok(context):
    print('ok')

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]), ops=[(ok, Config({}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=2, execution=Execution.PROCESSES)
"""


def test_a_worker_that_cannot_import_the_recipe_is_not_respawned_in_a_tight_loop(tmp_path, harness):
    recipe = write_recipe(tmp_path, WORKER_IMPORT, db=tmp_path / "wi.db")
    with harness(recipe) as h:
        time.sleep(4)
        failures = [e for e in h.of(ev.EngineNotice) if "cannot import the recipe" in e.message]
        assert failures and "this module is missing on the workers" in failures[0].message
        assert len(failures) <= 2 * 2, f"{len(failures)} worker start failures in 4 s: a respawn loop"


# ====================================================================== stopping and restarting

RETRY = """
def always_fails(context):
    raise RuntimeError('fails on attempt %d' % context['attempt'])

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]), ops=[(always_fails, Config({}))])])

config = TinyOConfig(sql_conn='{db}', execution=Execution.THREADS, retries=1, retry_delay=1.0)
"""


def test_a_retry_pending_at_a_stop_keeps_its_attempt_count(tmp_path, harness):
    recipe = write_recipe(tmp_path, RETRY, db=tmp_path / "r.db")
    with harness(recipe) as h:
        h.engine.inject("go")
        h.wait_for(lambda: h.of(ev.OpFailed), what="the first failure")
        assert h.of(ev.OpFailed)[0].retry_in == 1.0
    with harness(recipe) as h2:
        time.sleep(1.2)
        h2.wait_idle(timeout=10)
    store = Store(str(tmp_path / "r.db"), lock=False)
    try:
        des_id = h.of(ev.OpFailed)[0].des_id
        runs = store.runs_for(des_id)
    finally:
        store.close()
    assert [(r.attempt, r.status) for r in runs] == [(1, "failed"), (2, "failed")]


def test_an_event_injected_before_a_quiet_stop_is_kept(tmp_path, harness):
    recipe = write_recipe(tmp_path, RETRY.replace("retries=1", "retries=0"), db=tmp_path / "i.db")
    with harness(recipe) as h:
        h.wait_idle(quiet=0.1)
        h.engine.inject("kept")
        h.engine.stop(timeout=5)
    store = Store(str(tmp_path / "i.db"), lock=False)
    try:
        assert [e[3] for e in store.recent_events(5)] == ["kept"]
    finally:
        store.close()


def test_an_event_injected_just_before_a_stop_is_not_lost(tmp_path):
    import threading

    from tinyo.engine import Engine

    recipe = write_recipe(tmp_path, RETRY.replace("retries=1", "retries=0"), db=tmp_path / "l.db")
    engine = Engine.from_path(recipe)
    done = []

    def at_end_of_a_cycle(event: ev.BusEvent) -> None:
        # bus subscribers run on the engine thread after the cycle stored its intake: widen that window
        if isinstance(event, ev.EngineState) and event.state == "running" and not done:
            done.append(True)
            engine.inject("late")  # accepted
            threading.Thread(target=engine.stop, kwargs={"timeout": 5}).start()  # and the user quits
            time.sleep(0.2)

    engine.bus.subscribe(at_end_of_a_cycle)
    engine.start()
    assert engine.wait(30)
    store = Store(str(tmp_path / "l.db"), lock=False)
    try:
        names = [e[3] for e in store.recent_events(5)]
    finally:
        store.close()
    assert names == ["late"], "an accepted event was lost at the stop"


# ====================================================================== the watched folder replaced

WATCH = """
def note(context):
    (src,) = context['deps']
    print('seen', os.path.basename(src))

@meta_task(root=True)
def gen(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['seen.' + event]), ops=[(note, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.THREADS, debounce=0.05,
                     rescan_interval={rescan})
"""


def _replace_folder(tmp_path: Path, inbox: Path, how: str) -> None:
    if how == "moved_over":
        staging = tmp_path / "staging"
        staging.mkdir()
        drop(staging, "b.txt", "b")
        drop(staging, "c.txt", "c")
        inbox.rename(tmp_path / "inbox.old")
        staging.rename(inbox)
    else:  # deleted and made again
        shutil.rmtree(inbox)
        inbox.mkdir()
        drop(inbox, "b.txt", "b")
        drop(inbox, "c.txt", "c")
    time.sleep(0.3)
    drop(inbox, "d.txt", "d")


def _replaced_folder_run(tmp_path: Path, inbox: Path, harness, how: str, rescan: float | None) -> list[str]:
    recipe = write_recipe(tmp_path, WATCH, db=tmp_path / "w.db", inbox=inbox, rescan=rescan)
    with harness(recipe) as h:
        drop(inbox, "a.txt", "a")
        h.wait_for(lambda: "seen a.txt" in h.lines(), what="a.txt")
        _replace_folder(tmp_path, inbox, how)
        deadline = time.monotonic() + 4
        want = {"seen a.txt", "seen b.txt", "seen c.txt", "seen d.txt"}
        while time.monotonic() < deadline and not want <= set(h.lines()):
            time.sleep(0.05)
        return sorted(h.lines())


@pytest.mark.parametrize("how", ["moved_over", "recreated"])
def test_a_replaced_folder_is_found_by_the_periodic_rescan(tmp_path, inbox, harness, how):
    lines = _replaced_folder_run(tmp_path, inbox, harness, how, rescan=0.3)
    assert lines == ["seen a.txt", "seen b.txt", "seen c.txt", "seen d.txt"]


@pytest.mark.parametrize("how", ["moved_over", "recreated"])
def test_a_replaced_folder_is_noticed_without_a_periodic_rescan(tmp_path, inbox, harness, how):
    lines = _replaced_folder_run(tmp_path, inbox, harness, how, rescan=None)
    assert lines == ["seen a.txt", "seen b.txt", "seen c.txt", "seen d.txt"]


PARTIAL = """
def note(context):
    (src,) = context['deps']
    print('seen', os.path.basename(src), len(open(src).read()))

@meta_task(root=True)
def gen(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['seen.' + event]), ops=[(note, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.THREADS)
"""


def test_a_file_still_being_written_at_start_up_is_processed_once_complete(tmp_path, inbox, harness):
    import threading

    recipe = write_recipe(tmp_path, PARTIAL, db=tmp_path / "p.db", inbox=inbox)
    opened = threading.Event()

    def producer() -> None:
        with open(inbox / "big.csv", "w") as fh:
            for _ in range(30):
                fh.write("x" * 100)
                fh.flush()
                opened.set()
                time.sleep(0.05)

    writer = threading.Thread(target=producer)
    writer.start()
    opened.wait(5)
    with harness(recipe) as h:  # starts (and scans) while the file is being written
        writer.join()
        h.wait_idle()
    assert h.lines() == ["seen big.csv 3000"]


# ====================================================================== a full disk

DISK = """
def note(context):
    (src,) = context['deps']
    print('seen', os.path.basename(src))

@meta_task(root=True)
def gen(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['seen.' + event]),
                           ops=[(note, Config({'pad': 'p' * 200}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.THREADS)
"""

FULL_FILES = 1500


def _full_disk(tmp_path: Path, inbox: Path, tmpfs) -> tuple[Path, Path, Mount, subprocess.CompletedProcess[str]]:
    mount = tmpfs("2m")
    db = mount.path / "state.db"
    recipe = write_recipe(tmp_path, DISK, db=db, inbox=inbox)
    Store(str(db)).close()
    mount.fill(leave=48 * 1024)
    for i in range(FULL_FILES):
        drop(inbox, f"f{i:04d}.txt", str(i))
    result = tinyo("run", str(recipe), "--idle-exit", "0.3")
    return recipe, db, mount, result


def test_a_full_disk_stops_the_engine_without_partial_writes_and_a_restart_catches_up(tmp_path, inbox, tmpfs):
    recipe, db, mount, result = _full_disk(tmp_path, inbox, tmpfs)
    assert result.returncode == 2, result.stderr
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        des = conn.execute("SELECT count(*) FROM des").fetchone()[0]
        done = conn.execute("SELECT count(*) FROM events WHERE id <= coalesce((SELECT max(last_id) FROM processed), 0)").fetchone()[0]
        seen = conn.execute("SELECT count(*) FROM documents WHERE seen_size IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    # a cycle's writes land together or not at all: every processed event has its DES, every file seen an event
    assert done <= des and seen == events
    # no crash loop: the engine stopped once; with room again, one start finishes everything exactly once
    (mount.path / "filler").unlink()
    mount.remount("size=32m")
    again = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert again.returncode == 0, again.stderr
    store = Store(str(db), lock=False)
    try:
        assert store.integrity_check() == "ok"
        assert store.count("des") == FULL_FILES and store.count("files_seen") == FULL_FILES
        assert store.pending_events() == 0
        states = {row.state for row in store.load_des()}
        assert states == {"ok"}
    finally:
        store.close()


def test_a_full_disk_gives_one_clear_line(tmp_path, inbox, tmpfs):
    _, _, _, result = _full_disk(tmp_path, inbox, tmpfs)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    lines = stderr_lines(result)
    assert len(lines) == 1 and "full" in lines[0], lines


def test_store_commit_on_a_full_disk_raises_store_error_and_stays_transactional(tmp_path, tmpfs):
    mount = tmpfs("1m")
    store = Store(str(mount.path / "s.db"))
    try:
        mount.fill(leave=32 * 1024)
        store.add_events([(1.0, "manual", f"{i:05d}" + "x" * 600, "new") for i in range(200)])
        with pytest.raises(StoreError, match="full"):
            store.commit()
        store.add_events([(2.0, "manual", "after the failure", "new")])
        assert store.conn.in_transaction, "a write after a failed commit was committed on its own"
        store.rollback()
        assert store.count("events") == 0
    finally:
        store.close()


# ====================================================================== bad state files


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices(id INTEGER, total REAL)")
    conn.commit()
    conn.close()


def _truncated(path: Path) -> None:
    Store(str(path)).close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] + b"\0garbage")


def _newer(path: Path) -> None:
    Store(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make, message", [
    (_foreign, "belongs to another program"),
    (_truncated, "not a SQLite database|not a usable tinyo state file|corrupt"),
    (_newer, "written by a newer tinyo"),
])
def test_cli_refuses_a_bad_state_file_with_one_line_and_leaves_it_untouched(tmp_path, make, message):
    import re

    db = tmp_path / "bad.db"
    make(db)
    before = db.read_bytes()
    recipe = write_recipe(tmp_path, WATCH, db=db, inbox=tmp_path / "in", rescan=None)
    for args in (("run", str(recipe), "--idle-exit", "0.2"), ("status", str(recipe)), ("rerun", str(recipe), "x")):
        result = tinyo(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = stderr_lines(result)
        assert len(lines) == 1 and lines[0].startswith("tinyo: error: ") and re.search(message, lines[0]), lines
        assert str(db) in lines[0]
    assert db.read_bytes() == before
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0


def _read_only_state(tmp_path: Path, tmpfs) -> tuple[Path, Path]:
    mount = tmpfs("4m")
    db = mount.path / "state.db"
    inbox = tmp_path / "in"
    inbox.mkdir()
    drop(inbox, "a.txt")
    recipe = write_recipe(tmp_path, WATCH, db=db, inbox=inbox, rescan=None)
    assert tinyo("run", str(recipe), "--idle-exit", "0.2").returncode == 0
    mount.remount("ro")
    return recipe, db


def test_a_read_only_state_file_is_refused_even_as_root(tmp_path, tmpfs):
    recipe, db = _read_only_state(tmp_path, tmpfs)
    before = db.read_bytes()
    with pytest.raises(StoreError, match="read-only"):
        Store(str(db))
    result = tinyo("run", str(recipe), "--idle-exit", "0.2")
    assert result.returncode == 2
    assert stderr_lines(result) == [f"tinyo: error: {db}: the state file is read-only; tinyo needs to write it"]
    assert db.read_bytes() == before


def test_status_reads_a_state_file_on_a_read_only_mount(tmp_path, tmpfs):
    recipe, db = _read_only_state(tmp_path, tmpfs)
    result = tinyo("status", str(recipe))
    if result.returncode == 2:  # acceptable too: a clear refusal that does not call a good file corrupt
        assert "read-only" in result.stderr and "corrupt" not in result.stderr, result.stderr
    else:
        assert result.returncode == 0 and "DES states: ok 1" in result.stdout, result.stderr


# ====================================================================== exposure


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def _inet_sockets(inodes: set[str]) -> list[str]:
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            with open(f"/proc/net/{table}") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[9] in inodes:
                found.append(f"{table}: {row.strip()}")
    return found


def _unix_listeners(inodes: set[str]) -> list[str]:
    paths = []
    with open("/proc/net/unix") as fh:
        for row in fh.read().splitlines()[1:]:
            fields = row.split()
            if len(fields) >= 8 and fields[6] in inodes and fields[3] == "00010000":  # __SO_ACCEPTCON: listening
                paths.append(fields[7])
    return paths


def test_no_network_listener_only_the_private_control_socket_and_private_state_files(tmp_path, inbox):
    recipe = write_recipe(tmp_path, WATCH, db=tmp_path / "n.db", inbox=inbox, rescan=None).read_text()
    recipe_path = tmp_path / "recipe.py"
    recipe_path.write_text(recipe.replace("Execution.THREADS", "Execution.PROCESSES"))
    proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe_path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        finished = False
        for line in proc.stdout:
            event = json.loads(line)
            if event["type"] == "engine_state" and event["state"] == "running":
                drop(inbox, "a.txt")
            if event["type"] == "op_finished":
                finished = True
                break
        assert finished
        time.sleep(0.3)
        pids = _tree(proc.pid)
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in pids]
        assert sum(b"tinyo._worker_main" in c for c in cmdlines) == 2, "the engine's two workers"
        assert sum(b"tinyo._watch_main" in c for c in cmdlines) == 1, "the engine's watcher process"
        inodes = _socket_inodes(pids)
        assert _inet_sockets(inodes) == [], "an engine process holds an internet socket"
        # the one listener is the control socket: in a folder only this user can enter, itself private
        control = socket_path(tmp_path / "n.db")
        assert _unix_listeners(inodes) == [str(control)], "an engine process listens on another unix socket"
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700
        for suffix in ("", "-wal", "-shm", ".lock"):  # all exist while the engine runs (WAL mode)
            state = Path(str(tmp_path / "n.db") + suffix)
            assert stat.S_IMODE(state.stat().st_mode) == 0o600, f"{state.name} is not private"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ====================================================================== hostile names in `why`


def test_why_shows_a_name_with_a_newline_literally(tmp_path, inbox):
    recipe = write_recipe(tmp_path, WATCH, db=tmp_path / "h.db", inbox=inbox, rescan=None)
    drop(inbox, "new\nline.txt")
    assert tinyo("run", str(recipe), "--idle-exit", "0.2").returncode == 0
    result = tinyo("why", str(recipe), str(inbox / "new\nline.txt"))
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"document {inbox}/new\\nline.txt: version 1"


def cycles_in_a_second(loop) -> int:
    """How many cycles ``loop`` runs in the next second (the loop thread looks ``cycle`` up on each turn)."""
    cycles = 0
    run_cycle = loop.cycle

    def counted() -> None:
        nonlocal cycles
        cycles += 1
        run_cycle()

    loop.cycle = counted
    time.sleep(1.0)
    del loop.cycle
    return cycles


def test_a_generator_hung_on_the_last_waiting_event_leaves_the_loop_asleep(tmp_path, harness):
    """The thread that takes over after a hang finishes that cycle: with nothing left waiting, the settle
    window must close there too, or the loop would wake at once, again and again, until the next event."""
    with harness(live(tmp_path)) as h:
        h.engine.inject("hang")
        h.wait_idle(timeout=30)
        assert [e.event for e in h.of(ev.GeneratorError)] == ["hang"]
        cycles = cycles_in_a_second(h.engine.loop)
        assert cycles < 20, f"the idle loop ran {cycles} cycles in a second"


def test_a_paused_engine_holding_events_sleeps_until_resumed(tmp_path, harness):
    """Events buffered while paused keep their settle window open past its deadline: the loop must not
    wake for it (nothing is fed while paused), only for the resume."""
    with harness(live(tmp_path)) as h:
        h.engine.pause()
        for i in range(3):
            h.engine.inject(f"ok_{i}")
        time.sleep(0.5)  # stored, their window past its deadline
        cycles = cycles_in_a_second(h.engine.loop)
        assert cycles < 20, f"the paused loop ran {cycles} cycles in a second"
        h.engine.resume()
        h.wait_idle(timeout=30)
        assert {"ok 0", "ok 1", "ok 2"} <= set(h.lines())
