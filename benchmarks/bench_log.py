"""What the headless log costs: a burst of files run through ``tinyo run`` (text log read promptly from a
pipe, and ``--json``), beside the same engine with no subscriber at all (the baseline), in one run.

    python benchmarks/bench_log.py [--files N] [--rounds R] [--old-report REV] [--json PATH]

``--old-report REV`` adds the text log as ``engine/tinyo/report.py`` was at git revision REV (a copy of the
package with that one file swapped), for a before/after in the same run.

Each case is a fresh process on a fresh state file, with the files already in a tmpfs folder (the
start-up scan takes them in), a trivial op each, two worker processes, ``--idle-exit 0.5``. Figures:
wall seconds from start to exit and CPU seconds of the whole process tree (the engine, its watcher and
its workers), the median of the rounds; each beside the baseline's as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENGINE = HERE.parent / "engine"

RECIPE = '''
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def touch(context):
    return None


@meta_task(root=True)
def on_file(event):
    if not event.endswith(".csv"):
        return (None, [])
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["done " + event]), ops=[(touch, Config({}))])])


config = TinyOConfig(sql_conn=DB, dirs=[INBOX], maxevents=1000, max_workers=2, execution=Execution.PROCESSES)
'''

BASELINE = '''
import sys, time
from tinyo.engine import Engine
engine = Engine.from_path(sys.argv[1])
engine.start()
while True:
    idle = engine.idle_since
    if idle is not None and time.monotonic() - idle >= 0.5:
        break
    time.sleep(0.05)
engine.stop(10)
assert engine.failures == 0
'''


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _old_package(rev: str, root: Path) -> Path:
    """A copy of the engine package with ``report.py`` as it was at ``rev``."""
    target = Path(tempfile.mkdtemp(prefix="bench-log-old-", dir=root))
    shutil.copytree(ENGINE / "tinyo", target / "tinyo", ignore=shutil.ignore_patterns("__pycache__"))
    old = subprocess.run(["git", "show", f"{rev}:engine/tinyo/report.py"], cwd=HERE.parent, check=True,
                         capture_output=True, text=True).stdout
    (target / "tinyo" / "report.py").write_text(old)
    return target


def _case(kind: str, files: int, root: Path, engine: Path = ENGINE) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-log-{kind}-", dir=root))
    inbox = work / "in"
    inbox.mkdir()
    for i in range(files):
        (inbox / f"f{i:06}.csv").write_text("x")
    recipe = work / "recipe.py"
    recipe.write_text(RECIPE.replace("DB", repr(str(work / "state.db"))).replace("INBOX", repr(str(inbox))))
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(engine)}
    if kind == "engine":
        cmd = [sys.executable, "-c", BASELINE, str(recipe)]
    else:
        cmd = [sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--idle-exit", "0.5"]
        if kind == "json":
            cmd.append("--json")
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=600)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind}: exit {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    lines = proc.stdout.count(b"\n")
    shutil.rmtree(work, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "lines": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-report", default=None, metavar="REV", help="also the text log as it was at REV")
    parser.add_argument("--json", default=None, help="write the results here (default: print only)")
    args = parser.parse_args()
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    runs: dict[str, list[dict[str, Any]]] = {"engine": [], "text": [], "json": []}
    old = _old_package(args.old_report, root) if args.old_report else None
    if old is not None:
        runs["text-old"] = []
    for _ in range(args.rounds):
        for kind in runs:  # interleaved, so that load on the machine falls on all cases alike
            if kind == "text-old":
                runs[kind].append(_case("text", args.files, root, engine=old))  # type: ignore[arg-type]
            else:
                runs[kind].append(_case(kind, args.files, root))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    result: dict[str, Any] = {"files": args.files, "rounds": args.rounds, "cases": {}}
    base = {k: statistics.median(r[k] for r in runs["engine"]) for k in ("wall_s", "cpu_s")}
    print(f"{args.files} files at once, {args.rounds} rounds (median); baseline: the engine with no subscriber")
    print(f"{'case':<8} {'wall s':>8} {'x base':>7} {'cpu s':>8} {'x base':>7} {'lines':>7}")
    for kind, rows in runs.items():
        wall = statistics.median(r["wall_s"] for r in rows)
        cpu = statistics.median(r["cpu_s"] for r in rows)
        lines = int(statistics.median(r["lines"] for r in rows))
        result["cases"][kind] = {"wall_s": wall, "cpu_s": cpu, "lines": lines,
                                 "wall_x_base": wall / base["wall_s"], "cpu_x_base": cpu / base["cpu_s"]}
        print(f"{kind:<8} {wall:>8.2f} {wall / base['wall_s']:>7.2f} {cpu:>8.2f} {cpu / base['cpu_s']:>7.2f} {lines:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
