"""Provides the watcher process benchmark: its CPU per file in a burst, beside a plain watchdog process.

    python benchmarks/bench_watcher.py [--files 10000] [--rounds 3] [--baseline PATH] [--json PATH]

Another process writes ``--files`` small files at once into a folder on tmpfs (``/dev/shm``) watched by
tinyo's watcher process (:class:`tinyo.watch.WatcherProcess`: inotify events, each complete file's stat
and hash, its batches sent to this process through a pipe); its CPU (user + system, from ``/proc``) from
just before the first file to the last file reported, per file, thread by thread too. Baseline, in the
same run on the same files: a plain process with a watchdog observer asking only for close-write and
moved events, which stats and hashes (BLAKE2b) each file on its handler thread and counts them. No
assertions: it prints a table (median of the rounds) and with ``--json`` writes every figure.
``--baseline PATH``: another checkout's watcher process (e.g. an export of main) measured the same way, in a
process of its own importing that checkout's engine, rounds interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None

PLAIN = r"""
import hashlib, os, sys, time
from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEventHandler
from watchdog.observers import Observer

folder, n = sys.argv[1], int(sys.argv[2])
seen = 0

class Handler(FileSystemEventHandler):
    def on_any_event(self, event):
        global seen
        path = event.dest_path if isinstance(event, FileMovedEvent) else event.src_path
        st = os.stat(path)
        with open(path, "rb") as fh:
            hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
        seen += 1

observer = Observer()
observer.schedule(Handler(), folder, event_filter=[FileClosedEvent, FileMovedEvent])
observer.start()
print("ready", flush=True)
while seen < n:
    time.sleep(0.005)
print("done", flush=True)
sys.stdin.read()
"""


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of ``pid`` (by its /proc task id, in start order)."""
    out = {}
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def write_files(folder: str, n: int) -> None:
    code = ("import os, sys\nfolder = sys.argv[1]\nfor i in range(int(sys.argv[2])):\n"
            "    with open(os.path.join(folder, f'f{i:06d}.txt'), 'w') as fh:\n        fh.write('x')\n")
    subprocess.run([sys.executable, "-c", code, folder, str(n)], check=True)


def tinyo_round(base: str, n: int) -> dict[str, object]:
    from tinyo.watch import WatcherProcess

    folder = tempfile.mkdtemp(dir=base)
    got: set[str] = set()
    batches = []
    done = threading.Event()

    def on_files(items: list) -> None:
        batches.append(len(items))
        got.update(path for path, _ in items)
        if len(got) >= n:
            done.set()

    watcher = WatcherProcess([folder], on_files, lambda: print("  (overflow: the kernel dropped events)"))
    watcher.start()
    try:
        pid = watcher._process.pid
        time.sleep(0.2)
        c0, t0 = proc_cpu(pid), thread_cpu(pid)
        write_files(folder, n)
        done.wait(120)
        c1, t1 = proc_cpu(pid), thread_cpu(pid)
    finally:
        watcher.stop()
        shutil.rmtree(folder, ignore_errors=True)
    threads = sorted((1e6 * (t1[t] - t0.get(t, 0.0)) / n for t in t1), reverse=True)
    return {"reported": len(got), "messages": len(batches), "cpu_us_per_file": 1e6 * (c1 - c0) / n,
            "busiest_threads_us_per_file": [round(x, 1) for x in threads if x > 0]}


def checkout_round(checkout: str, base: str, n: int) -> dict[str, object]:
    """:func:`tinyo_round` on another checkout's engine, in a process that imports it."""
    engine = os.path.join(checkout, "engine")
    out = subprocess.run([sys.executable, __file__, "--one-round", engine, "--files", str(n)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": engine})
    return json.loads(out.stdout.splitlines()[-1])


def plain_round(base: str, n: int) -> dict[str, object]:
    folder = tempfile.mkdtemp(dir=base)
    proc = subprocess.Popen([sys.executable, "-c", PLAIN, folder, str(n)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        proc.stdout.readline()  # ready
        time.sleep(0.2)
        c0 = proc_cpu(proc.pid)
        write_files(folder, n)
        proc.stdout.readline()  # done
        c1 = proc_cpu(proc.pid)
        proc.stdin.close()
    finally:
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    return {"cpu_us_per_file": 1e6 * (c1 - c0) / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="another checkout whose watcher is measured beside")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one-round", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = TMPFS or tempfile.gettempdir()
    if args.one_round:  # a child of --baseline: this checkout's engine is first on sys.path
        sys.path.insert(0, args.one_round)
        print(json.dumps(tinyo_round(base, args.files)))
        return 0
    tinyo, plain, other = [], [], []
    for i in range(args.rounds):  # interleaved: a busy moment of the machine hits all
        tinyo.append(tinyo_round(base, args.files))
        plain.append(plain_round(base, args.files))
        if args.baseline:
            other.append(checkout_round(args.baseline, base, args.files))
        last = tinyo[-1]
        print(f"round {i + 1}: tinyo watcher {last['cpu_us_per_file']:.1f} us/file (reported {last['reported']} "
              f"in {last['messages']} messages, threads {last['busiest_threads_us_per_file']}), "
              f"plain watchdog {plain[-1]['cpu_us_per_file']:.1f} us/file"
              + (f", baseline checkout's watcher {other[-1]['cpu_us_per_file']:.1f} us/file (threads "
                 f"{other[-1]['busiest_threads_us_per_file']})" if other else ""), flush=True)
    t = statistics.median(r["cpu_us_per_file"] for r in tinyo)
    p = statistics.median(r["cpu_us_per_file"] for r in plain)
    rows = [("figure", "tinyo", "baseline", "ratio"),
            (f"watcher process CPU per file, {args.files:,}-file burst ({base})", f"{t:.1f} us", f"{p:.1f} us",
             f"{t / p:.2f}" if p else "-")]
    if other:
        o = statistics.median(r["cpu_us_per_file"] for r in other)
        rows.append(("the same, beside the baseline checkout's watcher", f"{t:.1f} us", f"{o:.1f} us",
                     f"{t / o:.2f}" if o else "-"))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>9}  {r[2]:>9}  {r[3]:>5}")
    print("(median of the rounds; baseline: a plain watchdog process, close-write and moved events, "
          "stat + hash each)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"files": args.files, "tinyo": tinyo, "plain": plain, "baseline_checkout": other,
                   "tinyo_median_us": t, "plain_median_us": p}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
