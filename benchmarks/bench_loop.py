"""The engine's loop alone, per file of a burst: no threads, no worker processes, no watcher.

    python benchmarks/bench_loop.py [--files 10000] [--rounds 5] [--baseline PATH] [--callgrind] [--json PATH]

A ``Loop`` wired as the engine wires it, on a real state file on tmpfs, never started: ``--files`` file
events (small files written beforehand) go through its intake queue, and its cycles are run one after the
other on this thread. A pool stand-in takes the tasks each cycle hands over (as many as the process pool's
two workers take while ops are fast) and answers each of them at once, start and outcome, in batches of
eight runs per worker report (the burst's recipe: one DES per file, one trivial op, one target). What is
measured is the loop's own work per file, every cycle of it (intake, generators, registration, readiness,
dispatch, reports, rows, commits, facts), as ``time.process_time`` gives it: the loop thread's share of a
``tinyo run`` burst, without the waits. The facts the loop publishes are counted per file (and, outside
callgrind, per kind: the round's JSON has them).

The machine this runs on is shared and noisy (+-30% between runs), so ``--callgrind`` runs each round under
valgrind's callgrind instead, counted from the first cycle to the last (``callgrind_control`` zeroes and
dumps the counts around them): instructions per file, which move by well under 1% between runs of the same
code. About a minute per round of 1,000 files.

``--baseline PATH``: another checkout (e.g. an export of main) measured the same way, rounds interleaved,
each in a process of its own with that checkout's ``engine/`` first on the path.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from operator import attrgetter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None

RECIPE = '''
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def mark(context):
    return None


@meta_task(root=True)
def on_file(event):
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["done " + event]), ops=[(mark, Config({}))])])


config = TinyOConfig(sql_conn=DB_PATH, dirs=[], execution=Execution.INLINE)
'''

SLOTS, PER_REPORT = 48, 8
"""Tasks the pool stand-in holds (two workers of ``executors.prefetch.PREFETCH``), runs per worker report."""


class AnsweringPool:
    """Takes the tasks a cycle hands over; ``answer`` reports each started and done, as a worker would."""

    def __init__(self, loop: Any) -> None:
        self.loop, self.inflight, self.done = loop, [], 0

    def start(self) -> None:
        pass

    def free_slots(self) -> int:
        return SLOTS - len(self.inflight)

    def submit(self, tasks: list[Any]) -> None:
        self.inflight.extend(tasks)

    def running(self) -> dict[int, float]:
        return {}

    def cancel(self, run_id: int, cause: str = "cancel") -> bool:
        return False

    def workers(self) -> list[Any]:
        return []

    def shutdown(self, grace: float) -> list[int]:
        return []

    def answer(self) -> None:
        from tinyo.messages import WorkerReports
        tasks, self.inflight = self.inflight, []
        now = time.time()
        for i in range(0, len(tasks), PER_REPORT):
            messages = []
            for task in tasks[i:i + PER_REPORT]:
                messages.append(("start", task.run_id, ("w1", now)))
                messages.append(("done", task.run_id, (True, None, None, None, 0.0001)))
            self.loop.inbox.put(WorkerReports("w1", messages))
        self.done += len(tasks)


def wired_loop(work: Path, clock: Any, pool_class: type[AnsweringPool]) -> tuple[Any, Any, AnsweringPool]:
    """A ``Loop`` on ``work``'s recipe.py and state.db, wired as the engine wires it and never started, a
    ``pool_class`` standing in for its pool; its first commit made. Returns the loop, its store, the pool."""
    from tinyo import events as ev
    from tinyo.core.loop import Loop
    from tinyo.model import Execution
    from tinyo.recipe import OpResolver, load_recipe
    from tinyo.store import Store

    recipe = load_recipe(work / "recipe.py")
    store = Store(str(work / "state.db"))
    loop = Loop(recipe, store, ev.Bus(), clock, OpResolver(recipe.module, recipe.path), Execution.INLINE, 1, None,
                watch=False)
    pool = pool_class(loop)
    loop.executor = loop.runbook.executor = pool  # type: ignore[assignment]
    loop._commit_and_publish([])
    return loop, store, pool


def close_checked(store: Any, n: int) -> None:
    """Close the round's store, which must hold ``n`` runs ok (else the round measured something else)."""
    ok = store.count("runs", "WHERE status = 'ok'")
    store.close()
    if ok != n:
        raise RuntimeError(f"{ok} runs ok, wanted {n}")


def one_round(n: int, counted: bool) -> dict[str, Any]:
    """The burst through a fresh loop, in this process (see the module's docstring)."""
    from tinyo.clock import ManualClock

    work = Path(tempfile.mkdtemp(prefix="bench-loop-", dir=TMPFS))
    try:
        inbox = work / "in"
        inbox.mkdir()
        files = []
        for i in range(n):
            path = inbox / f"f{i:06d}.dat"
            path.write_text(str(i))
            files.append(str(path))
        (work / "recipe.py").write_text(RECIPE.replace("DB_PATH", repr(str(work / "state.db"))))
        loop, store, pool = wired_loop(work, ManualClock(), AnsweringPool)
        told: list[int] = [0]  # facts published (one call a cycle: nothing per fact is added to what is measured)
        kinds: Counter[str] = Counter()
        loop.outbox.bus.subscribe_batches(lambda batch: told.__setitem__(0, told[0] + len(batch)))
        if not counted:  # and by kind, where instructions are not counted
            loop.outbox.bus.subscribe_batches(lambda batch: kinds.update(map(attrgetter("kind"), batch)))
        intake, fed, cycles = loop.inflow.queue, 0, 0
        gc.collect()
        if counted:
            subprocess.run(["callgrind_control", "--zero", str(os.getpid())], capture_output=True, check=False)
        t0 = time.process_time()
        while pool.done < n:
            while fed < n and intake.qsize() < 2000:  # as a watcher hands files over: in batches, bounded
                intake.put(("file", files[fed], None))
                fed += 1
                if fed % 500 == 0:
                    break
            loop.cycle()
            cycles += 1
            pool.answer()
            if cycles > 50 * n:
                raise RuntimeError("the loop stopped making progress")
        loop.cycle()
        cpu = time.process_time() - t0
        if counted:
            subprocess.run(["callgrind_control", "--dump=loop", str(os.getpid())], capture_output=True, check=False)
        close_checked(store, n)
        return {"cpu_us": cpu * 1e6 / n, "cycles": cycles, "facts_per_file": told[0] / n,
                "kinds_per_file": {kind: count / n for kind, count in sorted(kinds.items())}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_case(engine: Path, n: int, callgrind: bool, script: Path = Path(__file__), counted_per: int = 0
             ) -> dict[str, Any]:
    """One round of ``script`` (this one, or another with the same ``--one N [--counted]`` form) in a process of
    its own, with ``engine`` first on the path; under callgrind if asked, its instructions divided by
    ``counted_per`` (default ``n``: what the counted part of the round ran)."""
    env = {**os.environ, "PYTHONPATH": str(engine)}
    cmd = [sys.executable, str(script.resolve()), "--one", str(n)]
    if not callgrind:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        return json.loads(out.splitlines()[-1])
    outdir = Path(tempfile.mkdtemp(prefix="bench-loop-cg-"))
    try:
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outdir}/cg.%p"]
        out = subprocess.run([*valgrind, *cmd, "--counted"], env=env, capture_output=True, text=True, check=True).stdout
        res = json.loads(out.splitlines()[-1])
        dumps = [p for p in outdir.iterdir() if p.name.endswith(".1")]
        text = dumps[0].read_text(errors="replace") if dumps else ""
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if total is None:
            raise RuntimeError("callgrind wrote no counts (is callgrind_control on the path?)")
        res["instructions"] = int(total.group(1)) / (counted_per or n)
        return res
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def compare(script: Path, what: str, per: str, default_n: tuple[int, int], one_round: Any, counted_per: Any = None
            ) -> int:
    """The command line of this benchmark and of those built on its harness: ``--one`` runs a round of
    ``one_round(n, counted)`` in this process; otherwise rounds of ``script`` for this checkout (and
    ``--baseline``'s), interleaved, each in a process of its own, and a table of medians per ``per``."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(f"--{what}", dest="n", type=int, default=None,
                        help=f"{default_n[0]:,} ({default_n[1]:,} with --callgrind)")
    parser.add_argument("--rounds", type=int, default=None, help="5 (2 with --callgrind)")
    parser.add_argument("--baseline", default=None, help="another checkout (its engine/ is measured beside)")
    parser.add_argument("--callgrind", action="store_true", help=f"instructions per {per}, under valgrind")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--counted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # a round, in its own process
        print(json.dumps(one_round(args.one, args.counted)))
        return 0
    n = args.n or default_n[1 if args.callgrind else 0]
    rounds = args.rounds or (2 if args.callgrind else 5)
    cases = {"tinyo": HERE.parent / "engine"}
    if args.baseline:
        cases["baseline"] = Path(args.baseline).resolve() / "engine"
    res: dict[str, Any] = {what: n, "rounds": rounds, "callgrind": args.callgrind, "load_before": os.getloadavg(),
                           "samples": {case: [] for case in cases}}
    for _ in range(rounds):
        for case, engine in cases.items():  # interleaved: the machine's load falls on every case alike
            res["samples"][case].append(run_case(engine, n, args.callgrind, script,
                                                 counted_per(n) if counted_per else 0))
    res["load_after"] = os.getloadavg()
    key, unit = ("instructions", "instructions") if args.callgrind else ("cpu_us", "us")
    print(f"the loop alone, {n:,} {what}, {rounds} rounds interleaved (load {res['load_before'][0]:.1f} before, "
          f"{res['load_after'][0]:.1f} after); per {per}, {unit}:")
    medians = {}
    for case, samples in res["samples"].items():
        values = [s[key] for s in samples]
        medians[case] = statistics.median(values)
        facts = f"   facts {samples[0]['facts_per_file']:.2f}" if "facts_per_file" in samples[0] else ""
        print(f"  {case:10s} median {medians[case]:12,.1f}   min {min(values):12,.1f}   max {max(values):12,.1f}   "
              f"cycles {samples[0]['cycles']}{facts}")
    if "baseline" in medians:
        print(f"  ratio (tinyo / baseline, medians): {medians['tinyo'] / medians['baseline']:.3f}")
    res["medians"] = medians
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def main() -> int:
    return compare(Path(__file__), "files", "file", (10_000, 1000), one_round)

if __name__ == "__main__":
    sys.exit(main())
