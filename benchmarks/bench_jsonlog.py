"""The JSON log's own cost, apart from the engine: ``tinyo run --json``'s printer process and the engine's side of it.

    python benchmarks/bench_jsonlog.py [--files 10000] [--batch 1500] [--rounds 5] [--baseline PATH] [--json out.json]

The facts a 10,000-file burst publishes are handed to ``tinyo.jsonlog.JsonPrinter`` in batches of ``--batch``
(a burst hands over 40 to 55 batches of ~1,500), its output going to /dev/null: an engine before the fold, seven a
file (event received, DES registered, DES state, op started, op output, op finished, target's document updated);
since, five (the event's fact with its file's version, the DES's with its first state, op started, op output, the
run's end with its target's version: one value more than the seven, whose list left the file's own version out).
Per file: the CPU of the printer process (from its start to its exit: the start-up is ~2.5 us of it) and of the
sending side (the engine's reporter thread: making rows and writing them down the pipe). ``--baseline PATH``: another
checkout measured the same way, runs alternated, medians beside each other. No assertions: a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

ONE_RUN = r"""
import os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from tinyo import events as ev
from tinyo.jsonlog import JsonPrinter

FOLDED = "version" in ev.EventReceived.__dataclass_fields__

def file_facts(i):
    path, des = "/tmp/inbox/f%05d.csv" % i, "%040x" % i
    if FOLDED:  # the engine's facts since the fold: versions and first state told inside
        return [ev.EventReceived(1.5, i, path, "file", 1.0, 1, 0, 1),
                ev.DESRegistered(2.0, des, frozenset({path}), frozenset({"loaded " + path}), ("load",), "on_file",
                                 path, False, "queued", "queued: never built"),
                ev.OpStarted(3.0, i, des, "load", "w1", 1, frozenset({"loaded " + path})),
                ev.OpOutput(3.1, i, des, "load", "w1", "stdout", "loaded " + path, 1),
                ev.OpFinished(3.2, i, des, "load", "w1", 0.001, None, ("loaded " + path,), (1,))]
    return [ev.EventReceived(1.5, i, path, "file", 1.0, 1, 0),
            ev.DESRegistered(2.0, des, frozenset({path}), frozenset({"loaded " + path}), ("load",), "on_file", path),
            ev.DESStateChanged(2.5, des, "queued", "queued: never built", "new", ("loaded " + path,)),
            ev.OpStarted(3.0, i, des, "load", "w1", 1, frozenset({"loaded " + path})),
            ev.OpOutput(3.1, i, des, "load", "w1", "stdout", "loaded " + path, 1),
            ev.OpFinished(3.2, i, des, "load", "w1", 0.001, None),
            ev.DocumentUpdated(3.3, "loaded " + path, 1, "op")]

files, batch = int(sys.argv[2]), int(sys.argv[3])
facts = [f for i in range(files) for f in file_facts(i)]
null = os.open(os.devnull, os.O_WRONLY)
saved = os.dup(1)
os.dup2(null, 1)
start = time.thread_time()
printer = JsonPrinter()
for at in range(0, len(facts), batch):
    printer.send(facts[at:at + batch])
sender = time.thread_time() - start
printer.close()
os.dup2(saved, 1)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print((usage.ru_utime + usage.ru_stime) * 1e6 / files, sender * 1e6 / files)
"""


def one_run(checkout: Path, files: int, batch: int) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", ONE_RUN, str(checkout / "engine"), str(files), str(batch)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="another checkout, measured alternately beside this one")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cases = {"tinyo": HERE.parent} | ({"baseline": Path(args.baseline)} if args.baseline else {})
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, checkout in cases.items():
            samples[name].append(one_run(checkout, args.files, args.batch))
    print(f"per file ({args.files:,} files' facts in batches of {args.batch}, median of {args.rounds})"
          + "".join(f"  {name:>9}" for name in cases) + ("      ratio" if args.baseline else ""))
    for i, label in enumerate(("printer process, us", "sending side, us")):
        values = [statistics.median(s[i] for s in samples[name]) for name in cases]
        ratio = f"  {values[0] / values[1]:9.2f}" if args.baseline else ""
        print(f"{label:<58}" + "".join(f"  {v:9.1f}" for v in values) + ratio)
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=1))


if __name__ == "__main__":
    main()
