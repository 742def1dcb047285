"""Provides the data-flow speed benchmark: each figure beside a baseline measured in the same run.

    python benchmarks/bench_flow.py [--rows 1000000] [--cpu-rows 100000] [--json PATH]

Cases:
- ``map2``: Generate -> Map -> Map -> count, one lane, against a plain loop doing the same work
  (target: >= 0.5x the loop);
- ``cpu``: a CPU-bound Map in worker processes, 2 instances against 1 (target: >= 1.6x);
- ``repartition``: the ``map2`` flow with the second Map in 2 instances fed by a partition function;
- ``wait-bound``: a Map that waits 1 ms on every fifth row, 2 worker processes against 1: shows the
  process plumbing scales even when other load on the machine hides CPU scaling;
- ``real``: CSV -> Lookup -> Aggregate(count, sum, avg by a key) -> CSV on a flights-shaped file the
  benchmark generates (``--real-rows``, 19 columns, ~3% missing), against a plain ``csv.DictReader``
  loop computing the same (targets: >= 1x with one instance per step, >= 1.5x with 2 lanes in
  worker processes), each flow also with ``CsvInput(columns=[...])`` keeping only the two fields
  used; the outputs are checked equal;
- ``pool``: the CPU-bound Map in 2 worker processes against ``multiprocessing.Pool(2).imap(chunksize=1000)``
  on the same function and rows (target: >= 0.9x).
``--cases`` picks some of them. Each figure is the fastest of ``--repeat`` runs, with its CPU seconds
(this process and its worker processes): on a machine shared with other work the wall-clock ratio of
a parallel case says little, the CPU ratio says how much work the flow spends against its baseline.
No assertions: it prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
import resource
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tinyo.flow import Flow, steps  # noqa: E402

import bench_flow_data as real  # noqa: E402


class Count(steps.Step):
    """A sink that counts rows (keeps nothing)."""

    def setup(self) -> None:
        self.n = 0

    def process(self, rows: list[dict[str, Any]]) -> None:
        self.n += len(rows)
        return None


def double(row: dict[str, Any]) -> dict[str, Any]:
    row["x"] = row["i"] * 2
    return row


def plus_one(row: dict[str, Any]) -> dict[str, Any]:
    row["y"] = row["x"] + 1
    return row


def burn(row: dict[str, Any]) -> dict[str, Any]:
    """About 20 microseconds of pure-Python arithmetic per row."""
    x = row["i"]
    acc = 0
    for k in range(300):
        acc = (acc + x * k) % 1_000_003
    row["h"] = acc
    return row


def nap(row: dict[str, Any]) -> dict[str, Any]:
    """Waits 1 ms on every fifth row: scales with workers even on a busy machine."""
    if row["i"] % 5 == 0:
        time.sleep(0.001)
    return row


def plain_loop(n: int) -> float:
    start = time.perf_counter()
    count = 0
    for i in range(n):
        row = {"i": i}
        row = double(row)
        row = plus_one(row)
        count += 1
    assert count == n
    return time.perf_counter() - start


def plain_burn(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        burn({"i": i})
    return time.perf_counter() - start


def map2_flow(n: int, repartition: bool = False) -> float:
    flow = Flow("bench_map2", params={"n": n})
    gen = flow.step("gen", steps.Generate("${params.n}"))
    m1 = flow.step("double", steps.Map(double))
    m2 = flow.step("plus_one", steps.Map(plus_one), instances=2 if repartition else 1)
    sink = flow.step("count", Count(), instances=2 if repartition else 1)
    flow.hop(gen, m1)
    flow.hop(m1, m2, partition=(lambda r: r["i"] % 16) if repartition else None)
    flow.hop(m2, sink)
    start = time.perf_counter()
    run = flow.run()
    elapsed = time.perf_counter() - start
    if not run.ok or run.rows_in("count") != n:
        raise SystemExit(f"map2 flow failed: {run.error or run.rows_in('count')}")
    return elapsed


def cpu_flow(n: int, instances: int, processes: bool, fn: Any = burn) -> float:
    flow = Flow("bench_cpu", chunk_size=1000)
    gen = flow.step("gen", steps.Generate(n))
    work = flow.step("work", steps.Map(fn), instances=instances, processes=processes)
    sink = flow.step("count", Count())
    flow.hop(gen, work)
    flow.hop(work, sink)
    start = time.perf_counter()
    run = flow.run()
    elapsed = time.perf_counter() - start
    if not run.ok or run.rows_in("count") != n:
        raise SystemExit(f"cpu flow failed: {run.error or run.rows_in('count')}")
    return elapsed


def pool_burn(n: int) -> float:
    from multiprocessing import Pool

    start = time.perf_counter()
    with Pool(2) as pool:
        done = sum(1 for _ in pool.imap(burn, ({"i": i} for i in range(n)), chunksize=1000))
    elapsed = time.perf_counter() - start
    assert done == n
    return elapsed


class Timed(NamedTuple):
    """The fastest of a case's runs: wall seconds, and CPU seconds of this process and its children
    (a loaded machine stretches the first; the second shows the work done)."""

    wall: float
    cpu: float


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def best(fn: Any, *args: Any, repeat: int = 3) -> Timed:
    runs = []
    for _ in range(repeat):
        before = _cpu()
        wall = fn(*args)
        runs.append(Timed(wall, _cpu() - before))
    return min(runs)


CASES = ("map2", "cpu", "wait-bound", "real", "pool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cpu-rows", type=int, default=100_000)
    parser.add_argument("--real-rows", type=int, default=340_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--data", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tinyo_bench_flow"),
                        help="where the generated real-data file is kept between runs")
    parser.add_argument("--json", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tinyo_bench_flow.json"))
    args = parser.parse_args()
    n, c, r = args.rows, args.cpu_rows, args.repeat
    cases = set(args.cases.split(","))
    unknown = cases - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; known: {', '.join(CASES)}")
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, int, Timed, Timed | None, float | None]] = []
    """(case, rows, timing, baseline timing, target ratio)."""
    if "map2" in cases:
        loop = best(plain_loop, n, repeat=r)
        rows += [
            ("map2: plain loop (baseline)", n, loop, None, None),
            ("map2: flow, 1 lane", n, best(map2_flow, n, repeat=r), loop, 0.5),
            ("map2: flow, repartitioned 1->2", n, best(map2_flow, n, True, repeat=r), loop, None),
        ]
    if "cpu" in cases:
        burn_loop = best(plain_burn, c, repeat=r)
        burn_p1 = best(cpu_flow, c, 1, True, repeat=r)
        rows += [
            ("cpu: plain loop", c, burn_loop, None, None),
            ("cpu: flow, 1 thread", c, best(cpu_flow, c, 1, False, repeat=r), burn_loop, None),
            ("cpu: flow, 1 process (baseline)", c, burn_p1, None, None),
            ("cpu: flow, 2 processes", c, best(cpu_flow, c, 2, True, repeat=r), burn_p1, 1.6),
        ]
    if "wait-bound" in cases:
        nap_p1 = best(cpu_flow, 10_000, 1, True, nap, repeat=r)
        rows += [
            ("wait-bound: flow, 1 process (baseline)", 10_000, nap_p1, None, None),
            ("wait-bound: flow, 2 processes", 10_000, best(cpu_flow, 10_000, 2, True, nap, repeat=r), nap_p1, None),
        ]
    if "real" in cases:
        data = Path(args.data)
        path, master = real.make_files(data, args.real_rows)
        m = args.real_rows
        base = best(real.plain_loop, path, master, data / "loop.csv", repeat=r)
        rows += [
            ("real: csv.DictReader loop (baseline)", m, base, None, None),
            ("real: flow, 1 instance per step", m, best(real.real_flow, path, master, data / "flow1.csv", repeat=r),
             base, 1.0),
            ("real: flow, 2 lanes in processes", m,
             best(real.real_flow, path, master, data / "flow2.csv", 2, True, repeat=r), base, 1.5),
            ("real: flow, 1 instance per step, columns=", m,
             best(real.real_flow, path, master, data / "flow1c.csv", 1, False, True, repeat=r), base, 1.0),
            ("real: flow, 2 lanes in processes, columns=", m,
             best(real.real_flow, path, master, data / "flow2c.csv", 2, True, True, repeat=r), base, 1.5),
        ]
        for out in ("flow1.csv", "flow2.csv", "flow1c.csv", "flow2c.csv"):
            if not real.same_results(data / "loop.csv", data / out):
                raise SystemExit(f"real: {data / out} differs from the plain loop's {data / 'loop.csv'}")
    if "pool" in cases:
        pool = best(pool_burn, c, repeat=r)
        rows += [
            ("pool: Pool(2).imap chunks of 1000 (baseline)", c, pool, None, None),
            ("pool: flow, 2 processes", c, best(cpu_flow, c, 2, True, repeat=r), pool, 0.9),
        ]
    load_after = os.getloadavg()[0]

    print(f"{os.cpu_count()} CPUs, load average {load_before:.2f} before, {load_after:.2f} after "
          "(ratios of parallel cases need an otherwise idle machine)")
    print(f"{'case':48} {'rows':>7} {'seconds':>8} {'cpu s':>6} {'rows/s':>9} {'ratio':>6} {'cpu ratio':>9} {'target':>7}")
    results = []
    for name, count, timed, baseline, target in rows:
        rate = count / timed.wall
        ratio = baseline.wall / timed.wall if baseline is not None else None
        cpu_ratio = baseline.cpu / timed.cpu if baseline is not None and timed.cpu else None
        ratio_s = f"{ratio:.2f}x" if ratio is not None else ""
        cpu_s = f"{cpu_ratio:.2f}x" if cpu_ratio is not None else ""
        target_s = f">={target}x" if target is not None else ""
        print(f"{name:48} {count:>7} {timed.wall:>8.3f} {timed.cpu:>6.2f} {rate:>9,.0f} {ratio_s:>6} {cpu_s:>9} {target_s:>7}")
        results.append({"case": name, "rows": count, "seconds": round(timed.wall, 4), "cpu_seconds": round(timed.cpu, 4),
                        "rows_per_s": round(rate), "ratio": round(ratio, 3) if ratio is not None else None,
                        "cpu_ratio": round(cpu_ratio, 3) if cpu_ratio is not None else None, "target": target})
    report = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_before": load_before, "load_after": load_after, "results": results}
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
