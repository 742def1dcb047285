"""Provides the shell-completion benchmark: how long one Tab press takes on a 100,000-document state file.

    python benchmarks/bench_completion.py [--documents 100000] [--rounds 9] [--json PATH]

Each case runs the installed ``tinyo`` the way bash does on Tab (``_TINYO_COMPLETE=complete_bash``,
``COMP_WORDS``, ``COMP_CWORD``) in a fresh process, and reports the median wall-clock time over the rounds:
- ``why RECIPE doc.0425`` (document names; the recipe is loaded to find its state file) — target < 200 ms;
- ``why RECIPE --db PATH doc.0425`` (document names; the state file named, the recipe not loaded);
- ``fire RECIPE h`` (timer names; the recipe is loaded, nothing is started).
Baselines, same run: ``tinyo --version`` (the interpreter and the CLI starting) and ``tinyo why RECIPE --db
MISSING x`` (typer parsing a command line, which converts values through pydantic, then one error line): the
floor of any tinyo command, against which the ratios are given. Wall-clock and the child's CPU time (less
sensitive to a busy machine) are both shown. The in-process figure is the name lookup alone (one index range
read of at most 200 names). No assertions: it prints a table and (with ``--json``) writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from tinyo.store import Store  # noqa: E402

TARGET_MS = 200.0
TINYO = str(Path(sys.executable).parent / "tinyo")

RECIPE = """\
from datetime import datetime, timedelta
from tinyo import DES, Config, TinyOConfig, meta_task

def op(context):
    pass

@meta_task(root=True)
def on_event(event):
    return (None, [])

config = TinyOConfig(sql_conn={db!r}, dirs=[], timers=[
    {{"name": "hourly", "initial": datetime(2024, 1, 1), "interval": timedelta(hours=1)}},
    {{"name": "daily", "initial": datetime(2024, 1, 1), "interval": timedelta(days=1)}}])
"""


def make_store(path: Path, documents: int) -> None:
    """A state file with ``documents`` documents (names, versions, producers), written through the Store."""
    store = Store(str(path))
    names = [f"doc.{i:07d}" for i in range(documents)]
    now = time.time()
    store.add_names([(name, "doc.*") for name in names])
    store.put_documents([(name, 1, None, None, None, now, "bench") for name in names])
    store.add_producers([(name, f"{i:016x}") for i, name in enumerate(names)])
    store.commit()
    store.close()


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``argv``: wall-clock seconds, CPU seconds of the child (user + system), its standard output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def tab(words: str) -> tuple[float, float, list[str]]:
    """One Tab press: wall and CPU seconds, and what was offered."""
    env = {**os.environ, "_TINYO_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split(" ")) - 1)}
    wall, cpu, out = _timed([TINYO], env)
    return wall, cpu, [line for line in out.splitlines() if line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tinyo-bench-completion-") as tmp:
        folder = Path(tmp)
        db = folder / "state.db"
        built = time.perf_counter()
        make_store(db, args.documents)
        built = time.perf_counter() - built
        recipe = folder / "recipe.py"
        recipe.write_text(RECIPE.format(db=str(db)))

        prefix = f"doc.{args.documents // 2:07d}"[:-2]  # 100 names share it
        cases = {
            "why RECIPE PREFIX (documents)": f"tinyo why {recipe} {prefix}",
            "why RECIPE --db PATH PREFIX": f"tinyo why {recipe} --db {db} {prefix}",
            "why RECIPE doc. (200 of all)": f"tinyo why {recipe} doc.",
            "fire RECIPE h (timers)": f"tinyo fire {recipe} h",
        }
        tab(cases["fire RECIPE h (timers)"])  # warm the file cache and bytecode
        baselines = {
            # the interpreter and the CLI starting, nothing parsed
            "tinyo --version": [TINYO, "--version"],
            # typer parsing a command line (it converts values through pydantic), then one line of error
            "tinyo why R --db MISSING x": [TINYO, "why", str(recipe), "--db", str(folder / "none" / "x.db"), "x"],
        }
        wall: dict[str, list[float]] = {name: [] for name in [*baselines, *cases]}
        cpu: dict[str, list[float]] = {name: [] for name in wall}
        offered: dict[str, int] = {}
        for _ in range(args.rounds):  # interleaved, so a busy moment hits every case alike
            for name, argv in baselines.items():
                seconds, cpu_seconds, _ = _timed(argv)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
            for name, words in cases.items():
                seconds, cpu_seconds, names = tab(words)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
                offered[name] = len(names)
        store = Store(str(db), read_only=True, lock=False)
        lookups = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            store.names_from(prefix, 200)
            lookups.append(time.perf_counter() - start)
        store.close()

    def ms(samples: list[float]) -> float:
        return statistics.median(samples) * 1000

    base_name = "tinyo why R --db MISSING x"
    base_wall, base_cpu = ms(wall[base_name]), ms(cpu[base_name])
    results: dict[str, dict[str, object]] = {}
    print(f"state file: {args.documents:,} documents (built in {built:.1f} s); median of {args.rounds} rounds; "
          f"baseline: {base_name}")
    print(f"{'case':32} {'wall ms':>8} {'base':>7} {'ratio':>6} {'cpu ms':>7} {'base':>7} {'ratio':>6} "
          f"{'offered':>7}  target wall < {TARGET_MS:.0f} ms")
    for name in wall:
        w, c = ms(wall[name]), ms(cpu[name])
        met = "-" if name in baselines else ("met" if w < TARGET_MS else "NOT met")
        results[name] = {"wall_ms": w, "cpu_ms": c, "wall_min_ms": min(wall[name]) * 1000,
                         "baseline_wall_ms": base_wall, "baseline_cpu_ms": base_cpu,
                         "offered": offered.get(name), "met": w < TARGET_MS}
        print(f"{name:32} {w:8.1f} {base_wall:7.1f} {w / base_wall:6.2f} {c:7.1f} {base_cpu:7.1f} {c / base_cpu:6.2f} "
              f"{offered.get(name, '-'):>7}  {met}")
    lookup_ms = statistics.median(lookups) * 1000
    print(f"{'name lookup alone (in process)':32} {lookup_ms:8.3f}")
    results["lookup_in_process"] = {"wall_ms": lookup_ms}
    if args.json:
        args.json.write_text(json.dumps({"documents": args.documents, "rounds": args.rounds, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
