"""Provides the engine speed benchmark: each figure beside a bare baseline measured in the same run.

    python benchmarks/bench_engine.py [--quick] [--json PATH] [--only NAME[,NAME...]]

A real engine (benchmarks/recipes/bench_recipe.py, trivial ops, Execution.PROCESSES, 2 workers),
temp folders and temp state files. No assertions: it prints a table and writes JSON. Cases (targets
from the issue in brackets; see benchmarks/README.md for what each figure means):

- ``fanout``: one event emits 10,000 independent DES; inject -> last run finished and committed
  [>= 5,000 DES/s], beside a bare ProcessPoolExecutor(2) doing the same 10,000 calls;
- ``chain``: one event emits a chain of 200 DES; ms per link [<= 1 ms], beside 200 sequential
  submit/result round trips through a bare ProcessPoolExecutor(2);
- ``latency``: file written and closed -> OpStarted, p50 [<= settle + 5 ms] / p99 [<= 25 ms] over ~200 files
  spaced ~20 ms, beside a plain watchdog Observer's on_closed callback latency on the same files;
- ``burst_disk`` / ``burst_tmpfs``: 10,000 files dropped at once (by another process); every one run
  exactly once, and last file closed -> last run done [<= 1 s], beside the time to just write them;
- ``flat``: mean time per event (each emits one DES that runs) for a batch of 500 events with the
  store holding 1,000 and then 100,000 DES [ratio within 1.25].
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "engine"))

from tinyo import events as ev  # noqa: E402
from tinyo.engine import Engine  # noqa: E402
from tinyo.heap import settle  # noqa: E402
from tinyo.model import Execution  # noqa: E402

RECIPE = HERE / "recipes" / "bench_recipe.py"
DISK_BASE = os.environ.get("TMPDIR") or "/tmp"
TMPFS_BASE = "/dev/shm"


def noop(_: Any = None) -> None:
    """The bare baselines' trivial call."""
    return None


# ====================================================================== harness


_RECORDED = frozenset({ev.OpFinished, ev.OpStarted, ev.DESRegistered, ev.EventReceived, ev.OpFailed, ev.OpCancelled,
                       ev.EngineNotice, ev.GeneratorError})
"""The fact types the collector records (see ``Collector.__call__``)."""


class Collector:
    """A bus subscriber that records what the benchmark needs (cheap: it runs on the engine loop)."""

    def __init__(self) -> None:
        self.started: list[tuple[float, float, int, str, frozenset[str]]] = []
        """(receive time, event ts, run_id, des_id, targs) per OpStarted."""
        self.finished: list[tuple[float, float, int, str]] = []
        """(receive time, event ts, run_id, des_id) per OpFinished."""
        self.failed: list[tuple[float, str, str]] = []
        self.processed = 0
        self.last_processed_at = 0.0
        self.registered = 0
        self.first_registered: float | None = None
        self.notices: list[str] = []
        self.gen_errors: list[str] = []
        self._target: int | None = None
        self._processed_target: int | None = None
        self._done = threading.Event()

    def __call__(self, e: ev.BusEvent) -> None:
        t = type(e)
        if t is ev.OpFinished:
            self.finished.append((time.time(), e.ts, e.run_id, e.des_id))
            self._check()
        elif t is ev.OpStarted:
            self.started.append((time.time(), e.ts, e.run_id, e.des_id, e.targs))
        elif t is ev.DESRegistered:
            self.registered += 1
        elif t is ev.EventReceived:
            self.processed += 1
            self.last_processed_at = time.time()
            self._check()
        elif t is ev.OpFailed or t is ev.OpCancelled:
            self.failed.append((time.time(), e.des_id, getattr(e, "error", "cancelled")))
            self._check()
        elif t is ev.EngineNotice:
            self.notices.append(f"{e.level}: {e.message}")
        elif t is ev.GeneratorError:
            self.gen_errors.append(f"{e.generator}({e.event}): {e.error}")

    def batch(self, events: list[ev.BusEvent]) -> None:
        """The collector as a batch subscriber: one call per cycle's facts, and the many it does not record
        (state changes, document versions) skipped by one type test, so the harness adds little to the
        engine loop's CPU that the benchmark measures."""
        wanted = _RECORDED
        for e in events:
            if type(e) in wanted:
                self(e)

    def _check(self) -> None:
        if self._target is not None and len(self.finished) + len(self.failed) >= self._target:
            self._done.set()
        if self._processed_target is not None and self.processed >= self._processed_target:
            self._done.set()

    def wait_runs(self, total: int, timeout: float) -> bool:
        """Until ``total`` runs (ever) finished or failed."""
        self._done.clear()
        self._processed_target = None
        self._target = total
        if len(self.finished) + len(self.failed) >= total:
            return True
        ok = self._done.wait(timeout)
        self._target = None
        return ok

    def wait_processed(self, total: int, timeout: float) -> bool:
        """Until ``total`` events (ever) went through the generators."""
        self._done.clear()
        self._target = None
        self._processed_target = total
        if self.processed >= total:
            return True
        ok = self._done.wait(timeout)
        self._processed_target = None
        return ok


class BenchEngine:
    """A real engine on a fresh copy of the bench recipe, with a collector on its bus."""

    def __init__(self, workdir: Path, *, db: Path | None = None, dirs: list[str] = (),  # type: ignore[assignment]
                 execution: Execution = Execution.PROCESSES, workers: int = 2) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # a new path is a new recipe module: the environment below is read again
        self.recipe = workdir / f"bench_{uuid.uuid4().hex[:8]}.py"
        shutil.copy(RECIPE, self.recipe)
        self.db = db or workdir / "state.db"
        saved = {k: os.environ.get(k) for k in ("TINYO_BENCH_DIRS", "TINYO_BENCH_DB")}
        os.environ["TINYO_BENCH_DIRS"] = os.pathsep.join(dirs)
        os.environ["TINYO_BENCH_DB"] = str(self.db)
        try:
            self.engine = Engine.from_path(self.recipe, db=str(self.db), execution=execution, max_workers=workers)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.col = Collector()
        self.engine.bus.subscribe_batches(self.col.batch)
        self.stopped = False

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until every worker is ready and the loop is idle; returns seconds taken."""
        t0 = time.perf_counter()
        settle()  # as `tinyo run` does once its engine is built
        self.engine.start()
        if self.engine.fatal is not None:
            raise RuntimeError(f"engine failed to start: {self.engine.fatal}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = self.engine.workers()
            if infos and all(w.state == "idle" for w in infos) and self.engine.idle_since is not None:
                break
            time.sleep(0.005)
        else:
            raise RuntimeError(f"engine not ready after {timeout}s: workers {self.engine.workers()}")
        return time.perf_counter() - t0

    def wait_idle(self, since_mono: float, timeout: float) -> bool:
        """Until the loop has been idle since a moment after ``since_mono``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = self.engine.idle_since
            if idle is not None and idle >= since_mono:
                return True
            if self.engine.fatal is not None:
                return False
            time.sleep(0.002)
        return False

    def warm(self, n: int = 40, timeout: float = 60.0) -> None:
        """Warm up: import the recipe in both workers and let the executor learn that ops are fast."""
        base = len(self.col.finished) + len(self.col.failed)
        mark = time.monotonic()
        self.engine.inject(f"fanout:warm{uuid.uuid4().hex[:6]}:{n}")
        self.col.wait_runs(base + n, timeout)
        self.wait_idle(mark, timeout)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.engine.stop(5.0)

    def __enter__(self) -> BenchEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def store_query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def runs_check(db: Path, targ_like: str) -> dict[str, Any]:
    """Per-DES run counts for DES whose targs match ``targ_like`` (from the state file)."""
    rows = store_query(
        db,
        "SELECT d.id, count(r.id), sum(r.status = 'ok') FROM des d LEFT JOIN runs r ON r.des_id = d.id "
        "WHERE d.targs LIKE ? GROUP BY d.id", (targ_like,))
    per = Counter(c for _, c, _ in rows)
    return {
        "des": len(rows),
        "runs_total": sum(c for _, c, _ in rows),
        "des_without_ok_run": sum(1 for _, _, ok in rows if not ok),
        "des_with_more_than_one_run": sum(1 for _, c, _ in rows if c > 1),
        "runs_per_des_histogram": {str(k): v for k, v in sorted(per.items())},
        "run_status": dict(store_query(db, "SELECT status, count(*) FROM runs GROUP BY status")),
    }


def cpu() -> float:
    """CPU seconds used so far by this (the orchestrator's) process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_cpu(pid: int | None) -> float:
    """CPU seconds used so far by another (live) process, e.g. the engine's watcher process; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by each named thread of this process (Linux: /proc), summed per name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        name = names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def bare_pool(workers: int = 2) -> cf.ProcessPoolExecutor:
    pool = cf.ProcessPoolExecutor(workers)
    cf.wait([pool.submit(noop) for _ in range(workers * 4)])
    return pool


# ====================================================================== 1. fan-out


def bench_fanout(n: int, tmp: Path, timeout: float) -> dict[str, Any]:
    pool = bare_pool()
    t0 = time.perf_counter()
    cf.wait([pool.submit(noop) for _ in range(n)])
    bare_s = time.perf_counter() - t0
    pool.shutdown()

    with BenchEngine(tmp / "fanout") as be:
        be.start()
        be.warm()
        col = be.col
        base = len(col.finished) + len(col.failed)
        reg0 = col.registered
        mark = time.monotonic()
        c0 = cpu()
        t0 = time.time()
        be.engine.inject(f"fanout:main:{n}")
        ok = col.wait_runs(base + n, timeout)
        t_last = col.finished[-1][0] if col.finished else float("nan")
        idle_ok = be.wait_idle(mark, timeout)
        cpu_s = cpu() - c0
        t_idle = time.time()
        first_start = next((s[0] for s in col.started if s[0] >= t0), float("nan"))
        registered = col.registered - reg0
        failed = len(col.failed)
        notices = col.notices[-5:]
    check = runs_check(be.db, "%fan.main.%")
    elapsed = t_last - t0
    return {
        "n": n, "completed": ok, "idle": idle_ok, "engine_s": elapsed, "engine_to_idle_s": t_idle - t0,
        "engine_des_per_s": n / elapsed if ok else 0.0, "bare_s": bare_s, "bare_calls_per_s": n / bare_s,
        "inject_to_first_op_started_s": first_start - t0, "registered": registered, "failed": failed,
        "orchestrator_cpu_us_per_des": 1e6 * cpu_s / n,
        "store": check, "notices": notices,
    }


# ====================================================================== 2. chain


def bench_chain(n: int, tmp: Path, timeout: float) -> dict[str, Any]:
    pool = bare_pool()
    t0 = time.perf_counter()
    for _ in range(n):
        pool.submit(noop).result()
    bare_s = time.perf_counter() - t0
    pool.shutdown()

    with BenchEngine(tmp / "chain") as be:
        be.start()
        be.warm()
        col = be.col
        base = len(col.finished) + len(col.failed)
        mark = time.monotonic()
        t0 = time.time()
        be.engine.inject(f"chain:main:{n}")
        ok = col.wait_runs(base + n, timeout)
        t_last = col.finished[-1][0] if col.finished else float("nan")
        be.wait_idle(mark, timeout)
        first_start = next((s[0] for s in col.started if s[0] >= t0), float("nan"))
        failed = len(col.failed)
    check = runs_check(be.db, "%chain.main.%")
    elapsed = t_last - t0
    # link time measured from the first op start (without the generator/registration of the chain)
    links = elapsed - (first_start - t0)
    return {
        "n": n, "completed": ok, "engine_s": elapsed, "engine_ms_per_link": 1000 * elapsed / n,
        "engine_ms_per_link_after_first_start": 1000 * links / max(1, n - 1),
        "bare_s": bare_s, "bare_ms_per_call": 1000 * bare_s / n, "failed": failed, "store": check,
    }


# ====================================================================== 3. file -> op latency


def write_file(path: Path, i: int) -> float:
    with open(path, "w") as fh:
        fh.write(f"file {i}\n")
    return time.time()


def bench_latency(count: int, spacing: float, tmp: Path, timeout: float) -> dict[str, Any]:
    from watchdog.events import FileClosedEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    # bare watchdog: an Observer with an on_closed handler
    bare_dir = tmp / "lat_bare"
    bare_dir.mkdir(parents=True)
    seen: dict[str, float] = {}

    class Handler(FileSystemEventHandler):
        def on_closed(self, event: Any) -> None:
            seen.setdefault(os.fsdecode(event.src_path), time.time())

    observer = Observer()
    observer.schedule(Handler(), str(bare_dir), event_filter=[FileClosedEvent])
    observer.daemon = True
    observer.start()
    time.sleep(0.2)
    closes: dict[str, float] = {}
    for i in range(count):
        p = bare_dir / f"lat_{i:04d}.txt"
        closes[str(p)] = write_file(p, i)
        time.sleep(spacing)
    deadline = time.monotonic() + 5
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    observer.stop()
    observer.join(5)
    bare = [(seen[p] - t) * 1000 for p, t in closes.items() if p in seen]

    # the engine
    in_dir = tmp / "lat_engine"
    in_dir.mkdir(parents=True)
    with BenchEngine(tmp / "latency", dirs=[str(in_dir)]) as be:
        be.start()
        be.warm()
        col = be.col
        # a few warm-up files (first file event, first hash, first watcher callback)
        base = len(col.finished) + len(col.failed)
        for i in range(5):
            write_file(in_dir / f"warm_{i}.txt", i)
            time.sleep(spacing)
        col.wait_runs(base + 5, 10)
        base = len(col.finished) + len(col.failed)
        eclose: dict[str, float] = {}
        for i in range(count):
            p = in_dir / f"lat_{i:04d}.txt"
            eclose[f"file.{p.name}"] = write_file(p, i)
            time.sleep(spacing)
        ok = col.wait_runs(base + count, timeout)
        started = {}
        for recv, ts, _, _, targs in col.started:
            for t in targs:
                if t in eclose:
                    started.setdefault(t, (recv, ts))
    check = runs_check(be.db, '%"file.lat_%')
    wstart = dict((f"file.{os.path.basename(json.loads(d)[0])}", s) for s, d in store_query(
        be.db, "SELECT r.start, d.deps FROM runs r JOIN des d ON d.id = r.des_id WHERE r.start IS NOT NULL"))
    eng = [(started[t][1] - c) * 1000 for t, c in eclose.items() if t in started]
    eng_recv = [(started[t][0] - c) * 1000 for t, c in eclose.items() if t in started]
    worker = [(wstart[t] - c) * 1000 for t, c in eclose.items() if t in wstart]
    return {
        "count": count, "spacing_s": spacing, "completed": ok, "seen_engine": len(eng), "seen_bare": len(bare),
        "settle_ms": be.engine.config.settle * 1000,
        "engine_p50_ms": pct(eng, 50), "engine_p99_ms": pct(eng, 99), "engine_max_ms": max(eng, default=float("nan")),
        "engine_worker_start_p50_ms": pct(worker, 50), "engine_worker_start_p99_ms": pct(worker, 99),
        "engine_bus_received_p50_ms": pct(eng_recv, 50), "engine_bus_received_p99_ms": pct(eng_recv, 99),
        "bare_p50_ms": pct(bare, 50), "bare_p99_ms": pct(bare, 99), "bare_max_ms": max(bare, default=float("nan")),
        "store": check,
    }


# ====================================================================== 4. burst of files

WRITER = r"""
import json, os, sys, time
folder, n = sys.argv[1], int(sys.argv[2])
t0 = time.time()
for i in range(n):
    with open(os.path.join(folder, f"f_{i:06d}.dat"), "w") as fh:
        fh.write(f"{i}\n")
t1 = time.time()
print(json.dumps({"first_open": t0, "last_close": t1}))
"""


def drop_files(folder: Path, n: int) -> tuple[float, float]:
    """Write ``n`` small files into ``folder`` from another process; (first open, last close) times."""
    out = subprocess.run([sys.executable, "-c", WRITER, str(folder), str(n)], check=True, capture_output=True,
                         text=True).stdout
    data = json.loads(out)
    return data["first_open"], data["last_close"]


def bench_burst(n: int, base: str, tmp_name: str, timeout: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"tinyo_bench_{tmp_name}_", dir=base))
    try:
        # baseline: just write the files (same file system, nothing watching)
        bare_runs = []
        for k in range(2):  # the first write on a fresh file system area is often slower: keep the best
            plain = tmp / f"plain{k}"
            plain.mkdir()
            a, b = drop_files(plain, n)
            bare_runs.append(b - a)
            shutil.rmtree(plain)
        bare_s = min(bare_runs)

        in_dir = tmp / "in"
        in_dir.mkdir()
        # the state file stays on disk (under the disk temp dir) in both cases: only the folder moves
        state_dir = Path(tempfile.mkdtemp(prefix="tinyo_bench_state_", dir=DISK_BASE))
        try:
            with BenchEngine(state_dir, dirs=[str(in_dir)]) as be:
                be.start()
                be.warm()
                col = be.col
                base_runs = len(col.finished) + len(col.failed)
                mark = time.monotonic()
                watcher = be.engine.loop.inflow.watcher
                watcher_pid = watcher._process.pid if watcher is not None and watcher._process is not None else None
                worker_pids = [w.pid for w in be.engine.workers()]
                c0, w0, t0 = cpu(), child_cpu(watcher_pid), thread_cpu()
                k0 = sum(child_cpu(pid) for pid in worker_pids)
                ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                first_open, last_close = drop_files(in_dir, n)
                ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                writer_s = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)  # the file writer, reaped
                ok = col.wait_runs(base_runs + n, timeout)
                t_last = col.finished[-1][0] if col.finished else float("nan")
                cpu_s, watcher_s = cpu() - c0, child_cpu(watcher_pid) - w0
                workers_s = sum(child_cpu(pid) for pid in worker_pids) - k0
                t1 = thread_cpu()
                threads_us = {name: round(1e6 * (t1[name] - t0.get(name, 0.0)) / n, 1) for name in t1
                              if t1[name] - t0.get(name, 0.0) > 0}
                idle_ok = be.wait_idle(mark, timeout)
                # stay a little longer: a late duplicate (rescan, watcher) would show up now
                time.sleep(1.0)
                be.wait_idle(mark, 10)
                bus_runs = Counter(d for _, _, _, d, targs in col.started if any(t.startswith("file.f_") for t in targs))
                notices = [m for m in col.notices if "scan" in m or "overflow" in m.lower()][-5:]
                failed = len(col.failed)
            check = runs_check(be.db, '%"file.f_%')
            ev_rows = store_query(be.db, "SELECT name, count(*) FROM events WHERE source IN ('file', 'scan') "
                                         "AND name LIKE ? GROUP BY name", (f"{in_dir}/f_%",))
            ev_sources = dict(store_query(be.db, "SELECT source, count(*) FROM events WHERE name LIKE ? GROUP BY source",
                                          (f"{in_dir}/f_%",)))
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
        return {
            "n": n, "folder": str(in_dir), "completed": ok, "idle": idle_ok,
            "write_s_watched": last_close - first_open, "bare_write_s": bare_s, "bare_write_runs_s": bare_runs,
            "last_close_to_last_run_s": t_last - last_close, "first_open_to_last_run_s": t_last - first_open,
            "files_per_s": n / (t_last - first_open) if ok else 0.0,
            "orchestrator_cpu_us_per_file": 1e6 * cpu_s / n,
            "watcher_process_cpu_us_per_file": 1e6 * watcher_s / n,
            "workers_cpu_us_per_file": 1e6 * workers_s / n,
            "file_writer_cpu_us_per_file": 1e6 * writer_s / n,
            "all_cpu_s": cpu_s + watcher_s + workers_s + writer_s,
            "cpus": os.cpu_count() or 1,
            "engine_threads_cpu_us_per_file": dict(sorted(threads_us.items(), key=lambda kv: -kv[1])),
            "files_with_event": len(ev_rows), "files_with_more_than_one_event": sum(1 for _, c in ev_rows if c > 1),
            "event_sources": ev_sources,
            "bus_des_started": len(bus_runs), "bus_des_started_more_than_once": sum(1 for c in bus_runs.values() if c > 1),
            "exactly_once": check["des"] == n and check["runs_total"] == n and check["des_without_ok_run"] == 0,
            "failed": failed, "store": check, "notices": notices,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ====================================================================== 5. per-event cost vs store size


def populate(db: Path, workdir: Path, n: int, timeout: float, chunk: int = 1000) -> dict[str, Any]:
    """Create ``n`` DES (each run once) in the state file ``db`` with a real engine (THREADS, 2 workers)."""
    t0 = time.perf_counter()
    with BenchEngine(workdir, db=db, execution=Execution.THREADS, workers=2) as be:
        be.start()
        events = 0
        for start in range(0, n, chunk):
            be.engine.inject(f"pop:p:{start}:{min(chunk, n - start)}")
            events += 1
        ok = be.col.wait_runs(n, timeout)
        be.wait_idle(0, timeout)
    return {"n": n, "events": events, "completed": ok, "seconds": time.perf_counter() - t0}


def measure_events(be: BenchEngine, kind: str, tag: str, batch: int, timeout: float,
                   cpu_out: list[float] | None = None) -> float:
    """Seconds per event for ``batch`` events injected at once (``one``: each runs a DES; ``none``: no DES)."""
    col = be.col
    base_runs = len(col.finished) + len(col.failed)
    base_proc = col.processed
    mark = time.monotonic()
    c0 = cpu()
    t0 = time.time()
    for i in range(batch):
        be.engine.inject(f"{kind}:{tag}:{i}")
    if kind == "one":
        ok = col.wait_runs(base_runs + batch, timeout)
        t_end = col.finished[-1][0]  # when the last OpFinished was published (committed)
    else:
        ok = col.wait_processed(base_proc + batch, timeout)
        t_end = col.last_processed_at
    be.wait_idle(mark, timeout)
    if cpu_out is not None:
        cpu_out.append((cpu() - c0) / batch)
    return (t_end - t0) / batch if ok else float("nan")


def bench_flat(sizes: tuple[int, int], batch: int, rounds: int, tmp: Path, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {"batch": batch, "rounds": rounds, "sizes": {}}
    for n in sizes:
        work = tmp / f"flat_{n}"
        db = work / "state.db"
        pop = populate(db, work, n, timeout)
        with BenchEngine(work, db=db) as be:
            startup = be.start(timeout=max(60.0, timeout))
            be.warm()
            one, none, one_cpu = [], [], []
            for r in range(rounds):
                one.append(measure_events(be, "one", f"r{r}", batch, timeout, one_cpu))
                none.append(measure_events(be, "none", f"r{r}", batch, timeout))
            des_total = len(be.engine.graph.nodes)
        size = os.path.getsize(db) + (os.path.getsize(str(db) + "-wal") if os.path.exists(str(db) + "-wal") else 0)
        out["sizes"][str(n)] = {
            "populate": pop, "startup_s": startup, "des_in_store": des_total, "db_bytes": size,
            "ms_per_event_with_run": 1000 * statistics.median(one), "ms_per_event_with_run_rounds": [1000 * x for x in one],
            "cpu_ms_per_event_with_run": 1000 * statistics.median(one_cpu),
            "ms_per_event_no_des": 1000 * statistics.median(none), "ms_per_event_no_des_rounds": [1000 * x for x in none],
        }
        shutil.rmtree(work, ignore_errors=True)
        del be
        gc.collect()
    small, big = (out["sizes"][str(n)] for n in sizes)
    out["ratio_with_run"] = big["ms_per_event_with_run"] / small["ms_per_event_with_run"]
    out["ratio_no_des"] = big["ms_per_event_no_des"] / small["ms_per_event_no_des"]
    out["ratio_cpu_with_run"] = big["cpu_ms_per_event_with_run"] / small["cpu_ms_per_event_with_run"]
    return out


# ====================================================================== report


def fmt(x: float, digits: int = 2) -> str:
    if x != x:  # nan
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def table(res: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(name: str, value: float, unit: str, base: float, target: str, met: bool | None, note: str = "") -> None:
        ratio = value / base if base and base == base else float("nan")
        rows.append((name, f"{fmt(value)} {unit}", f"{fmt(base)} {unit}", fmt(ratio), target,
                     ("yes" if met else "NO") if met is not None else "-"))
        if note:
            rows.append(("", note, "", "", "", ""))

    if "fanout" in res:
        r = res["fanout"]
        row(f"1 fan-out {r['n']:,} DES (engine vs bare pool)", r["engine_des_per_s"], "/s", r["bare_calls_per_s"],
            ">= 5,000 DES/s", r["engine_des_per_s"] >= 5000,
            f"  inject->first op {1000 * r['inject_to_first_op_started_s']:.0f} ms; orchestrator CPU "
            f"{r['orchestrator_cpu_us_per_des']:.0f} us/DES; runs {r['store']['runs_total']}, "
            f">1 run {r['store']['des_with_more_than_one_run']}, no ok run {r['store']['des_without_ok_run']}")
    if "chain" in res:
        r = res["chain"]
        row(f"2 chain {r['n']} DES, per link", r["engine_ms_per_link"], "ms", r["bare_ms_per_call"], "<= 1 ms",
            r["engine_ms_per_link"] <= 1.0)
    if "latency" in res:
        r = res["latency"]
        settle = r.get("settle_ms", 0.0)  # the settle window's quiet period (one batch for events arriving together)
        row(f"3 file closed -> OpStarted p50 ({r['seen_engine']}/{r['count']})", r["engine_p50_ms"], "ms",
            r["bare_p50_ms"], f"<= settle {settle:g} + 5 ms", r["engine_p50_ms"] <= settle + 5)
        row("3 file closed -> OpStarted p99", r["engine_p99_ms"], "ms", r["bare_p99_ms"], "<= 25 ms",
            r["engine_p99_ms"] <= 25,
            f"  worker-side start p50/p99 {fmt(r['engine_worker_start_p50_ms'])}/{fmt(r['engine_worker_start_p99_ms'])} ms; "
            f"engine max {fmt(r['engine_max_ms'])} ms, bare max {fmt(r['bare_max_ms'])} ms")
    for key, label in (("burst_disk", "disk"), ("burst_tmpfs", "tmpfs")):
        if key in res:
            r = res[key]
            row(f"4 burst {r['n']:,} files ({label}): last close -> last run", r["last_close_to_last_run_s"], "s",
                r["bare_write_s"], "<= 1 s", r["last_close_to_last_run_s"] <= 1.0 and r["exactly_once"],
                f"  exactly once: {'yes' if r['exactly_once'] else 'NO'} (DES {r['store']['des']}, runs "
                f"{r['store']['runs_total']}, >1 run {r['store']['des_with_more_than_one_run']}, never ok "
                f"{r['store']['des_without_ok_run']}); {fmt(r['files_per_s'], 0)} files/s, "
                f"CPU per file: engine {r['orchestrator_cpu_us_per_file']:.0f} us + watcher process "
                f"{r['watcher_process_cpu_us_per_file']:.0f} us + workers {r['workers_cpu_us_per_file']:.0f} us; "
                f"events {r['event_sources']}")
            if "all_cpu_s" in r:
                rows.append(("", f"  CPU of every process taking part (engine, watcher, workers, the file writer): "
                                 f"{r['all_cpu_s']:.2f} s, so at least {r['all_cpu_s'] / r['cpus']:.2f} s from the first "
                                 f"file on {r['cpus']} CPUs even if all of it ran in parallel", "", "", "", ""))
            threads = r.get("engine_threads_cpu_us_per_file") or {}
            if threads:
                rows.append(("", "  engine threads, CPU per file: "
                             + ", ".join(f"{name} {us:.0f} us" for name, us in list(threads.items())[:5]), "", "", "", ""))
    if "flat" in res:
        r = res["flat"]
        small, big = (r["sizes"][k] for k in r["sizes"])
        ns = list(r["sizes"])
        row(f"5 per event (+1 run) at {int(ns[1]):,} vs {int(ns[0]):,} DES", big["ms_per_event_with_run"], "ms",
            small["ms_per_event_with_run"], "ratio <= 1.25", r["ratio_with_run"] <= 1.25)
        row("5 per event (no DES), same sizes", big["ms_per_event_no_des"], "ms", small["ms_per_event_no_des"],
            "ratio <= 1.25", r["ratio_no_des"] <= 1.25,
            f"  orchestrator CPU per event (+1 run): {fmt(big['cpu_ms_per_event_with_run'], 3)} vs "
            f"{fmt(small['cpu_ms_per_event_with_run'], 3)} ms (ratio {fmt(r['ratio_cpu_with_run'])}); engine start on the store: {fmt(small['startup_s'])} s vs {fmt(big['startup_s'])} s; populate "
            f"{fmt(small['populate']['seconds'])} s vs {fmt(big['populate']['seconds'])} s")
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    head = ("figure", "tinyo", "baseline", "ratio", "target", "met")
    cells = [r for r in rows if r[0] or not r[1].startswith("  ")]
    widths = [max(len(str(r[i])) for r in [head, *cells]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print(line)
    for r in rows:
        if not r[0] and r[1].startswith("  "):
            print(r[1])
            continue
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (under a minute)")
    parser.add_argument("--json", default=None, help="write the results here (default: print only)")
    parser.add_argument("--only", default=None, help="comma-separated cases: fanout,chain,latency,burst_disk,"
                                                      "burst_tmpfs,flat")
    args = parser.parse_args(argv)
    q = args.quick
    params = {
        "fanout": 2_000 if q else 10_000,
        "chain": 100 if q else 200,
        "latency": (60 if q else 200, 0.02),
        "burst": 2_000 if q else 10_000,
        "flat": ((1_000, 10_000) if q else (1_000, 100_000), 200 if q else 500, 2 if q else 5),
        "timeout": 60.0 if q else 300.0,
    }
    only = set(args.only.split(",")) if args.only else None
    wanted = lambda name: only is None or name in only  # noqa: E731
    timeout = params["timeout"]
    res: dict[str, Any] = {
        "meta": {"quick": q, "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                 "execution": "processes", "max_workers": 2, "maxevents": 30, "params": params,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")},
    }
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tinyo_bench_", dir=DISK_BASE))
    try:
        steps = [
            ("fanout", lambda: bench_fanout(params["fanout"], tmp, timeout)),
            ("chain", lambda: bench_chain(params["chain"], tmp, timeout)),
            ("latency", lambda: bench_latency(*params["latency"], tmp, timeout)),
            ("burst_disk", lambda: bench_burst(params["burst"], DISK_BASE, "disk", timeout)),
            ("burst_tmpfs", lambda: bench_burst(params["burst"], TMPFS_BASE, "tmpfs", timeout)),
            ("flat", lambda: bench_flat(*params["flat"], tmp, timeout * 2)),
        ]
        for name, fn in steps:
            if not wanted(name):
                continue
            t0 = time.perf_counter()
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            try:
                res[name] = fn()
            except Exception as exc:  # report and go on: one broken case must not hide the others
                res.setdefault("errors", {})[name] = repr(exc)
                print(f"  {name} failed: {exc!r}", file=sys.stderr, flush=True)
            print(f"  {name} took {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["meta"]["seconds"] = time.perf_counter() - t_all
    print_table(table(res))
    for name, err in res.get("errors", {}).items():
        print(f"{name}: ERROR {err}")
    print(f"(ratio = tinyo / baseline; {res['meta']['cpus']} CPUs, {res['meta']['seconds']:.0f} s total)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
