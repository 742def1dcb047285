"""Where a `tinyo run` burst's CPU goes: thread by thread in the engine's process, process by process.

    python benchmarks/bench_threads.py [--files 10000] [--rounds 3] [--baseline PATH] [--log text|json] [--json PATH]

The burst of ``bench_burst.py`` (``--files`` small files written at once into a watched tmpfs folder, one
trivial op per file, ``tinyo run recipe.py`` with its text log read through a pty, or with ``--log json``
``tinyo run recipe.py --json`` read through a pipe). From just before the
files are written to the last op done: the CPU (user + system, from ``/proc``) of each thread of the
engine's process and of each process of the run (the watcher, the workers), in microseconds per file, and
each thread's voluntary context switches (its wake-ups: waits for work, for a lock or for the interpreter).
Threads are named by ``py-spy dump`` when py-spy is installed (or given with ``--py-spy``) (Python threads are all "tinyo" to the OS).
``--baseline PATH``: another checkout's engine (e.g. an export of main) measured the same way, rounds
interleaved, each figure beside its baseline. No assertions: a table of medians, and with ``--json`` every
sample.

Two estimates of the least lag come with each round, from that round's own CPU. Every file passes through
the loop thread, so the last op cannot be done much before that thread's CPU has been spent since the first
file was written; nor before all the CPU spent (every process of the run and the writer) has been shared by
all the machine's CPUs. Each is that time less the writer's span (first file written -> last close). They
are estimates, not strict bounds: the CPU is read up to 20 ms after the last op is done (the loop's commit
of that op's report and the log's last lines are in it), the writer's CPU includes its interpreter's
start, and the log's and JSON printer's CPU is counted though no op waits for it; ``/proc`` counts in
10 ms ticks, and the benchmark's own reader is not counted.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pty
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bench_burst as bb

HERE = Path(__file__).resolve().parent
atexit.register(shutil.rmtree, bb.PYCACHE, True)  # bench_burst's byte-code folder for the engines run here
TICK = os.sysconf("SC_CLK_TCK")
SPY = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))]
"""The py-spy command (``--py-spy PATH`` sets it) that names the threads."""


def thread_times(pid: int) -> dict[int, tuple[float, int]]:
    """Thread id -> (CPU seconds, voluntary context switches)."""
    out: dict[int, tuple[float, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                switches = int(fh.read().split("voluntary_ctxt_switches:")[1].split()[0])
        except (OSError, IndexError):
            continue
        out[int(tid)] = ((int(fields[11]) + int(fields[12])) / TICK, switches)
    return out


def process_times(root: int) -> dict[int, tuple[float, str]]:
    """Pid -> (CPU seconds, role) for ``root`` and its descendants."""
    # by module: a worker's command line holds sys.path, which may name any folder (a checkout in "watcher")
    return {pid: ((int(fields[11]) + int(fields[12])) / TICK,
                  "engine" if pid == root else "watcher" if "tinyo._watch_main" in cmd
                  else "json printer" if "tinyo.jsonlog" in cmd else "worker")
            for pid, (fields, cmd) in bb.process_tree(root, cmdline=True).items()}


def thread_names(pid: int) -> dict[int, str]:
    try:
        dump = subprocess.run([SPY[0], "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+(?:, [^)]*)?\): "([^"]+)"', dump)}


def loop_thread(pid: int, names: dict[int, str]) -> list[int]:
    """The engine's loop thread (``tinyo-engine``) by the names py-spy gave; its figures would read 0 without
    it, so none found is an error (Python threads have no names of their own in ``/proc``)."""
    found = [tid for tid, name in names.items() if name == "tinyo-engine"]
    if not found:
        raise SystemExit(f"no thread named tinyo-engine in process {pid}: is py-spy installed ({SPY[0]})? "
                         "(pip install py-spy, or --py-spy PATH)")
    return found


@contextmanager
def warm_engine(engine: Path, log: str, prefix: str) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """``tinyo run`` on the burst's recipe (``engine``'s checkout) in a fresh tmpfs folder, its log read (the
    text log through a pty, or ``--json`` through a pipe), warmed up and idle: (its process, the watched
    folder, the marker file). Stopped and the folder removed on the way out, whatever failed."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=bb.TMPFS))
    proc: subprocess.Popen[bytes] | None = None
    reader: bb.Reader | None = None
    master = -1
    try:
        inbox, marker, db = work / "in", work / "marker", work / "state.db"
        inbox.mkdir()
        for i in range(4):  # taken in by the start-up scan: both workers import the op before the burst
            (inbox / f"warm_{i}.dat").write_text("w")
        recipe = work / "recipe.py"
        recipe.write_text(bb.BURST_RECIPE.format(marker=str(marker), db=str(db), inbox=str(inbox)))
        env = {**bb.ENV, "PYTHONPATH": str(engine)}
        # every fact read through a pipe as a script reads it, or the text log on a terminal
        master, slave = os.pipe() if log == "json" else pty.openpty()
        try:
            proc = subprocess.Popen([*bb.TINYO, "run", str(recipe), *(["--json"] if log == "json" else [])],
                                    stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
        finally:
            os.close(slave)
        reader = bb.Reader(master)
        reader.start()
        if not bb.wait_lines(marker, 4, 60, proc):
            raise RuntimeError(f"not ready: {reader.tail.decode(errors='replace')[-1500:]}")
        time.sleep(0.5)
        yield proc, inbox, marker
    finally:
        if proc is not None:
            proc.send_signal(2)
            bb.wait_or_kill(proc)
        if reader is not None:
            reader.join(5)
        if master >= 0:
            os.close(master)
        shutil.rmtree(work, ignore_errors=True)


def one_round(engine: Path, n: int, log: str = "text") -> dict[str, Any]:
    with warm_engine(engine, log, "bench-threads-") as (proc, inbox, marker):
        names = thread_names(proc.pid)
        loop_ids = loop_thread(proc.pid, names)
        t0, p0 = thread_times(proc.pid), process_times(proc.pid)
        out = subprocess.run([bb.PY, "-c", bb.WRITER, str(inbox), str(n)], check=True, capture_output=True, text=True)
        t_mid = thread_times(proc.pid)
        written = json.loads(out.stdout)
        last_close = written["last_close"]
        done = bb.wait_lines(marker, 4 + n, 180, proc)
        t1, p1 = thread_times(proc.pid), process_times(proc.pid)
        lag = marker.stat().st_mtime_ns / 1e9 - last_close
    threads: dict[str, list[float]] = {}
    for tid, (cpu, switches) in t1.items():
        cpu0, switches0 = t0.get(tid, (0.0, 0))
        row = threads.setdefault(names.get(tid, "(unnamed)"), [0.0, 0])
        row[0] += (cpu - cpu0) * 1e6 / n
        row[1] += switches - switches0
    processes: dict[str, float] = {}
    for pid, (cpu, role) in p1.items():
        processes[role] = processes.get(role, 0.0) + (cpu - p0.get(pid, (0.0, role))[0]) * 1e6 / n
    all_us = sum(processes.values())
    span = last_close - written["first"]
    # Estimates of the least lag (see the module's docstring): the loop thread's CPU (every file passes through
    # it) and all the CPU spent (the writer's too) shared by every CPU, each from the first file written on
    loop_s = max((us for name, (us, _) in threads.items() if name == "tinyo-engine"), default=0.0) * n / 1e6
    loop_after = sum(t1[tid][0] - t_mid.get(tid, (0.0, 0))[0] for tid in loop_ids if tid in t1)
    capacity_s = (all_us * n / 1e6 + written["cpu"]) / (os.cpu_count() or 1)
    return {"done": done, "lag_s": lag, "threads": threads, "processes": processes, "all_us": all_us,
            "writer_s": span, "writer_cpu_s": written["cpu"], "loop_after_s": loop_after, "bound_loop_s": max(loop_s - span, 0.0), "bound_cpus_s": max(capacity_s - span, 0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="another checkout (its engine/ is measured beside)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--log", choices=("text", "json"), default="text",
                        help="the text log through a pty, or --json through a pipe")
    parser.add_argument("--py-spy", default=None, help="the py-spy command that names the threads")
    args = parser.parse_args()
    if args.py_spy:
        SPY[0] = args.py_spy
    cases = bb.engines(args.baseline)
    rounds = bb.interleaved(cases, args.rounds, lambda engine: one_round(engine, args.files, args.log),
                            lambda res: f"{res['all_us']:.0f} us/file in all, lag {res['lag_s']:.2f} s")

    def med(name: str, get: Any) -> float:
        return statistics.median(get(res) for res in rounds[name])

    rows: list[tuple[str, Any]] = [
        ("lag, s", lambda r: r["lag_s"]),
        ("  writer, first file -> last close, s", lambda r: r["writer_s"]),
        ("  writer's own CPU, s", lambda r: r["writer_cpu_s"]),
        ("  loop thread's CPU after the last close, s", lambda r: r["loop_after_s"]),
        ("  least lag, estimated from the loop thread's CPU, s", lambda r: r["bound_loop_s"]),
        (f"  least lag, estimated from all CPU on {os.cpu_count()} CPUs, s", lambda r: r["bound_cpus_s"]),
        ("all processes, us/file", lambda r: r["all_us"])]
    for role in ("engine", "watcher", "worker", "json printer"):
        rows.append((f"{role} process(es), us/file", lambda r, role=role: r["processes"].get(role, 0.0)))
    names = sorted({t for res in rounds["tinyo"] for t in res["threads"]},
                   key=lambda t: -med("tinyo", lambda r, t=t: r["threads"].get(t, [0, 0])[0]))
    for t in names:
        rows.append((f"  thread {t}, us/file", lambda r, t=t: r["threads"].get(t, [0.0, 0])[0]))
        rows.append((f"  thread {t}, wake-ups", lambda r, t=t: r["threads"].get(t, [0.0, 0])[1]))
    print(f"{'figure (median of ' + str(args.rounds) + ' rounds, ' + format(args.files, ',') + ' files)':<52}"
          f"{'tinyo':>10}{'baseline':>10}{'ratio':>7}")
    for label, get in rows:
        mine = med("tinyo", get)
        if "baseline" in rounds:
            base = med("baseline", get)
            ratio = f"{mine / base:.2f}" if base else "-"
            print(f"{label:<52}{mine:>10.2f}{base:>10.2f}{ratio:>7}")
        else:
            print(f"{label:<52}{mine:>10.2f}")
    if not all(res["done"] for rs in rounds.values() for res in rs):
        print("WARNING: a round did not finish every op")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
