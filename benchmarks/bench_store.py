"""Provides the state-file benchmark: rows written per file and the SQLite CPU they cost, by statement,
beside a plain durable pipeline's SQL doing the same files in the same run.

    python benchmarks/bench_store.py [--files 5000] [--json PATH]

A real engine (benchmarks/recipes/bench_recipe.py, trivial ops, 2 worker processes), its state file on disk
(``$TMPDIR`` or ``/tmp``), ``--files`` small files dropped at once into a watched tmpfs folder (``/dev/shm``),
one DES per file. The engine's connection is wrapped to count, for every deferred statement kind, the rows
written and the loop thread's CPU inside SQLite (``executemany``), and the commits and reads. Each commit's
WAL frames are counted (the WAL index's frame count before and after it) and their page numbers read from
the WAL; at the end each page is put down to its table or index (SQLite's ``dbstat``), which says what a
commit rewrites. The bytes each of the engine's threads wrote are counted too (``wchar`` of
``/proc/self/task/*/io``: the loop's WAL frames, the checkpoint thread's copies into the database file, the
pipes to the workers). Baseline: the
plain pipeline's SQL (``bench_burst.PLAIN``: a row per file inserted, then its status updated, a WAL
transaction per batch of up to 1,000 files) on the same paths, in a state file beside the engine's. No
assertions: a table and (``--json``) the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as be  # noqa: E402
from tinyo.store_schema import DEFERRED  # noqa: E402


class CountingConnection:
    """The engine's connection, counting rows and SQLite CPU (thread time) per statement kind, and the WAL
    frames each commit appends (with their page numbers)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self.kinds = {sql: kind for kind, sql in DEFERRED.items() if sql}
        self.cpu: dict[str, float] = defaultdict(float)
        self.rows: dict[str, int] = defaultdict(int)
        self.commits = 0
        self.frames = 0
        self.pages: dict[int, int] = defaultdict(int)
        """WAL frames written per page number."""
        self.page_size = conn.execute("PRAGMA page_size").fetchone()[0]

    def _wal_mark(self) -> tuple[int, bytes]:
        """(frames in the WAL, its salt): the WAL index header's mxFrame, and the WAL header's salt (which
        changes when the WAL starts over)."""
        with open(self.path + "-shm", "rb") as fh:
            frames = struct.unpack_from("=I", fh.read(20), 16)[0]
        with open(self.path + "-wal", "rb") as fh:
            salt = fh.read(24)[16:24]
        return frames, salt

    def _count_frames(self, before: tuple[int, bytes]) -> None:
        frames, salt = self._wal_mark()
        first = before[0] if salt == before[1] and frames >= before[0] else 0
        self.commits += 1
        self.frames += frames - first
        with open(self.path + "-wal", "rb") as fh:
            for i in range(first, frames):
                fh.seek(32 + i * (24 + self.page_size))
                self.pages[struct.unpack(">I", fh.read(4))[0]] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def executemany(self, sql: str, rows: Any) -> Any:
        kind = self.kinds.get(sql, "docs" if sql.startswith("INSERT INTO documents") else "other")
        rows = list(rows)
        start = time.thread_time()
        try:
            return self.conn.executemany(sql, rows)
        finally:
            self.cpu[kind] += time.thread_time() - start
            self.rows[kind] += len(rows)

    def execute(self, sql: str, params: Any = ()) -> Any:
        kind = "(commit)" if sql == "COMMIT" else "(begin)" if sql.startswith("BEGIN") else "(reads)"
        mark = self._wal_mark() if kind == "(commit)" else None
        start = time.thread_time()
        try:
            return self.conn.execute(sql, params)
        finally:
            self.cpu[kind] += time.thread_time() - start
            if mark is not None:
                self._count_frames(mark)

    def frames_by_btree(self) -> dict[str, int]:
        """The WAL frames counted, by the table or index each page belongs to now."""
        owner = dict(self.conn.execute("SELECT pageno, name FROM dbstat"))
        out: dict[str, int] = defaultdict(int)
        for page, count in self.pages.items():
            out[owner.get(page, "(free)")] += count
        return dict(out)


def written_bytes() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("wchar"))


def thread_written() -> dict[str, int]:
    """Bytes written so far by each named thread of this process (``wchar``), summed per name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, int] = defaultdict(int)
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/io") as fh:
                wchar = next(int(line.split()[1]) for line in fh if line.startswith("wchar"))
        except (OSError, StopIteration):
            continue  # ended meanwhile
        out[names.get(int(tid), "other")] += wchar
    return dict(out)


def engine_case(n: int, state_dir: Path) -> dict[str, Any]:
    in_dir = Path(tempfile.mkdtemp(prefix="tinyo_bench_store_", dir=be.TMPFS_BASE))
    try:
        with be.BenchEngine(state_dir / "engine", dirs=[str(in_dir)]) as bench:
            bench.start()
            bench.warm()
            store = bench.engine.store
            counting = CountingConnection(store.conn, store.path)
            store.conn = counting  # type: ignore[assignment]  # the loop is idle: its next cycle uses it
            base = len(bench.col.finished)
            mark = time.monotonic()
            before, threads_before, cpu_before = written_bytes(), thread_written(), be.thread_cpu()
            be.drop_files(in_dir, n)
            bench.col.wait_runs(base + n, 300)
            bench.wait_idle(mark, 60)
            after, threads_after, cpu_after = written_bytes(), thread_written(), be.thread_cpu()
            store.conn = counting.conn
            btrees = counting.frames_by_btree()
        threads = {name: (b - threads_before.get(name, 0)) / n for name, b in threads_after.items()
                   if b > threads_before.get(name, 0)}
        return {"rows": dict(counting.rows), "cpu_us": {k: v * 1e6 / n for k, v in counting.cpu.items()},
                "bytes_per_file": (after - before) / n, "commits": counting.commits,
                "wal_frames_per_file": counting.frames / n,
                "wal_bytes_per_file": counting.frames * (24 + counting.page_size) / n,
                "wal_frames_per_file_by_btree": {k: v / n for k, v in btrees.items()},
                "written_bytes_per_file_by_thread": threads,
                "thread_cpu_us_per_file": {name: (c - cpu_before.get(name, 0.0)) * 1e6 / n
                                           for name, c in cpu_after.items() if c > cpu_before.get(name, 0.0)}}
    finally:
        shutil.rmtree(in_dir, ignore_errors=True)


def plain_case(n: int, state_dir: Path) -> dict[str, Any]:
    """The plain pipeline's SQL: insert each batch's files in one transaction, then mark them done."""
    conn = sqlite3.connect(state_dir / "plain.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE files(path TEXT PRIMARY KEY, mtime_ns INTEGER, size INTEGER, hash TEXT, status TEXT)")
    paths = [f"{be.TMPFS_BASE}/tinyo_bench_store_plain/f{i:06d}.txt" for i in range(n)]
    before = written_bytes()
    start = time.thread_time()
    for first in range(0, n, 1000):
        batch = paths[first:first + 1000]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?, 'new')", [(p, 1, 2, "0" * 32) for p in batch])
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.executemany("UPDATE files SET status = 'done' WHERE path = ?", [(p,) for p in batch])
        conn.execute("COMMIT")
    cpu = time.thread_time() - start
    after = written_bytes()
    conn.close()
    return {"rows_per_file": 2.0, "cpu_us": cpu * 1e6 / n, "bytes_per_file": (after - before) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    n = args.files
    state_dir = Path(tempfile.mkdtemp(prefix="tinyo_bench_store_state_", dir=be.DISK_BASE))
    try:
        plain = plain_case(n, state_dir)
        engine = engine_case(n, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    print(f"{n:,} files at once (tmpfs folder, state file on disk); rows and SQLite CPU of the engine loop per file")
    print(f"{'statement':14} {'rows/file':>9} {'CPU us/file':>11}")
    kinds = sorted(set(engine["rows"]) | set(engine["cpu_us"]), key=lambda k: -engine["cpu_us"].get(k, 0.0))
    for kind in kinds:
        rows = engine["rows"].get(kind)
        print(f"{kind:14} {rows / n if rows else 0:9.2f} {engine['cpu_us'].get(kind, 0.0):11.1f}")
    rows = sum(engine["rows"].values()) / n
    cpu = sum(engine["cpu_us"].values())
    print(f"{'tinyo, all':14} {rows:9.2f} {cpu:11.1f}   written {engine['bytes_per_file'] / 1024:.1f} KB/file; "
          f"engine loop {engine['thread_cpu_us_per_file'].get('tinyo-engine', 0.0):.0f} us/file CPU in all, "
          f"checkpoint thread {engine['thread_cpu_us_per_file'].get('tinyo-checkpoint', 0.0):.0f}")
    print(f"{'plain pipeline':14} {plain['rows_per_file']:9.2f} {plain['cpu_us']:11.1f}   written "
          f"{plain['bytes_per_file'] / 1024:.1f} KB/file")
    print(f"ratio tinyo / plain: rows {rows / plain['rows_per_file']:.1f}, SQLite CPU {cpu / plain['cpu_us']:.1f}, "
          f"bytes {engine['bytes_per_file'] / plain['bytes_per_file']:.1f}")
    print(f"\n{engine['commits']} commits ({n / max(1, engine['commits']):.0f} files each), "
          f"{engine['wal_frames_per_file'] * n / max(1, engine['commits']):.1f} WAL frames each: "
          f"{engine['wal_frames_per_file']:.2f} frames, {engine['wal_bytes_per_file'] / 1024:.1f} KB of WAL per file")
    print(f"{'WAL frames by b-tree':28} {'per file':>8}")
    for name, frames in sorted(engine["wal_frames_per_file_by_btree"].items(), key=lambda kv: -kv[1]):
        print(f"{name:28} {frames:8.3f}")
    print(f"{'written by thread':28} {'KB/file':>8}")
    for name, written in sorted(engine["written_bytes_per_file_by_thread"].items(), key=lambda kv: -kv[1]):
        print(f"{name:28} {written / 1024:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"files": n, "engine": engine, "plain": plain}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
