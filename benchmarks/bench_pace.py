"""What a `tinyo start` engine spends on the same burst arriving at different paces.

    python benchmarks/bench_pace.py [--files 10000] [--rounds 3] [--paces fast,slow,hogs] [--spread 6] [--json PATH]

The burst of ``bench_service.py --only burst`` (files written into the watched folder of an engine started by
``tinyo start``, one trivial op each, nobody attached), at three paces, rounds interleaved:

- ``fast``: the writer unthrottled (as ``bench_service.py``);
- ``slow``: the same files spread evenly over ``--spread`` seconds;
- ``hogs``: unthrottled, with two ``while True: pass`` processes running for the burst (two CPU-bound
  neighbours, as two followers are on a 2-CPU machine).

Per burst: first file -> idle, the engine process's CPU, each engine thread's CPU and voluntary switches
(its wake-ups; named by ``py-spy dump`` when at hand), and the loop's cycles, commits, generator batches and
their sizes, counted by ``pace_count/sitecustomize.py`` (loaded in the engine through ``PYTHONPATH``). No
assertions: a table of medians, and with ``--json`` every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_service as bs  # noqa: E402
from bench_threads import SPY, thread_names, thread_times  # noqa: E402



def burst(n: int, pace: str, spread: float) -> dict[str, Any]:
    hogs: list[subprocess.Popen[bytes]] = []
    counts = Path(tempfile.mkdtemp(prefix="tinyo-bench-pace-counts-")) / "counts.json"
    extra = {"TINYO_PACE_COUNT": str(counts),
             "PYTHONPATH": os.pathsep.join([str(HERE / "pace_count"), bs.env()["PYTHONPATH"]])}
    try:
        with bs.started_engine("tinyo-bench-pace-", extra) as engine:
            inbox, control = engine.inbox, engine.control
            time.sleep(0.5)
            pid = control.pid
            names = thread_names(pid) if Path(SPY[0]).exists() else {}
            count0 = json.loads(counts.read_text())
            threads0 = thread_times(pid)
            cpu0 = bs._cpu(pid)
            if pace == "hogs":
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            first = time.time()
            step = spread / n if pace == "slow" else 0.0
            for i in range(n):
                with open(inbox / f"f{i:06d}", "w") as fh:
                    fh.write("x")
                if step and i % 5 == 4:
                    delay = first + (i + 1) * step - time.time()
                    if delay > 0:
                        time.sleep(delay)
            closed = time.time()
            while not engine.settled(bs.WARM + n):
                time.sleep(0.1)
            done = time.time()
            for hog in hogs:
                hog.kill()
            cpu = bs._cpu(pid) - cpu0
            time.sleep(0.3)  # the counter file is rewritten every 0.2 s
            count1 = json.loads(counts.read_text())
            threads: dict[str, list[float]] = {}
            for tid, (used, switches) in thread_times(pid).items():
                name = names.get(tid, "(not named)")
                u0, s0 = threads0.get(tid, (0.0, 0))
                slot = threads.setdefault(name, [0.0, 0])
                slot[0] += used - u0
                slot[1] += switches - s0
            control.close()
            sizes = {k: v - count0["sizes"].get(k, 0) for k, v in count1["sizes"].items()}
            return {"pace": pace, "write_s": closed - first, "total_s": done - first, "cpu_s": cpu,
                    **{k: count1[k] - count0.get(k, 0) for k in count1 if k != "sizes"},
                    "sizes": {k: v for k, v in sizes.items() if v}, "threads": threads}
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        shutil.rmtree(counts.parent, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paces", default="fast,slow,hogs")
    parser.add_argument("--spread", type=float, default=6.0, help="slow: seconds over which the files are written")
    parser.add_argument("--json", help="Write every sample here.")
    args = parser.parse_args()
    paces = args.paces.split(",")
    samples: dict[str, list[dict[str, Any]]] = {p: [] for p in paces}
    for r in range(args.rounds):
        for pace in paces:
            s = burst(args.files, pace, args.spread)
            samples[pace].append(s)
            print(f"round {r} {pace}: total {s['total_s']:.2f} s, cpu {s['cpu_s']:.2f} s, cycles {s['cycles']}, "
                  f"commits {s['commits']}, batches {s['batches']} ({s['batch_events']} events), "
                  f"inbox items {s['inbox_items']}, stores {s['stores']}; cycles with a batch {s['cycles_batch']}, "
                  f"reports only {s['cycles_inbox_only']}, intake only {s['cycles_store_only']}, "
                  f"other {s['cycles_other']} (of which holding the intake {s.get('held_cycles', 0)}), "
                  f"lingers {s.get('lingers', 0)} (met {s.get('lingers_met', 0)}), "
                  f"report cycles woken by {', '.join(f'{k[4:]} {v}' for k, v in s.items() if k.startswith('why_'))}, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    med = statistics.median
    print(f"\nmedians, {args.files} files (us per file for CPU):")
    for pace in paces:
        ss = samples[pace]
        print(f"{pace:5}: total {med(s['total_s'] for s in ss):.2f} s, engine CPU {med(s['cpu_s'] for s in ss):.2f} s "
              f"({med(s['cpu_s'] for s in ss) / args.files * 1e6:.0f} us/file), cycles {med(s['cycles'] for s in ss)}, "
              f"commits {med(s['commits'] for s in ss)}, batches {med(s['batches'] for s in ss)}, "
              f"inbox items {med(s['inbox_items'] for s in ss)}")
        if "cpu_batch" in ss[0]:  # the loop thread's CPU by the kind of cycle, and in commits (of any cycle)
            kinds = ("batch", "inbox_only", "store_only", "other")
            print("       loop CPU by cycle: " + ", ".join(
                f"{k} {med(s['cpu_' + k] for s in ss):.2f} s ({med(s['cycles_' + k] for s in ss):.0f})" for k in kinds)
                + f"; in commits {med(s['cpu_commit'] for s in ss):.2f} s")
        names = sorted({n for s in ss for n in s["threads"]})
        for name in names:
            cpu = med(s["threads"].get(name, [0, 0])[0] for s in ss)
            sw = med(s["threads"].get(name, [0, 0])[1] for s in ss)
            if cpu >= 0.01 or sw >= 50:
                print(f"       {name:40} {cpu:6.2f} s  {sw:7.0f} wake-ups")
        sizes: dict[str, int] = {}
        for s in ss:
            for k, v in s["sizes"].items():
                sizes[k] = sizes.get(k, 0) + v
        top = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
        print(f"       batch sizes (all rounds, most common): {', '.join(f'{k}x{v}' for k, v in top)}")
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
