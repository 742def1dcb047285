"""The loop thread's intake half, per file, beside another checkout's: the loop alone, in one process.

    python benchmarks/bench_intake.py [--files 10000] [--rounds 5] [--baseline PATH] [--opcodes 3000]
                                      [--hand-over 300] [--json PATH]

A child process per round imports one checkout's engine (``PYTHONPATH``), wires a ``Loop`` as the engine does
(``tests/test_engine_parts.wire_loop``'s way, with the burst's recipe of ``bench_burst.py``: one DES per file, one
target, one op), writes ``--files`` one-line files on tmpfs with their states as the watcher process reads them
(stat and BLAKE2b), and hands them to the loop's intake queue ``--hand-over`` at a time (300), as the watcher's
reader does while the loop works (30: a burst the loop keeps pace with, a batch per cycle). Each hand-over is followed by a loop cycle until the backlog is empty: store the events, feed
them to the generators a batch at a time, register, settle, commit. There is no executor: the ready DES are
dropped after each cycle (dispatch, the runs and the workers' reports are not measured), so the figure is the
intake half of the loop thread: from the intake queue to the DES, documents, events and their facts committed.

Figures: the loop's CPU per file (``time.thread_time``) in all and by part (the parts are the loop's own
methods, timed by wrapping them, each with the parts it calls; a part present in one checkout only reads 0 in
the other), medians and bests of the rounds, each beside the baseline's, rounds interleaved. ``--opcodes N``:
one more round per checkout on N files counting the Python bytecodes the loop executes per file, by the
innermost part running (``sys.settrace`` with opcode events: slow, but the same count on a busy machine as on
a quiet one; C work such as SQLite and system calls is not in it). No assertions: a table, and with
``--json`` every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_burst as bb

HERE = Path(__file__).resolve().parent
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
PARTS = (
    ("inflow", "store_events", "store the events"),
    ("documents", "from_events", "file documents (batch)"),
    ("documents", "prefetch_files", "file documents' lookups"),
    ("documents", "from_event", "file documents (one by one)"),
    ("generators", "run", "generators"),
    ("registration", "prefetch", "registration's lookups"),
    ("registration", "register_batch", "registration (batch)"),
    ("registration", "apply_emission", "registration (one by one)"),
    ("dispatch", "settle", "settle"),
    ("store", "commit", "commit (rows and COMMIT)"),
)
RECIPE = '''
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def mark(context):
    pass


@meta_task(root=True)
def on_file(event):
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["done " + event]), ops=[(mark, Config({{}}))])])


config = TinyOConfig(sql_conn={db!r}, dirs=[], max_workers=2, execution=Execution.PROCESSES)
'''


def child(n: int, opcodes: bool, hand_over: int) -> dict[str, Any]:
    """One round in this process (its ``tinyo`` is the checkout measured)."""
    import gc
    import shutil
    import time

    from tinyo import events as ev
    from tinyo import heap
    from tinyo.clock import SystemClock
    from tinyo.core.loop import Loop
    from tinyo.filedigest import digest_file
    from tinyo.intake import FileState
    from tinyo.model import Execution
    from tinyo.recipe import OpResolver, load_recipe
    from tinyo.store import Store

    work = Path(tempfile.mkdtemp(dir=TMPFS, prefix="bench-intake-"))
    try:
        inbox = work / "in"
        inbox.mkdir()
        (work / "recipe.py").write_text(RECIPE.format(db=str(work / "state.db")))
        recipe = load_recipe(work / "recipe.py")
        store = Store(str(work / "state.db"))
        loop = Loop(recipe, store, ev.Bus(), SystemClock(), OpResolver(recipe.module, recipe.path),
                    Execution.PROCESSES, 2, None, watch=False)
        loop.inflow.holding = False
        items = []
        for i in range(n):
            path = inbox / f"f_{i:06d}.dat"
            path.write_text(f"{i}\n")
            st = path.stat()
            items.append(("file", str(path), FileState(st.st_mtime_ns, st.st_size, digest_file(str(path), st.st_size))))
        cpu: dict[str, int] = {}
        ops: dict[str, int] = {}
        stack = ["other"]

        def timed(owner: Any, name: str, label: str) -> None:
            fn = getattr(owner, name, None)
            if fn is None:
                return

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.thread_time_ns()
                stack.append(label)
                try:
                    return fn(*args, **kwargs)
                finally:
                    stack.pop()
                    cpu[label] = cpu.get(label, 0) + time.thread_time_ns() - start

            setattr(owner, name, wrapper)

        for part, name, label in PARTS:
            timed(getattr(loop, part), name, label)

        def run() -> None:
            for start in range(0, n, hand_over):
                for item in items[start:start + hand_over]:
                    loop.inflow.queue.put(item)
                loop.cycle()
                loop.dispatch.ready.clear()
            while loop.inflow.waiting() or loop.inflow.has_backlog():
                loop.cycle()
                loop.dispatch.ready.clear()

        gc.collect()
        heap.settle()  # the engine's collector settings, as ``tinyo run`` sets them
        if opcodes:
            def tracer(frame: Any, event: str, arg: Any) -> Any:
                frame.f_trace_opcodes = True
                if event == "opcode":
                    ops[stack[-1]] = ops.get(stack[-1], 0) + 1
                return tracer

            sys.settrace(tracer)
            run()
            sys.settrace(None)
            return {"opcodes": {k: v / n for k, v in ops.items()}, "des": store.count("des")}
        t0 = time.thread_time_ns()
        run()
        total = time.thread_time_ns() - t0
        out = {"all": total / 1e3 / n, "parts": {k: v / 1e3 / n for k, v in cpu.items()}, "des": store.count("des")}
        store.close()
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def one(engine: Path, n: int, hand_over: int, opcodes: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(engine)}
    args = [sys.executable, __file__, "--child", str(n), "--hand-over", str(hand_over)]
    args += ["--count-opcodes"] if opcodes else []
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="another checkout (its engine/ is measured beside)")
    parser.add_argument("--opcodes", type=int, default=0, help="files for one opcode-counting round (0: none)")
    parser.add_argument("--hand-over", type=int, default=300, help="files handed to the loop per cycle")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count-opcodes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.count_opcodes, args.hand_over)))
        return 0
    cases = bb.engines(args.baseline)
    rounds = bb.interleaved(cases, args.rounds, lambda engine: one(engine, args.files, args.hand_over),
                            lambda res: f"{res['all']:.1f} us/file (loop thread, intake half)")
    counted = ({name: one(engine, args.opcodes, args.hand_over, opcodes=True) for name, engine in cases.items()}
               if args.opcodes else {})

    def row(label: str, get: Any) -> None:
        cells = []
        for name in cases:
            values = sorted(get(res) for res in rounds[name])
            cells.append((statistics.median(values), values[0]))
        line = f"{label:<34}" + "".join(f"{med:>9.1f}{best:>7.1f}" for med, best in cells)
        if len(cells) == 2 and cells[0][0]:
            line += f"{cells[1][0] / cells[0][0]:>7.2f}"
        print(line)

    print(f"\n{args.files:,} files, {args.hand_over} a cycle, {args.rounds} round(s), medians and bests")
    print(f"{'us per file':<34}" + "".join(f"{name[:8]:>9}{'best':>7}" for name in cases)
          + ("  ratio" if len(cases) == 2 else ""))
    row("loop, intake half, in all", lambda res: res["all"])
    for _, _, label in PARTS:
        if any(label in res["parts"] for rs in rounds.values() for res in rs):
            row(f"  {label}", lambda res, label=label: res["parts"].get(label, 0.0))
    if counted:
        print(f"\n{'Python opcodes per file (' + format(args.opcodes, ',') + ' files)':<34}"
              + "".join(f"{name:>12}" for name in cases))
        labels = sorted({k for res in counted.values() for k in res["opcodes"]},
                        key=lambda k: -max(res["opcodes"].get(k, 0) for res in counted.values()))
        print(f"{'in all':<34}" + "".join(f"{sum(res['opcodes'].values()):>12.0f}" for res in counted.values()))
        for label in labels:
            print(f"  {label:<32}" + "".join(f"{res['opcodes'].get(label, 0):>12.0f}" for res in counted.values()))
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "opcodes": counted}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
