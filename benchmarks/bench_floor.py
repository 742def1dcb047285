"""The floor of issue 14's burst beside the plain pipeline and ``tinyo run``, in one run.

    python benchmarks/bench_floor.py [--files N] [--rounds R] [--cases plain,floor,floor_watchdog,text] [--json PATH]
    python benchmarks/bench_floor.py --quick          # 1,000 files, 1 round

The floor (``floor_program.py``: the least CPU per file an engine keeping README "Guarantees" spends) runs
as its own process on ``bench_burst``'s burst: the same recipe, writer, marker file, lag and CPU accounting,
by import. Cases, rounds interleaved, medians: ``plain`` (``bench_burst.PLAIN``, the baseline), ``floor``
(tinyo's watcher process), ``floor_watchdog`` (watchdog in its process, as the plain pipeline has it),
``floor_sqlthread`` (not by default: each transaction written on a thread of its own, a lever for lag) and
``text`` (``tinyo run``, its text log on a pty). Per file: each process's CPU (``/proc``), the floor's main
thread by part and its SQL by statement, the lag, and what the floor says of the goals (CPU <= 3x, lag <= 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import bench_burst as bb
from floor_program import PARTS

PROGRAM = str(Path(__file__).resolve().with_name("floor_program.py"))


def floor_script(variant: str) -> Any:
    def script(inbox: Path, db: Path, marker: Path, recipe: Path) -> list[str]:
        return [bb.PY, PROGRAM, str(inbox), str(db), str(marker), str(recipe), variant]
    return script


def state_rows(work: Path) -> dict[str, int]:
    """Rows in each table of the case's state file (the floor's and tinyo's alike)."""
    conn = sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True)
    try:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("events", "documents", "des", "consumers", "runs", "processed")}
        rows["runs ok"] = conn.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0]
        rows["des ok"] = conn.execute("SELECT count(*) FROM des WHERE state = 'ok'").fetchone()[0]
        return rows
    finally:
        conn.close()


def floor_stats(work: Path) -> dict[str, Any] | None:
    path = work / "floor-stats.json"
    for _ in range(50):  # written by its SIGTERM handler
        if path.exists():
            try:
                return {**json.loads(path.read_text()), "rows": state_rows(work)}
            except ValueError:
                pass
        time.sleep(0.02)
    return None


CASES = {
    "plain": {},
    "floor": {"script": floor_script("process"), "collect": floor_stats},
    "floor_watchdog": {"script": floor_script("watchdog"), "collect": floor_stats},
    "floor_sqlthread": {"script": floor_script("process+sql-thread"), "collect": floor_stats},
    "text": {"collect": lambda work: {"rows": state_rows(work)}},
}
"""The cases: the plain pipeline (the baseline), the floor with tinyo's watcher process or with watchdog in
its process (as the plain pipeline has it), or with each transaction written on a thread of its own (not in
the default cases: a lever for lag, not for CPU), and ``tinyo run`` with its text log on a pty."""


def alone(n: int = 10_000) -> dict[str, float]:
    """Parts of the floor's main thread timed by themselves (best of 7, process CPU, us per file): the DES id,
    the two group keys, and the 4 facts per file as ``tinyo.events`` dataclasses and as plain tuples."""
    sys.path.insert(0, str(bb.ENGINE))
    from tinyo import events as ev
    from tinyo.groups import group_key
    from tinyo.recipe import load_recipe

    work = Path(bb.tempfile.mkdtemp(prefix="bench-floor-alone-", dir=bb.TMPFS))
    try:
        recipe = work / "recipe.py"
        recipe.write_text(bb.BURST_RECIPE.format(marker=str(work / "m"), db=str(work / "s.db"), inbox=str(work)))
        fn = load_recipe(recipe).roots[0].fn
    finally:
        shutil.rmtree(work, ignore_errors=True)
    paths = [f"{work}/in/f_{i:06d}.dat" for i in range(n)]
    now, d = time.time(), "0123456789abcdef"

    def facts(des: list[Any]) -> None:
        for p, x in zip(paths, des):
            ev.EventReceived(now, 1, p, "file", now, 1, 0, 1)
            ev.DESRegistered(now, d, x.deps, x.targs, ("mark",), "on_file", p, False, "queued", "queued: never built")
            ev.OpStarted(now, 1, d, "mark", "w1", 1, x.targs)
            ev.OpFinished(now, 1, d, "mark", "w1", 0.001, None, ("done " + p,), (1,))

    def tuples(des: list[Any]) -> None:
        for p, x in zip(paths, des):
            (1, now, 1, p, "file", now, 1, 0, 1)
            (2, now, d, x.deps, x.targs, ("mark",), "on_file", p, False, "queued", "queued: never built")
            (4, now, 1, d, "mark", "w1", 1, x.targs), (5, now, 1, d, "mark", "w1", 0.001, None, ("done " + p,), (1,))

    parts = {"the generator (building the DES)": lambda des: [fn(p) for p in paths],
             "the DES id": lambda des: [x.id for x in des],
             "two group keys": lambda des: [(group_key(p), group_key("done " + p)) for p in paths],
             "4 facts, tinyo.events dataclasses": facts, "4 facts, tuples": tuples}
    out = {}
    for label, part in parts.items():
        best = float("inf")
        for _ in range(7):
            des = [fn(p)[1][0] for p in paths]  # fresh: a DES keeps its id once computed
            t0 = time.process_time()
            part(des)
            best = min(best, time.process_time() - t0)
        out[label] = best / n * 1e6
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="plain,floor,floor_watchdog,text")
    parser.add_argument("--quick", action="store_true", help="1,000 files, 1 round")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.files, args.rounds = 1000, 1
    cases = args.cases.split(",")
    res: dict[str, Any] = {"files": args.files, "rounds": args.rounds, "load_before": os.getloadavg(),
                           "cpus": os.cpu_count()}
    rounds: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for case in cases:  # interleaved: the machine's load falls on every case alike
            kind = "text" if case == "text" else case
            rounds[case].append(bb.burst_case(kind, args.files, 300, **CASES[case]))
    res["load_after"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - t0
    res["cases"] = {case: summary(r, args.files) for case, r in rounds.items()}
    res["alone_us"] = alone()
    res["rounds_detail"] = rounds
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def state_once(collected: dict[str, Any] | None) -> bool:
    """The state file says every DES ran once and is ok (a case that collects nothing: the marker alone)."""
    rows = (collected or {}).get("rows")
    return rows is None or rows["runs"] == rows["runs ok"] == rows["des"] == rows["des ok"]


def summary(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Medians of the rounds, CPU in microseconds per file."""
    us = 1e6 / n
    out: dict[str, Any] = {"lag_s": statistics.median(r["lag_s"] for r in rows),
                           "span_s": statistics.median(r["span_s"] for r in rows),
                           "cpu_us": statistics.median(r["cpu_s"] for r in rows) * us,
                           "exactly_once": all(r["exactly_once"] and state_once(r.get("collected")) for r in rows)}
    for label in ("main", "watcher", "workers"):
        out[f"{label}_us"] = statistics.median(r["procs"].get(label, 0.0) for r in rows) * us
    stats = [r["collected"] for r in rows if r.get("collected")]
    if stats:
        out["rows"] = stats[0]["rows"]
    stats = [s for s in stats if "parts_ns" in s]
    if stats:
        out["main_thread_us"] = statistics.median(s["main_thread_s"] for s in stats) * us
        if "sql_thread_s" in stats[0]:
            out["sql_thread_us"] = statistics.median(s["sql_thread_s"] for s in stats) * us
        for part in PARTS:
            out[f"{part}_us"] = statistics.median(s["parts_ns"][part] for s in stats) / 1e3 / n
        for key in ("cycles", "commits", "chunks"):
            out[key] = statistics.median(s[key] for s in stats)
        out["facts_per_file"] = statistics.median(s["facts"] for s in stats) / n
        out["sql_by_statement_us"] = {label: statistics.median(s["sql_ns"].get(label, 0) for s in stats) / 1e3 / n
                                      for label in stats[0]["sql_ns"]}
    return out


def report(res: dict[str, Any]) -> None:
    print(f"load average before {res['load_before'][0]:.1f}, after {res['load_after'][0]:.1f} on {res['cpus']} CPUs; "
          f"{res['files']:,} files at once on tmpfs, {res['rounds']} rounds interleaved (medians); "
          f"{res['seconds']:.0f} s in all")
    cases = res["cases"]
    base = cases.get("plain")
    cols = list(cases)
    rows = [("lag s", "lag_s", "{:.2f}"), ("  x plain", None, None), ("first file -> last op, s", "span_s", "{:.2f}"),
            ("  x plain", None, None), ("CPU, all processes, us/file", "cpu_us", "{:.0f}"),
            ("  x plain", None, None), ("  main process", "main_us", "{:.0f}"),
            ("  watcher process", "watcher_us", "{:.0f}"),
            ("  worker processes", "workers_us", "{:.0f}"), ("  main thread (floor)", "main_thread_us", "{:.0f}")]
    rows += [(f"    {part}", f"{part}_us", "{:.1f}") for part in PARTS]
    rows += [("  SQL thread (floor_sqlthread)", "sql_thread_us", "{:.0f}")]
    rows += [("cycles (commits)", "commits", "{:.0f}"), ("facts per file", "facts_per_file", "{:.2f}"),
             ("exactly once", "exactly_once", "{}")]
    print(f"\n{'per file':<30}" + "".join(f"{c:>16}" for c in cols))
    last = None
    for label, key, fmt in rows:
        cells = []
        for c in cols:
            if key is None:  # the ratio of the row above to the baseline
                v = cases[c].get(last) if base else None
                cells.append(f"{v / base[last]:.2f}x" if v is not None else "")
            else:
                v = cases[c].get(key)
                cells.append("" if v is None else fmt.format(v))
        print(f"{label:<30}" + "".join(f"{x:>16}" for x in cells))
        last = key or last
    print("goals (issue 14): tinyo run lag <= 2x, CPU <= 3x the plain pipeline's")
    if base and "floor" in cases:
        f = cases["floor"]
        goal = 3 * base["cpu_us"]
        print(f"\nwhat the floor says: its CPU is {f['cpu_us']:.0f} us per file, {f['cpu_us'] / base['cpu_us']:.2f}x "
              f"the plain pipeline's; CPU <= 3x ({goal:.0f} us) leaves {goal - f['cpu_us']:.0f} us per file for "
              f"everything an engine does beyond the floor")
        if "text" in cases:
            t = cases["text"]
            print(f"tinyo run spends {t['cpu_us'] - f['cpu_us']:.0f} us per file above it: its main process "
                  f"{t['main_us'] - f['main_us']:+.0f}, watcher {t['watcher_us'] - f['watcher_us']:+.0f}, workers "
                  f"{t['workers_us'] - f['workers_us']:+.0f}")
        print(f"the floor's lag is {f['lag_s'] / base['lag_s']:.2f}x the plain pipeline's (first file -> last op "
              f"{f['span_s'] / base['span_s']:.2f}x): a burst is bound by one thread "
              f"(its main thread {f.get('main_thread_us', 0):.0f} us per file, the plain pipeline's process "
              f"{base['main_us']:.0f} us) and, on 2 CPUs, by the CPU of every process")
    if "alone_us" in res:
        print("\nparts of the floor's main thread timed by themselves, us per file (best of 7)")
        for label, value in res["alone_us"].items():
            print(f"  {label:<42}{value:>16.2f}")
    floors = [c for c in cols if "sql_by_statement_us" in cases[c]]
    if floors:
        print(f"\nthe floor's SQL by statement, us per file{'':<4}" + "".join(f"{c:>16}" for c in floors))
        for label in cases[floors[0]]["sql_by_statement_us"]:
            print(f"  {label:<42}" + "".join(f"{cases[c]['sql_by_statement_us'].get(label, 0):>16.1f}" for c in floors))


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(bb.PYCACHE, ignore_errors=True)
