"""The engine's loop alone, per link of a chain: no threads, no worker processes, no watcher.

    python benchmarks/bench_link_loop.py [--links 2000] [--rounds 5] [--baseline PATH] [--callgrind] [--json PATH]

``bench_loop.py``'s harness for a chain instead of a burst: a ``Loop`` wired as the engine wires it, on a real
state file on tmpfs, never started, runs the peers case's chain recipe (``bench_burst.PEER_RECIPE``, one event
that emits ``--links`` DES, each reading what the one before writes). A pool stand-in takes the one task each
cycle hands over and answers it at once, start and outcome in one report, as a worker does for a fast op.
Measured, from the first outcome to the last: the loop's own work per link (the report taken in, the run
book, readiness, dispatch, the commit, the facts), as ``time.process_time`` gives it, or with ``--callgrind``
the instructions per link (they move by well under 1% between runs of the same code; about 20 s a round of
1,000 links). What it leaves out is what ``bench_link.py`` measures beside it: the pipes, the worker, the
wake-ups.

``--baseline PATH``: another checkout (e.g. main's) measured the same way, rounds interleaved, each in a
process of its own with that checkout's ``engine/`` first on the path.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_loop import AnsweringPool, close_checked, compare, wired_loop  # noqa: E402

TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None
SKIP = 20
"""Links left out at the start (the first cycles warm the statement cache and the interpreter)."""


class ChainPool(AnsweringPool):
    """Takes the task a cycle hands over; ``answer`` reports it started and done in one report."""

    def answer(self) -> None:
        from tinyo.messages import WorkerReports
        tasks, self.inflight = self.inflight, []
        now = time.time()
        for task in tasks:
            self.loop.report(WorkerReports("w1", [("start", task.run_id, ("w1", now)),
                                                  ("done", task.run_id, (True, None, None, None, 0.0001))]))
        self.done += len(tasks)


def one_round(n: int, counted: bool) -> dict[str, Any]:
    """The chain through a fresh loop, in this process (see the module's docstring)."""
    from bench_burst import PEER_RECIPE

    from tinyo.clock import SystemClock

    work = Path(tempfile.mkdtemp(prefix="bench-link-loop-", dir=TMPFS))
    try:
        inbox = work / "in"
        inbox.mkdir()
        (inbox / "go.dat").write_text("go")
        (work / "recipe.py").write_text(PEER_RECIPE.format(n=n, shape="chain", db=str(work / "state.db"),
                                                           inbox=str(inbox)))
        loop, store, pool = wired_loop(work, SystemClock(), ChainPool)
        loop.inflow.queue.put(("file", str(inbox / "go.dat"), None))
        cycles, until = 0, time.monotonic() + 30
        while not pool.inflight:  # the event taken in (after its settle window), its chain registered, the first
            loop.cycle()          # link handed over
            cycles += 1
            time.sleep(0.001)
            if time.monotonic() > until:
                raise RuntimeError("the chain's first link was never handed over")
        gc.collect()
        t0 = 0.0
        while pool.done < n:
            if pool.done == SKIP:
                if counted:
                    subprocess.run(["callgrind_control", "--zero", str(os.getpid())], capture_output=True, check=False)
                t0 = time.process_time()
            pool.answer()
            loop.cycle()
            cycles += 1
            if cycles > 10 * n:
                raise RuntimeError("the loop stopped making progress")
        cpu = time.process_time() - t0
        if counted:
            subprocess.run(["callgrind_control", "--dump=loop", str(os.getpid())], capture_output=True, check=False)
        close_checked(store, n)
        return {"cpu_us": cpu * 1e6 / (n - SKIP), "cycles": cycles}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    return compare(Path(__file__), "links", "link", (2000, 500), one_round, lambda n: n - SKIP)

if __name__ == "__main__":
    sys.exit(main())
