"""Where the time of one chain link goes: a profile of the per-link path, beside a bare pool's round trip.

    python benchmarks/bench_link.py [--links 2000] [--json PATH]

Runs ``tinyo run recipe.py --stop-after 1`` in this process (the headless CLI's own code, its text log
written to /dev/null) on a recipe whose one event emits a chain of N DES, each reading what the previous
one writes (trivial ops, two worker processes, state on tmpfs), and stamps each run at four points:
the engine hands its task to the pool (``submit``), the worker's report (start and outcome) is read from
its pipe (by the loop thread while it waits; before the ``workers`` branch, by the pool's reader thread),
the loop takes the outcome in, and the loop hands the next link's task over.
Medians over the links (the first 50 and the last 10 left out) of:

- ``submit``: the pool's submit call (pickle, pipe write);
- ``worker round trip``: submit returned -> the report read back (the pipe both ways, the worker, the op,
  and the reading thread's wake-up);
- ``report -> loop``: the report read -> the loop taking it in (before the ``workers`` branch: the hand-over
  from the pool's reader thread to the loop thread);
- ``loop``: the outcome taken in -> the next link submitted (run book, readiness, dispatch, the commit);
- ``per link``: submit to next submit;
- the CPU per link (user + system) of the engine's process (all its threads) and of the worker processes,
  over the same links (less moved by a loaded machine than the wall figures).

Baseline, same run: ``ProcessPoolExecutor(2)``, N sequential ``submit(noop).result()`` round trips.

``--parts`` runs the chain once more and says where the loop's share goes: the loop thread's CPU time
(``time.thread_time``) in each part of the cycle and of its wait (where it reads the workers' reports), the median call times its calls per link (parts nest: a
part's figure includes the parts called inside it; the one cycle that registers the whole chain is an
outlier the median leaves out), the SQLite statements run (a trace callback on the engine's connection: an
``executemany`` counts once per row) and the bus facts, by kind, per DES while the chain is registered
and per link after. The wrappers cost a little (about 1 us per call).
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


TICK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int | None) -> int:
    """A process's CPU (user + system) so far, in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def profile_chain(n: int) -> dict[str, float]:
    from tinyo.headless import run_headless
    from tinyo.core.runbook import RunBook
    from tinyo.executors import process

    stamps: dict[int, dict[str, float]] = defaultdict(dict)
    clock = time.perf_counter
    submit, account, on_message = process.ProcessExecutor.submit, process.ProcessExecutor._account, RunBook.on_message

    cpu_marks: dict[int, tuple[float, float]] = {}

    def timed_submit(self, tasks):  # noqa: ANN001, ANN202
        for task in tasks:
            stamps[task.run_id]["submit"] = clock()
            if task.run_id in (51, n - 9):  # the span the medians are taken over
                cpu_marks[task.run_id] = (time.process_time(), sum(_ticks(w.pid) for w in self._workers))
        submit(self, tasks)
        for task in tasks:
            stamps[task.run_id]["submitted"] = clock()

    def timed_account(self, worker, batch):  # noqa: ANN001, ANN202
        now = clock()
        for kind, run_id, _ in batch:
            for read in (("start", "done") if kind == "ran" else (kind,)):  # ran: a start and its outcome in one
                stamps[run_id].setdefault(f"read {read}", now)
        return account(self, worker, batch)

    def timed_on_message(self, worker, kind, run_id, payload):  # noqa: ANN001, ANN202
        stamps[run_id].setdefault(f"loop {kind}", clock())
        return on_message(self, worker, kind, run_id, payload)

    # a batch of reports takes a start and an outcome in through these (``on_message`` for the other kinds)
    started, done = RunBook.__dict__.get("_started"), RunBook.__dict__.get("_done")

    def timed_started(self, worker, run, *rest):  # noqa: ANN001, ANN002, ANN202
        stamps[run.run_id].setdefault("loop start", clock())
        return started(self, worker, run, *rest)

    def timed_done(self, worker, run, *rest):  # noqa: ANN001, ANN002, ANN202
        stamps[run.run_id].setdefault("loop done", clock())
        return done(self, worker, run, *rest)

    # a report ending ok goes straight to ``finish_ok`` (no ``_done``): the chain's links all do
    finish_ok = RunBook.finish_ok

    def timed_finish_ok(self, run, *rest):  # noqa: ANN001, ANN002, ANN202
        stamps[run.run_id].setdefault("loop done", clock())
        return finish_ok(self, run, *rest)

    process.ProcessExecutor.submit = timed_submit
    process.ProcessExecutor._account = timed_account
    RunBook.on_message = timed_on_message
    if started is not None and done is not None:
        RunBook._started, RunBook._done = timed_started, timed_done
    RunBook.finish_ok = timed_finish_ok
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
        if started is not None and done is not None:
            RunBook._started, RunBook._done = started, done
        RunBook.finish_ok = finish_ok
    stamps.pop(0, None)  # the workers' "ready" (run id 0)
    if len(stamps) != n:
        raise RuntimeError(f"{len(stamps)} runs stamped, wanted {n}")
    ids = sorted(stamps)[50:-10]

    def span(a: str, b: str) -> float:
        return statistics.median(stamps[i][b] - stamps[i][a] for i in ids)

    (engine0, workers0), (engine1, workers1) = cpu_marks[51], cpu_marks[n - 9]
    links = n - 9 - 51
    return {
        "engine_cpu_s": (engine1 - engine0) / links,
        "workers_cpu_s": (workers1 - workers0) / TICK / links,
        "submit_s": span("submit", "submitted"),
        "worker_round_trip_s": span("submitted", "read done"),
        "report_to_loop_s": span("read done", "loop done"),
        "loop_s": statistics.median(stamps[i + 1]["submit"] - stamps[i]["loop done"] for i in ids),
        "per_link_s": statistics.median(stamps[i + 1]["submit"] - stamps[i]["submit"] for i in ids),
        "start_and_done_in_one_message": sum(stamps[i]["read start"] == stamps[i]["read done"] for i in ids) / len(ids),
    }


PARTS = (
    ("core.loop", "Loop", "cycle", "cycle (all of it)"),
    ("core.loop", "Loop", "_handle", "  reports taken in"),
    ("core.runbook", "RunBook", "finish_ok", "    outcome (finish_ok)"),
    ("store_des", "DESPart", "finish_runs", "    run row deferred (opens the transaction)"),
    ("store_des", "DESPart", "runs_ok", "    ok run's row deferred (opens the transaction)"),
    ("core.loop", "Loop", "_settle_and_take", "  readiness and dispatch"),
    ("dag", "Graph", "settle", "    readiness walk (Graph.settle)"),
    ("dag", "Graph", "settle_leaves", "    readiness without a walk (Graph.settle_leaves)"),
    ("core.dispatch", "Dispatch", "take", "    next task and its run row"),
    ("core.loop", "Loop", "_commit_and_publish", "  commit, submit, facts"),
    ("store_base", "StoreBase", "flush", "    rows written (flush)"),
    ("store_base", "StoreBase", "commit", "    commit (flush and COMMIT)"),
    ("executors.process", "ProcessExecutor", "submit", "    submit to the worker"),
    ("core.outbox", "Outbox", "release", "    facts released (bus subscribers)"),
    ("groups", "Groups", "take_touched", "    groups' summaries (GroupsChanged)"),
    ("dag", "Graph", "evict", "    memory trimmed (Graph.evict)"),
    ("core.loop", "Loop", "_update_idle", "  idle mark"),
    ("core.loop", "Loop", "_wait_time", "wait time (timers, retries, folders)"),
    ("waker", "Waker", "wait", "wait (poll; reports read)"),
    ("executors.process", "ProcessExecutor", "_on_results", "  reports read (pipe, unpickle, account)"),
)
"""(module under ``tinyo``, class, method, label) of the parts ``--parts`` times (those the engine measured has:
an older engine, as a baseline, lacks some)."""


def profile_parts(n: int) -> dict[str, object]:
    """The loop thread's CPU per part, SQL statements and facts per link (see the module's docstring)."""
    import importlib
    import re
    import sqlite3
    from collections import Counter

    from tinyo.core.outbox import Outbox

    cpu: dict[str, list[float]] = defaultdict(list)
    undo: list[tuple[type, str, object]] = []
    clock = time.thread_time

    def timed(label: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu[label].append(clock() - t0)
        return wrapper

    for module, cls_name, name, label in PARTS:
        cls = getattr(importlib.import_module(f"tinyo.{module}"), cls_name)
        if name not in cls.__dict__:
            continue
        undo.append((cls, name, cls.__dict__[name]))
        setattr(cls, name, timed(label, cls.__dict__[name]))
    registering: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
    linking: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
    phase = [registering]  # until the first outcome
    connect, outbox_init = sqlite3.connect, Outbox.__init__

    def statement(sql: str) -> None:
        table = re.search(r"\b(?:INTO|UPDATE|FROM)\s+(\w+)", sql)
        words = sql.split(maxsplit=2)
        phase[0][0][f"{words[0]} {table.group(1)}" if table else " ".join(words[:2])] += 1

    def traced_connect(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statement)
        return conn

    def counting_init(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        outbox_init(self, *args, **kwargs)
        emit = self.emit  # an instance's own (its list's append)

        def counted_emit(fact):  # noqa: ANN001, ANN202
            if fact.__class__.__name__ == "OpFinished":
                phase[0] = linking
            phase[0][1][type(fact).__name__] += 1
            return emit(fact)
        self.emit = counted_emit

    sqlite3.connect, Outbox.__init__ = traced_connect, counting_init
    try:
        profile_chain(n)
    finally:
        sqlite3.connect, Outbox.__init__ = connect, outbox_init
        for cls, name, fn in undo:
            setattr(cls, name, fn)
    def per(counts: Counter[str]) -> dict[str, float]:
        return {k: v / n for k, v in counts.most_common() if v >= n / 20}

    return {
        "cpu_us_per_link": {label: 1e6 * statistics.median(cpu[label]) * len(cpu[label]) / n
                            for *_, label in PARTS if cpu[label]},
        "statements_per_des_registered": per(registering[0]),
        "facts_per_des_registered": per(registering[1]),
        "statements_per_link": per(linking[0]),
        "facts_per_link": per(linking[1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=2000)
    parser.add_argument("--json", default=None)
    parser.add_argument("--parts", action="store_true", help="also the loop thread's CPU by part, statements, facts")
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
    print(f"  {'CPU: engine process':<30}{1e6 * res['engine_cpu_s']:>8.0f} us")
    print(f"  {'CPU: worker processes':<30}{1e6 * res['workers_cpu_s']:>8.0f} us")
    print(f"  {'bare pool round trip (baseline)':<30}{1e6 * bare:>8.0f} us   per link / baseline "
          f"{res['per_link_s'] / bare:.1f}x")
    print(f"  start and outcome in one message: {100 * res['start_and_done_in_one_message']:.0f}% of links")
    if args.parts:
        parts = profile_parts(args.links)
        res["parts"] = parts
        print("loop thread CPU per link, by part (a second run; parts nest)")
        for label, us in parts["cpu_us_per_link"].items():  # type: ignore[union-attr]
            print(f"  {label:<46}{us:>8.1f} us")
        for key in ("statements_per_des_registered", "facts_per_des_registered", "statements_per_link",
                    "facts_per_link"):
            figures = parts[key]  # type: ignore[index]
            print(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
