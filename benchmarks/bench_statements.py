"""Why a chain link's statements cost more inside the engine than in a bare script: the same transaction
timed statement by statement on a bare connection and on the engine's own (``tinyo.store.Store``), each
with and without other work between links.

    python benchmarks/bench_statements.py [--links 2000] [--rounds 2] [--json PATH]

A link's transaction as the engine writes it (``benchmarks/README.md``, "A chain link's loop share"):
``BEGIN IMMEDIATE``, the finished run's ``UPDATE runs``, its DES's ``UPDATE des``, the target's documents
upsert, the next run's ``INSERT runs``, ``COMMIT``; the statements are the store's own (``DEFERRED``), on
its schema, in a state file on disk (``$TMPDIR``), 2,000 DES in it. Cases:

- ``bare``: ``sqlite3.connect`` with WAL and ``synchronous=NORMAL`` (SQLite checkpoints inside a commit
  every 1,000 pages), ``COMMIT`` executed, without the adapters ``tinyo.store`` registers (a plain script);
- ``store``: the engine's connection (its pragmas, its checkpoint thread), ``Store.commit()`` (the WAL size
  check after the commit included);
- ``store, COMMIT alone``: the same, ``COMMIT`` executed instead of ``Store.commit()`` (the WAL is never
  checked or reset by the engine: its checkpoint thread alone copies it back);
- ``store, adapters off``: ``store`` without the identity adapters the store registers for None and bytes
  (each None bound goes through the adapter look-up that misses, as in a plain script);
- ``+ evicted``: between links, a walk over a 2.4 MB list, as the rest of a loop cycle (readiness, dispatch,
  pickling, facts) does to the CPU caches before the next transaction.

The loop thread's CPU (``time.thread_time_ns``) per statement, medians over the links (the commit's mean too:
its median leaves out the links whose commit also checkpointed). No assertions: a table and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from tinyo.store import Store  # noqa: E402
from tinyo.store_schema import DEFERRED, SCHEMA  # noqa: E402

STEPS = ("BEGIN IMMEDIATE", "UPDATE runs", "UPDATE des", "documents upsert", "INSERT runs", "COMMIT")
DOC_UPSERT = ("INSERT INTO documents(name, version, hash, mtime_ns, size, updated, by) VALUES (CAST(? AS TEXT), "
              "?, ?, ?, ?, ?, CAST(? AS TEXT)) ON CONFLICT(name) DO UPDATE SET version = excluded.version, "
              "hash = excluded.hash, mtime_ns = excluded.mtime_ns, size = excluded.size, "
              "updated = excluded.updated, by = excluded.by")
ADAPTERS = [(t, sqlite3.PrepareProtocol) for t in (type(None), bytes)]


def link_statements(i: int, des_id: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Link ``i``'s statements with the values the engine binds (None where a run has no error, output...)."""
    return [
        ("BEGIN IMMEDIATE", ()),
        (DEFERRED["runs_ok"], (2.0, "", None, "w1", 1.0, i)),
        (DEFERRED["des_ok"], (f'{{"chain.{i - 1}": 1}}', des_id)),
        (DOC_UPSERT, (f"chain.{i}", 1, None, None, None, 2.0, des_id)),
        (DEFERRED["runs"], (i + 1, des_id, 1, f'{{"chain.{i}": 1}}')),
    ]


def run_case(kind: str, links: int, evict: list[int] | None, folder: Path) -> dict[str, Any]:
    path = tempfile.mktemp(suffix=".db", dir=folder)  # a new state file per case and round
    store = None
    if kind == "bare":
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
    else:
        store = Store(path)
        conn = store.conn
    ids = [f"{i:016x}" for i in range(links)]
    conn.execute("BEGIN")
    filler = [(f"f{i * 2654435761 % 2**60:015x}",) for i in range(2000)]  # ids spread as hashes are
    conn.executemany("INSERT INTO des(id, deps, targs, ops_desc, created, state) "
                     "VALUES (?, '[]', '[]', '[]', 0, 'new')", filler + [(d,) for d in ids])
    conn.execute("INSERT INTO runs(id, des_id, attempt, status) VALUES (1, ?, 1, 'queued')", (ids[0],))
    conn.execute("COMMIT")
    off = kind == "bare" or "adapters off" in kind
    saved = {key: sqlite3.adapters.pop(key) for key in ADAPTERS if off and key in sqlite3.adapters}
    times: list[list[int]] = [[] for _ in STEPS]
    clock = time.thread_time_ns
    try:
        for i in range(1, links):
            for step, (sql, params) in enumerate(link_statements(i, ids[i])):
                start = clock()
                conn.execute(sql, params)
                times[step].append(clock() - start)
            start = clock()
            if store is None or kind == "store, COMMIT alone":
                conn.execute("COMMIT")
            else:
                store.commit()
            times[-1].append(clock() - start)
            if evict is not None:
                sum(evict)
    finally:
        sqlite3.adapters.update(saved)
        if store is not None:
            store.close()
        else:
            conn.close()
    medians = {name: statistics.median(t) / 1000 for name, t in zip(STEPS, times)}
    return {"median_us": medians, "commit_mean_us": statistics.mean(times[-1]) / 1000,
            "link_mean_us": sum(statistics.mean(t) for t in times) / 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all cases, alternating (medians)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    evict = list(range(300_000))
    kinds = ("bare", "store", "store, COMMIT alone", "store, adapters off")
    cases = [(kind, ev) for kind in kinds for ev in (False, True)]
    folder = Path(tempfile.mkdtemp(prefix="tinyo_bench_statements_", dir=os.environ.get("TMPDIR", "/tmp")))
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(args.rounds):
            for kind, ev in cases:
                label = kind + (" + evicted" if ev else "")
                rounds.setdefault(label, []).append(run_case(kind, args.links, evict if ev else None, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    res: dict[str, Any] = {}
    for label, runs in rounds.items():
        res[label] = {"median_us": {s: statistics.median(r["median_us"][s] for r in runs) for s in STEPS},
                      "commit_mean_us": statistics.median(r["commit_mean_us"] for r in runs),
                      "link_mean_us": statistics.median(r["link_mean_us"] for r in runs)}
    print(f"a chain link's transaction, {args.links} links, loop-thread CPU per statement (us, medians; "
          f"load {os.getloadavg()[0]:.1f})")
    heads = ["BEGIN", "UPD runs", "UPD des", "doc upsert", "INS runs", "COMMIT", "COMMIT mean", "link mean"]
    print(f"{'case':32}" + "".join(f"{h:>12}" for h in heads))
    for label, r in res.items():
        figures = [*r["median_us"].values(), r["commit_mean_us"], r["link_mean_us"]]
        print(f"{label:32}" + "".join(f"{f:12.1f}" for f in figures))
    base = res["bare"]["link_mean_us"]
    print("link mean / bare: " + ", ".join(f"{label} {r['link_mean_us'] / base:.2f}x" for label, r in res.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"links": args.links, "cases": res}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
