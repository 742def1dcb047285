"""Provides the Dask executor benchmark: tinyo's per-op overhead beside Dask's own bare ``client.submit``.

    python benchmarks/bench_dask.py [--quick] [--json PATH]

One LocalCluster(processes=True, n_workers=2, threads_per_worker=1) on 127.0.0.1 for the whole run;
every figure is measured beside a bare baseline on the same cluster, in the same run (target: ratio
tinyo / bare <= 1.5 for the executor cases). The op is the same trivial function everywhere (``noop``
in a temp recipe the workers import by path). No assertions: it prints a table and writes JSON.

- ``batch``: N ops handed over as fast as the executor accepts them (``free_slots``/``submit``, as
  the engine does), until the sink has every ``done``; beside N ``client.submit(noop, ctx)`` calls
  and waiting for all of them. Per-op wall time.
- ``sequential``: one op at a time, submit → ``done`` through the sink, M times; beside M
  ``client.submit(noop, ctx).result()`` round trips. Per-op wall time.
- ``engine``: the whole orchestrator (generator, store, dispatch, bus) on the same cluster: one
  injected event emits N independent DES; inject → last ``OpFinished``. Shown for information,
  beside the same bare batch figure (it also pays for what tinyo does besides running ops).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "engine"))

from tinyo.messages import WorkerLost, WorkerReports  # noqa: E402

RECIPE = '''
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def noop(context):
    return None


NOOP = Config({})


@meta_task(root=True)
def gen(event):
    kind, _, rest = event.partition(":")
    if kind == "fanout":
        tag, n = rest.split(":")
        return (None, [DES(deps=frozenset([event]), targs=frozenset([f"fan.{tag}.{i}"]), ops=[(noop, NOOP)])
                       for i in range(int(n))])
    return (None, [])


config = TinyOConfig(sql_conn="bench.db", max_workers=2, execution=Execution.DASK)
'''


def _context() -> dict[str, Any]:
    from tinyo.model import Config

    return {"deps": frozenset(), "targs": frozenset({"x"}), "config": Config({}), "run_id": 0, "attempt": 1,
            "des_id": "bench", "worker": "bare"}


class Sink:
    """Counts ``done`` messages (and keeps failures) as the executor reports them."""

    def __init__(self) -> None:
        self.done = 0
        self.failed: list[Any] = []
        self.cond = threading.Condition()

    def __call__(self, item: Any) -> None:
        if isinstance(item, WorkerReports):
            n = 0
            for kind, run_id, payload in item.messages:
                if kind == "done":
                    n += 1
                    if not payload[0]:
                        self.failed.append((run_id, payload[1]))
                elif kind == "fatal":
                    self.failed.append((run_id, payload))
            if n:
                with self.cond:
                    self.done += n
                    self.cond.notify_all()
        elif isinstance(item, WorkerLost):
            self.failed.append(item)

    def wait(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.done < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {self.done} of {count} ops reported done")
                self.cond.wait(left)


def make_executor(address: str, recipe: Path, db: Path) -> tuple[Any, Sink]:
    from tinyo.executors.dask_executor import DaskExecutor

    sink = Sink()
    ex = DaskExecutor(str(recipe), address, 2, sink, time.time, str(db))
    ex.start()
    return ex, sink


def tasks(recipe: Path, start: int, n: int) -> list[Any]:
    from tinyo.model import Config
    from tinyo.worker import Task

    return [Task(i, f"bench{i:08d}", 1, str(recipe), (("<recipe>:noop", Config({})),), frozenset(), frozenset({"x"}))
            for i in range(start, start + n)]


def executor_batch(ex: Any, sink: Sink, recipe: Path, start: int, n: int) -> float:
    todo = tasks(recipe, start, n)
    base = sink.done
    t0 = time.perf_counter()
    i = 0
    while i < len(todo):
        slots = ex.free_slots()
        if slots <= 0:
            with sink.cond:
                sink.cond.wait(0.005)
            continue
        ex.submit(todo[i:i + slots])
        i += slots
    sink.wait(base + n)
    return (time.perf_counter() - t0) / n


def executor_sequential(ex: Any, sink: Sink, recipe: Path, start: int, n: int) -> float:
    t0 = time.perf_counter()
    for task in tasks(recipe, start, n):
        base = sink.done
        ex.submit([task])
        sink.wait(base + 1)
    return (time.perf_counter() - t0) / n


def bare_batch(client: Any, fn: Any, n: int) -> float:
    ctx = _context()
    t0 = time.perf_counter()
    futures = [client.submit(fn, ctx, pure=False) for _ in range(n)]
    client.gather(futures)
    elapsed = time.perf_counter() - t0
    del futures
    return elapsed / n


def bare_sequential(client: Any, fn: Any, n: int) -> float:
    ctx = _context()
    t0 = time.perf_counter()
    for _ in range(n):
        client.submit(fn, ctx, pure=False).result()
    return (time.perf_counter() - t0) / n


def engine_fanout(address: str, recipe: Path, db: Path, n: int) -> float:
    from tinyo import events as ev
    from tinyo.engine import Engine

    finished = threading.Event()
    count = {"ok": 0, "bad": 0}

    def on_event(e: Any) -> None:
        if isinstance(e, ev.OpFinished):
            count["ok"] += 1
        elif isinstance(e, ev.OpFailed):
            count["bad"] += 1
        if count["ok"] + count["bad"] >= n:
            finished.set()

    engine = Engine.from_path(recipe, db=str(db), executor_address=address, watch=False)
    engine.bus.subscribe(on_event)
    engine.start()
    if engine.fatal is not None:
        raise engine.fatal
    try:
        t0 = time.perf_counter()
        engine.inject(f"fanout:{db.stem}:{n}")
        if not finished.wait(600):
            raise TimeoutError(f"engine: {count} of {n}")
        elapsed = time.perf_counter() - t0
    finally:
        engine.stop(10)
    if count["bad"]:
        raise RuntimeError(f"engine: {count['bad']} ops failed")
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (the median is reported)")
    parser.add_argument("--json", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tinyo_bench_dask.json"))
    args = parser.parse_args()
    n_batch = 500 if args.quick else 2000
    n_seq = 50 if args.quick else 200
    n_engine = 500 if args.quick else 2000

    import logging

    import distributed

    from tinyo.recipe import import_recipe_module

    tmp = Path(tempfile.mkdtemp(prefix="tinyo-bench-dask-"))
    recipe = tmp / "bench_dask_recipe.py"
    recipe.write_text(RECIPE)
    os.chmod(recipe, 0o644)
    fn = import_recipe_module(recipe).noop  # the very function the ops run (pickled by value for the bare case)
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        address = cluster.scheduler_address
        ex, sink = make_executor(address, recipe, tmp / "exec.db")
        try:
            # warm-up: both workers import the recipe, the executor learns ops are fast
            executor_batch(ex, sink, recipe, 1, 200)
            bare_batch(client, fn, 200)
            next_id = 1000
            cases = {"batch": [], "sequential": []}
            for _ in range(args.rounds):
                b = bare_batch(client, fn, n_batch)
                t = executor_batch(ex, sink, recipe, next_id, n_batch)
                next_id += n_batch
                cases["batch"].append((t, b))
                b = bare_sequential(client, fn, n_seq)
                t = executor_sequential(ex, sink, recipe, next_id, n_seq)
                next_id += n_seq
                cases["sequential"].append((t, b))
            if sink.failed:
                raise RuntimeError(f"executor reported failures: {sink.failed[:3]}")
        finally:
            ex.shutdown(0)
        engine_rounds = []
        for r in range(max(1, args.rounds - 1)):
            b = bare_batch(client, fn, n_engine)
            t = engine_fanout(address, recipe, tmp / f"engine{r}.db", n_engine)
            engine_rounds.append((t, b))
        cases["engine"] = engine_rounds
    for name, pairs in cases.items():
        tinyo = statistics.median(t for t, _ in pairs)
        bare = statistics.median(b for _, b in pairs)
        ratios = [t / b for t, b in pairs]
        rows.append({"case": name, "n": {"batch": n_batch, "sequential": n_seq, "engine": n_engine}[name],
                     "tinyo_ms_per_op": tinyo * 1e3, "bare_ms_per_op": bare * 1e3,
                     "ratio": statistics.median(ratios), "ratios": ratios,
                     "target": "<= 1.5" if name != "engine" else "(info)"})
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nDask executor vs bare client.submit on LocalCluster(2 processes x 1 thread), "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {args.rounds} rounds, "
          f"{time.perf_counter() - t_start:.0f}s\n")
    print(f"{'case':<12}{'n':>6}{'tinyo ms/op':>14}{'bare ms/op':>13}{'ratio':>8}  target   met")
    for row in rows:
        met = "-" if row["case"] == "engine" else ("yes" if row["ratio"] <= 1.5 else "NO")
        print(f"{row['case']:<12}{row['n']:>6}{row['tinyo_ms_per_op']:>14.3f}{row['bare_ms_per_op']:>13.3f}"
              f"{row['ratio']:>8.2f}  {row['target']:<8} {met}")
    Path(args.json).write_text(json.dumps({"rows": rows, "python": platform.python_version(),
                                           "cpus": os.cpu_count()}, indent=2))
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
