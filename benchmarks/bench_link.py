"""Where the time of one chain link goes: a profile of the per-link path, beside a bare pool's round trip.

    python benchmarks/bench_link.py [--links 2000] [--json PATH]

Runs ``tinyo run recipe.py --stop-after 1`` in this process (the headless CLI's own code, its text log
written to /dev/null) on a recipe whose one event emits a chain of N DES, each reading what the previous
one writes (trivial ops, two worker processes, state on tmpfs), and stamps each run at four points:
the engine hands its task to the pool (``submit``), the pool's reader thread has the worker's report
(start and outcome), the loop thread takes the outcome in, and the loop hands the next link's task over.
Medians over the links (the first 50 and the last 10 left out) of:

- ``submit``: the pool's submit call (pickle, pipe write);
- ``worker round trip``: submit returned -> the report read back (the pipe both ways, the worker's
  threads, the op);
- ``report -> loop``: the reader thread -> the loop thread taking it in;
- ``loop``: the outcome taken in -> the next link submitted (run book, readiness, dispatch, the commit);
- ``per link``: submit to next submit.

Baseline, same run: ``ProcessPoolExecutor(2)``, N sequential ``submit(noop).result()`` round trips.
It never asserts; it prints a table (and, with ``--json``, every figure).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from bench_burst import PEER_RECIPE  # noqa: E402 - beside this file

RECIPE = PEER_RECIPE
"""The peers case's recipe of bench_burst.py, as a chain (``shape='chain'``)."""


def noop() -> None:
    return None


def bare_round_trip(n: int) -> float:
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        for _ in range(20):
            pool.submit(noop).result()
        t0 = time.perf_counter()
        for _ in range(n):
            pool.submit(noop).result()
        return (time.perf_counter() - t0) / n


def profile_chain(n: int) -> dict[str, float]:
    from tinyo.headless import run_headless
    from tinyo.core.runbook import RunBook
    from tinyo.executors import process

    stamps: dict[int, dict[str, float]] = defaultdict(dict)
    clock = time.perf_counter
    submit, account, on_message = process.ProcessExecutor.submit, process.ProcessExecutor._account, RunBook.on_message

    def timed_submit(self, tasks):  # noqa: ANN001, ANN202
        for task in tasks:
            stamps[task.run_id]["submit"] = clock()
        submit(self, tasks)
        for task in tasks:
            stamps[task.run_id]["submitted"] = clock()

    def timed_account(self, worker, batch):  # noqa: ANN001, ANN202
        now = clock()
        for kind, run_id, _ in batch:
            stamps[run_id].setdefault(f"read {kind}", now)
        return account(self, worker, batch)

    def timed_on_message(self, worker, kind, run_id, payload):  # noqa: ANN001, ANN202
        stamps[run_id].setdefault(f"loop {kind}", clock())
        return on_message(self, worker, kind, run_id, payload)

    process.ProcessExecutor.submit = timed_submit
    process.ProcessExecutor._account = timed_account
    RunBook.on_message = timed_on_message
    work = Path(tempfile.mkdtemp(prefix="bench-link-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    cwd = os.getcwd()
    try:
        (work / "in").mkdir()
        (work / "in" / "go.dat").write_text("go")
        (work / "recipe.py").write_text(RECIPE.format(n=n, shape="chain", db=str(work / "state.db"), inbox=str(work / "in")))
        os.chdir(work)
        with redirect_stdout(io.StringIO()):
            code = run_headless(str(work / "recipe.py"), stop_after=1)
        if code != 0:
            raise RuntimeError(f"tinyo run exited {code}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
        process.ProcessExecutor.submit, process.ProcessExecutor._account, RunBook.on_message = (
            submit, account, on_message)
    stamps.pop(0, None)  # the workers' "ready" (run id 0)
    if len(stamps) != n:
        raise RuntimeError(f"{len(stamps)} runs stamped, wanted {n}")
    ids = sorted(stamps)[50:-10]

    def span(a: str, b: str) -> float:
        return statistics.median(stamps[i][b] - stamps[i][a] for i in ids)

    return {
        "submit_s": span("submit", "submitted"),
        "worker_round_trip_s": span("submitted", "read done"),
        "report_to_loop_s": span("read done", "loop done"),
        "loop_s": statistics.median(stamps[i + 1]["submit"] - stamps[i]["loop done"] for i in ids),
        "per_link_s": statistics.median(stamps[i + 1]["submit"] - stamps[i]["submit"] for i in ids),
        "start_and_done_in_one_message": sum(stamps[i]["read start"] == stamps[i]["read done"] for i in ids) / len(ids),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    bare = bare_round_trip(args.links)
    res = profile_chain(args.links)
    res["bare_round_trip_s"] = bare
    res["load_before"] = load
    res["load_after"] = os.getloadavg()[0]
    print(f"{args.links}-link chain, medians per link (load average {load:.1f} before, {res['load_after']:.1f} after)")
    rows = [("submit (pickle, pipe write)", "submit_s"), ("worker round trip", "worker_round_trip_s"),
            ("report -> loop", "report_to_loop_s"), ("loop: outcome -> next submit", "loop_s"),
            ("per link", "per_link_s")]
    for label, key in rows:
        print(f"  {label:<30}{1e6 * res[key]:>8.0f} us")
    print(f"  {'bare pool round trip (baseline)':<30}{1e6 * bare:>8.0f} us   per link / baseline "
          f"{res['per_link_s'] / bare:.1f}x")
    print(f"  start and outcome in one message: {100 * res['start_and_done_in_one_message']:.0f}% of links")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
