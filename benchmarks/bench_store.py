"""Provides the state-file benchmark: rows written per file and the SQLite CPU they cost, by statement,
beside a plain durable pipeline's SQL doing the same files in the same run.

    python benchmarks/bench_store.py [--files 5000] [--json PATH]

A real engine (benchmarks/recipes/bench_recipe.py, trivial ops, 2 worker processes), its state file on disk
(``$TMPDIR`` or ``/tmp``), ``--files`` small files dropped at once into a watched tmpfs folder (``/dev/shm``),
one DES per file. The engine's connection is wrapped to count, for every deferred statement kind, the rows
written and the loop thread's CPU inside SQLite (``executemany``), and the commits and reads; the bytes the
engine's process wrote (WAL and checkpoints, ``wchar`` of ``/proc/self/io``) are counted too. Baseline: the
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
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as be  # noqa: E402
from tinyo.store_schema import DEFERRED  # noqa: E402


class CountingConnection:
    """The engine's connection, counting rows and SQLite CPU (thread time) per statement kind."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.kinds = {sql: kind for kind, sql in DEFERRED.items() if sql}
        self.cpu: dict[str, float] = defaultdict(float)
        self.rows: dict[str, int] = defaultdict(int)

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
        start = time.thread_time()
        try:
            return self.conn.execute(sql, params)
        finally:
            self.cpu[kind] += time.thread_time() - start


def written_bytes() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("wchar"))


def engine_case(n: int, state_dir: Path) -> dict[str, Any]:
    in_dir = Path(tempfile.mkdtemp(prefix="tinyo_bench_store_", dir=be.TMPFS_BASE))
    try:
        with be.BenchEngine(state_dir / "engine", dirs=[str(in_dir)]) as bench:
            bench.start()
            bench.warm()
            store = bench.engine.store
            counting = CountingConnection(store.conn)
            store.conn = counting  # type: ignore[assignment]  # the loop is idle: its next cycle uses it
            base = len(bench.col.finished)
            mark = time.monotonic()
            before = written_bytes()
            be.drop_files(in_dir, n)
            bench.col.wait_runs(base + n, 300)
            bench.wait_idle(mark, 60)
            after = written_bytes()
            store.conn = counting.conn
        return {"rows": dict(counting.rows), "cpu_us": {k: v * 1e6 / n for k, v in counting.cpu.items()},
                "bytes_per_file": (after - before) / n}
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
    print(f"{'tinyo, all':14} {rows:9.2f} {cpu:11.1f}   written {engine['bytes_per_file'] / 1024:.1f} KB/file")
    print(f"{'plain pipeline':14} {plain['rows_per_file']:9.2f} {plain['cpu_us']:11.1f}   written "
          f"{plain['bytes_per_file'] / 1024:.1f} KB/file")
    print(f"ratio tinyo / plain: rows {rows / plain['rows_per_file']:.1f}, SQLite CPU {cpu / plain['cpu_us']:.1f}, "
          f"bytes {engine['bytes_per_file'] / plain['bytes_per_file']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"files": n, "engine": engine, "plain": plain}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
