"""A `tinyo run` burst as a timeline: who has the CPUs while the files come in, and after.

    python benchmarks/bench_timeline.py [--files 10000] [--rounds 1] [--log text|json] [--engine PATH] [--py-spy PATH] [--json PATH]

The burst of ``bench_burst.py`` and ``bench_threads.py`` (``--files`` small files written at once into a
watched tmpfs folder, one trivial op per file, ``tinyo run`` with its text log on a pty or ``--json`` on a
pipe). Every 10 ms a sampler reads the CPU time of the engine's loop thread (``tinyo-engine``), of each
process of the run (``/proc/*/task/*/schedstat``: nanoseconds, where ``/proc/*/stat`` counts 10 ms ticks)
and how many ops are done (the marker file). It prints, per 50 ms from the first file written, each one's
share of a CPU, and then a summary: the loop thread's CPU while the writer wrote and after its last close,
and how much CPU was left unused after the last close (by the run's processes, and the machine's idle time).

What it is for: the lag (last close -> last op done) is what the loop thread still has to do when the
writer stops. While the writer writes, the writer, the watcher and the engine share the CPUs; after the
last close, if the loop thread runs near 100% while the rest of the machine idles, the lag is that
thread's remaining CPU, and only less CPU on that one thread (or work it can hand to a thread that runs
without the interpreter lock) shortens it. No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import bench_burst as bb
import bench_threads as bt

STEP = 0.05
"""Seconds per printed row."""


def _ns(path: str) -> float:
    try:
        with open(path) as fh:
            return int(fh.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _idle() -> float:
    """Seconds all the machine's CPUs have been idle (``/proc/stat``: idle and iowait, in clock ticks)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        return (int(fields[4]) + int(fields[5])) / bt.TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def _process_cpu(pid: int) -> float:
    try:
        return sum(_ns(f"/proc/{pid}/task/{tid}/schedstat") for tid in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0.0


def one_round(engine: Path, n: int, log: str) -> dict[str, Any]:
    samples: list[dict[str, float]] = []
    with bt.warm_engine(engine, log, "bench-timeline-") as (proc, inbox, marker):
        loop = bt.loop_thread(proc.pid, bt.thread_names(proc.pid))
        roles = {pid: role for pid, (_, role) in bt.process_times(proc.pid).items()}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                row = {"t": time.time(), "loop": sum(_ns(f"/proc/{proc.pid}/task/{t}/schedstat") for t in loop),
                       "idle": _idle()}
                for pid, role in roles.items():
                    row[role] = row.get(role, 0.0) + _process_cpu(pid)
                try:
                    row["done"] = marker.stat().st_size  # bytes: a share of the final size, printed
                except OSError:
                    row["done"] = 0.0
                samples.append(row)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = subprocess.run([bb.PY, "-c", bb.WRITER, str(inbox), str(n)], check=True, capture_output=True, text=True)
        written = json.loads(out.stdout)
        done = bb.wait_lines(marker, 4 + n, 180, proc)
        time.sleep(0.03)
        stop.set()
        sampler.join()
        lag = marker.stat().st_mtime_ns / 1e9 - written["last_close"]
    return {"done": done, "lag_s": lag, "first": written["first"], "last_close": written["last_close"],
            "writer_cpu_s": written["cpu"], "samples": samples, "roles": sorted(set(roles.values()))}


def _at(samples: list[dict[str, float]], t: float) -> dict[str, float]:
    """The last sample taken at or before ``t`` (the first one if none was)."""
    best = samples[0]
    for row in samples:
        if row["t"] > t:
            break
        best = row
    return best


def summary(res: dict[str, Any]) -> dict[str, float]:
    samples, first, close = res["samples"], res["first"], res["last_close"]
    # the windows end with the last op done (the samples go on a little past it: the wait for the marker)
    start, mid, end = _at(samples, first), _at(samples, close), _at(samples, close + res["lag_s"])
    keys = ["loop", *res["roles"]]
    span, tail = max(mid["t"] - start["t"], 1e-9), max(end["t"] - mid["t"], 1e-9)
    out = {"lag_s": res["lag_s"], "writer_s": close - first, "writer_cpu_s": res["writer_cpu_s"]}
    for key in keys:
        out[f"{key}_during_s"] = mid.get(key, 0.0) - start.get(key, 0.0)
        out[f"{key}_after_s"] = end.get(key, 0.0) - mid.get(key, 0.0)
    busy_after = sum(out[f"{role}_after_s"] for role in res["roles"])
    out["loop_share_during"] = out["loop_during_s"] / span
    out["loop_share_after"] = out["loop_after_s"] / tail
    out["run_idle_cpus_after"] = (os.cpu_count() or 1) - busy_after / tail
    out["idle_cpus_after"] = (end.get("idle", 0.0) - mid.get("idle", 0.0)) / tail
    return out


def print_timeline(res: dict[str, Any]) -> None:
    samples, first, close = res["samples"], res["first"], res["last_close"]
    roles = res["roles"]
    print(f"{'t, s':>6} {'loop':>6}" + "".join(f" {role[:8]:>8}" for role in roles)
          + f" {'ops done':>9}   (each a share of a CPU, %; ops done: % of the marker's final size)")
    start, final = _at(samples, first)["done"], samples[-1]["done"]
    prev, due = _at(samples, first), first + STEP
    for row in samples:
        if row["t"] < due:
            continue
        dt = row["t"] - prev["t"]

        def pct(key: str, row: dict[str, float] = row, dt: float = dt) -> float:
            return 100 * (row.get(key, 0.0) - prev.get(key, 0.0)) / dt

        mark = "  <- last close" if prev["t"] < close <= row["t"] else ""
        print(f"{row['t'] - first:6.2f} {pct('loop'):6.0f}" + "".join(f" {pct(role):8.0f}" for role in roles)
              + f" {100 * (row['done'] - start) / max(final - start, 1):8.0f}%{mark}")
        prev, due = row, row["t"] + STEP


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the timeline of the median-lag round is printed")
    parser.add_argument("--log", choices=("text", "json"), default="text")
    parser.add_argument("--engine", default=str(bb.ENGINE), help="the engine/ folder to run (this checkout's)")
    parser.add_argument("--py-spy", default=None, help="the py-spy command that names the threads")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.py_spy:
        bt.SPY[0] = args.py_spy
    engine = Path(args.engine)
    rounds = []
    for i in range(args.rounds):
        res = one_round(engine, args.files, args.log)
        print(f"round {i + 1}: lag {res['lag_s']:.2f} s" + ("" if res["done"] else " (NOT every op done)"))
        rounds.append(res)
    rounds.sort(key=lambda r: r["lag_s"])
    middle = rounds[len(rounds) // 2]
    print_timeline(middle)
    sums = [summary(r) for r in rounds]
    print(f"\nsummary, median of {len(sums)} round(s), {args.files:,} files, load average {os.getloadavg()[0]:.1f}")
    labels = [("lag (last close -> last op done), s", "lag_s"), ("writer, first file -> last close, s", "writer_s"),
              ("writer's own CPU, s", "writer_cpu_s"), ("loop thread's CPU while the writer wrote, s", "loop_during_s"),
              ("  its share of a CPU", "loop_share_during"), ("loop thread's CPU after the last close, s", "loop_after_s"),
              ("  its share of a CPU", "loop_share_after"),
              ("CPUs the run's processes left unused after the last close", "run_idle_cpus_after"),
              ("  the machine's CPUs idle then (/proc/stat, 10 ms ticks)", "idle_cpus_after")]
    for role in middle["roles"]:
        labels.append((f"{role} process(es), CPU after the last close, s", f"{role}_after_s"))
    for label, key in labels:
        print(f"  {label:<52}{statistics.median(s[key] for s in sums):8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summaries": sums}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
