"""A process worker's own cost per task: one real worker process fed trivial tasks as the pool feeds it.

    python benchmarks/bench_worker.py [--tasks 10000] [--batches 2,24] [--rounds 3] [--baseline CHECKOUT] [--json PATH]

A worker (``worker_launch.popen_worker``, the recipe's op does nothing) is sent batches of ``B`` tasks in
one pipe message each, at most two batches in flight (as the pool's prefetch keeps a worker fed: a chain or
a slow loop sends one or two tasks at a time, a burst a few dozen); the report messages are read back.
Per task: the worker process's CPU (user + system, ``/proc``, 10 ms ticks), the wall time, and the tasks
per report message. ``--baseline CHECKOUT``: another checkout's worker (its ``engine/`` first on the path,
spoken to in its own wire format) measured the same way, rounds interleaved. No assertions: a table of
medians, and with ``--json`` every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")
RECIPE = "from tinyo import TinyOConfig\n\ndef noop(context):\n    return None\n\nconfig = TinyOConfig(sql_conn=':memory:', dirs=[])\n"


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def measure(tasks: int, batch: int) -> dict[str, float]:
    """In this process (``tinyo`` as found on the path): one worker, ``tasks`` tasks in batches of ``batch``."""
    from tinyo.model import Config
    from tinyo.worker import Task
    from tinyo.worker_launch import Worker, popen_worker

    from tinyo import worker as worker_module

    # a worker of before the ``workers`` branch runs ``worker.process_main`` and reads the tasks' full form; one
    # of before the ``workers2`` branch is sent (recipe path, ops) as a task's head, since then its ops alone
    heads = not hasattr(worker_module, "process_main")
    ops_only = hasattr(worker_module, "run_ops")
    work = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    recipe = work / "recipe.py"
    recipe.write_text(RECIPE)
    worker = Worker("w1")
    popen_worker(worker, str(recipe))
    while not any(kind == "ready" for kind, _, _ in worker.result_conn.recv()):
        pass
    ops = (("<recipe>:noop", Config({})),)
    sent_head = None
    run_id = done = inflight = messages = 0
    cpu0, wall0 = _ticks(worker.pid), time.perf_counter()
    while done < tasks:
        while inflight < 2 * batch and run_id < tasks:
            wires = []
            for _ in range(min(batch, tasks - run_id)):
                run_id += 1
                task = Task(run_id, f"des{run_id}", 1, str(recipe), ops, frozenset(), frozenset([f"t{run_id}"]))
                if heads:
                    head = task.ops if ops_only else (task.recipe_path, task.ops)
                    head, sent_head = (None, sent_head) if head == sent_head else (head, head)
                    wires.append((task.run_id, task.des_id, task.attempt, task.deps, task.targs, head))
                else:
                    wires.append(task.wire())
            worker.task_conn.send(("run", wires))
            inflight += len(wires)
        reports = worker.result_conn.recv()
        messages += 1
        finished = sum(1 for kind, _, _ in reports if kind in ("done", "ran"))  # ran: a start and its outcome
        done += finished
        inflight -= finished
    cpu = (_ticks(worker.pid) - cpu0) / TICK
    wall = time.perf_counter() - wall0
    worker.task_conn.send(("stop",))
    worker.process.wait(10)
    return {"cpu_us": 1e6 * cpu / tasks, "wall_us": 1e6 * wall / tasks, "tasks_per_report": tasks / messages}


def run_in(checkout: Path, tasks: int, batch: int) -> dict[str, float]:
    """``measure`` in a fresh interpreter with ``checkout``'s engine first on the path."""
    env = dict(os.environ, PYTHONPATH=str(checkout / "engine"))
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import bench_worker; "
            f"print(json.dumps(bench_worker.measure({tasks}, {batch})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batches", default="2,24", help="tasks per pipe message, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="another checkout (its engine/ is measured beside)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    sides = {"tinyo": HERE.parent}
    if args.baseline:
        sides["baseline"] = Path(args.baseline).resolve()
    batches = [int(b) for b in args.batches.split(",")]
    samples: dict[str, dict[int, list[dict[str, float]]]] = {side: {b: [] for b in batches} for side in sides}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for batch in batches:
            for side, checkout in sides.items():
                samples[side][batch].append(run_in(checkout, args.tasks, batch))
    print(f"one worker, {args.tasks:,} trivial tasks, medians of {args.rounds} rounds "
          f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")
    print(f"{'tasks per message':<20}{'figure':<22}" + "".join(f"{side:>12}" for side in sides)
          + ("       ratio" if args.baseline else ""))
    for batch in batches:
        for key, label in (("cpu_us", "worker CPU, us/task"), ("wall_us", "wall, us/task"),
                           ("tasks_per_report", "tasks per report")):
            values = [statistics.median(s[key] for s in samples[side][batch]) for side in sides]
            ratio = f"{values[0] / values[1]:>12.2f}" if args.baseline and values[1] else ""
            print(f"{batch:<20}{label:<22}" + "".join(f"{v:>12.1f}" for v in values) + ratio)
    if args.json:
        Path(args.json).write_text(json.dumps({"load_before": load, "samples": samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
