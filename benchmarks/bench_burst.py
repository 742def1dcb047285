"""tinyo as users run it, beside a plain durable pipeline and beside its peers, in one run (issue 14's "Speed").

    python benchmarks/bench_burst.py [--files N] [--rounds R] [--only burst,peers,startup] [--json PATH]

Cases (each figure beside its baseline from the same run, the median of ``--rounds`` interleaved rounds):

- ``burst``: ``--files`` small files written at once into a watched tmpfs folder (``/dev/shm``) by another
  process; one trivial op per file, which appends the file's path to a marker file. Lag = last close ->
  the marker file's last change (the last op done); CPU = all processes of the case (its process tree,
  from ``/proc``), from just before the files are written until the last op is done. Baseline: the plain
  durable pipeline of the issue (``PLAIN`` below: a watchdog observer asking only for close-write and
  moved-to events; per batch of up to 1,000 paths: stat and hash, one ``executemany`` insert in a WAL
  transaction, ``ProcessPoolExecutor(2).map(op, chunksize=len/8)``, one status-update commit). tinyo:
  ``tinyo run recipe.py`` with its text log read promptly through a pty (as a terminal reads it), and
  with ``--json`` read through a pipe. Exactly once: the marker file names every file once, and (tinyo)
  the state file has one ok run per file.
- ``peers``: a 1,000-task fan-out and a 200-link chain, whole process (start to exit), marginal ms per
  task = (T(N) - T(1)) / (N - 1); tinyo (``tinyo run --stop-after 1``, the event a file already in the
  watched folder), doit (``doit -n 2``, skipped with a message when not installed) and GNU make
  (``make -j2``), each with a trivial task.
- ``startup``: ``tinyo run`` on a one-task recipe to exit, beside ``python -c pass`` and
  ``python -c "import tinyo"``; wall and CPU (the whole process tree) of each.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENGINE = HERE.parent / "engine"
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
PY = sys.executable
TINYO = [str(Path(PY).with_name("tinyo"))] if Path(PY).with_name("tinyo").exists() else [PY, "-m", "tinyo"]
"""The ``tinyo`` command as users run it: the installed entry point (``tinyo.cli_direct:main``; with
PYTHONPATH below it runs this checkout's engine), or ``python -m tinyo``, the same entry point."""
PYCACHE = tempfile.mkdtemp(prefix="bench-pycache-")
"""Compiled modules are kept (here, out of the source tree), as an installed package's are: with
PYTHONDONTWRITEBYTECODE set (as on the project machine) every process would compile every module it
imports, each time, which no user's installation does."""
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "NO_COLOR": "1",
       "PYTHONPATH": str(ENGINE), "PYTHONPYCACHEPREFIX": PYCACHE}

# ============================================================================ the burst

BURST_RECIPE = '''
import os
from tinyo import DES, Config, Execution, TinyOConfig, meta_task

MARKER = {marker!r}


def mark(context):
    for dep in context["deps"]:
        fd = os.open(MARKER, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (dep + "\\n").encode())
        os.close(fd)


@meta_task(root=True)
def on_file(event):
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["done " + event]), ops=[(mark, Config({{}}))])])


config = TinyOConfig(sql_conn={db!r}, dirs=[{inbox!r}], max_workers=2, execution=Execution.PROCESSES)
'''

PLAIN = r'''
import hashlib, os, queue, sqlite3, sys
from concurrent.futures import ProcessPoolExecutor
from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEventHandler
from watchdog.observers import Observer

inbox, db, marker = sys.argv[1:4]


def op(path):  # the same trivial op as tinyo's
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (path + "\n").encode())
    os.close(fd)


class Handler(FileSystemEventHandler):
    def __init__(self, q):
        self.q = q

    def on_closed(self, event):
        self.q.put(os.fsdecode(event.src_path))

    def on_moved(self, event):
        self.q.put(os.fsdecode(event.dest_path))


def main():
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE files (path TEXT PRIMARY KEY, size INT, mtime REAL, hash TEXT, status TEXT)")
    pool = ProcessPoolExecutor(2)
    list(pool.map(len, ["warm"] * 8))
    q = queue.Queue()
    observer = Observer()
    observer.schedule(Handler(q), inbox, event_filter=[FileClosedEvent, FileMovedEvent])
    observer.start()
    print("ready", flush=True)
    while True:
        batch = [q.get()]
        while len(batch) < 1000:
            try:
                batch.append(q.get_nowait())
            except queue.Empty:
                break
        rows = []
        for path in batch:
            st = os.stat(path)
            with open(path, "rb") as fh:
                digest = hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
            rows.append((path, st.st_size, st.st_mtime, digest, "new"))
        with conn:
            conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)", rows)
        list(pool.map(op, batch, chunksize=max(1, len(batch) // 8)))
        with conn:
            conn.executemany("UPDATE files SET status = 'done' WHERE path = ?", [(p,) for p in batch])


main()
'''

WRITER = r"""
import json, os, sys, time
folder, n = sys.argv[1], int(sys.argv[2])
first = time.time()
for i in range(n):
    with open(os.path.join(folder, f"f_{i:06d}.dat"), "w") as fh:
        fh.write(f"{i}\n")
print(json.dumps({"first": first, "last_close": time.time(), "cpu": time.process_time()}))
"""


def process_tree(root: int, cmdline: bool = False) -> dict[int, tuple[list[str], str]]:
    """``root`` and its live descendants (Linux ``/proc``): pid -> (its stat fields after the command name,
    its command line when asked for)."""
    parent: dict[int, int] = {}
    info: dict[int, tuple[list[str], str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            cmd = ""
            if cmdline:
                with open(f"/proc/{entry}/cmdline", errors="replace") as fh:
                    cmd = fh.read()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        info[pid] = (fields, cmd)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            out[pid] = info[pid]
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, with the children they reaped (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
               for fields, _ in process_tree(root).values())


class Reader(threading.Thread):
    """Reads a child's output as fast as it comes (a terminal or a pipe reader), counting lines."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.lines, self.tail = fd, 0, b""
        self.seen = threading.Event()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return  # a pty's master reads EIO once the child side is closed
            if not chunk:
                return
            self.lines += chunk.count(b"\n")
            self.tail = (self.tail + chunk)[-4000:]
            self.seen.set()


def engines(baseline: str | None) -> dict[str, Path]:
    """The engines a ``--baseline`` benchmark measures: this checkout's, and another checkout's first."""
    cases = {"tinyo": ENGINE}
    return {"baseline": Path(baseline).resolve() / "engine", **cases} if baseline else cases


def interleaved(cases: dict[str, Path], rounds: int, measure: Callable[[Path], dict[str, Any]],
                say: Callable[[dict[str, Any]], str]) -> dict[str, list[dict[str, Any]]]:
    """``measure(engine)`` of each case, the cases alternated within each of ``rounds`` rounds (so that a
    busier minute of the machine falls on both), each result printed as ``say`` words it."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, engine in cases.items():
            res = measure(engine)
            results[name].append(res)
            print(f"round {r + 1} {name}: {say(res)}", flush=True)
    return results


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait for a process asked to stop; kill it if it has not stopped within ``timeout`` seconds."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def marker_lines(marker: Path) -> list[str]:
    try:
        return marker.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(marker: Path, n: int, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while n and time.monotonic() < deadline:
        if marker.exists() and marker.read_bytes().count(b"\n") >= n:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return not n


Script = Callable[[Path, Path, Path, Path], list[str]]
"""The command line of a pipeline written as a script, given (inbox, state file, marker file, recipe): it
prints ``ready`` once it watches, takes no file in before that (no start-up scan), and is stopped by a
SIGTERM to its process group."""


def plain_script(inbox: Path, db: Path, marker: Path, recipe: Path) -> list[str]:
    return [PY, "-c", PLAIN, str(inbox), str(db), str(marker)]


def process_label(pid: int, root: int, cmd: str) -> str:
    """Which part of a case a process is: the case's own process, tinyo's watcher, or a worker (tinyo's,
    a process pool's, or a forked one)."""
    if pid == root:
        return "main"
    if "_watch_main" in cmd:
        return "watcher"
    if "resource_tracker" in cmd:
        return "other"
    return "workers"


def cpu_by_process(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (its label, its CPU seconds with the children it reaped) for ``root`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    return {pid: (process_label(pid, root, cmd), sum(int(f) for f in fields[11:15]) / tick)
            for pid, (fields, cmd) in process_tree(root, cmdline=True).items()}


def burst_case(kind: str, n: int, timeout: float, script: Script | None = None,
               collect: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """One burst through ``kind``: ``plain`` (PLAIN), a ``script`` (see :data:`Script`), or ``tinyo run``
    with its text log on a pty (``text``) or ``--json`` on a pipe (``json``). ``collect`` reads what the
    case's process left in its work folder once it stopped (its result is ``collected``)."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-burst-{kind}-", dir=TMPFS))
    inbox, marker, db, recipe = work / "in", work / "marker", work / "state.db", work / "recipe.py"
    inbox.mkdir()
    recipe.write_text(BURST_RECIPE.format(marker=str(marker), db=str(db), inbox=str(inbox)))
    warm = 4
    for i in range(warm):  # taken in by the start-up scan: both workers import the op before the burst
        (inbox / f"warm_{i}.dat").write_text("w")
    master = None
    if kind == "plain" and script is None:
        script = plain_script
    if script is not None:
        for f in inbox.iterdir():  # a script has no start-up scan
            f.unlink()
        proc = subprocess.Popen(script(inbox, db, marker, recipe), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENV, start_new_session=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready"
        if line.strip() != b"ready":
            proc.kill()
            raise RuntimeError(f"{kind}: not ready: {line!r} {proc.stderr.read().decode(errors='replace')[-1500:]}")
        warm = 0
        reader = Reader(proc.stdout.fileno())
    else:
        cmd = [*TINYO, "run", str(recipe)]
        if kind == "json":
            cmd.append("--json")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
            assert proc.stdout is not None
            reader = Reader(proc.stdout.fileno())
        else:  # the text log on a terminal
            master, slave = pty.openpty()
            proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=ENV)
            os.close(slave)
            reader = Reader(master)
    reader.start()
    try:
        if not wait_lines(marker, warm, 60, proc):
            raise RuntimeError(f"{kind}: not ready: {reader.tail.decode(errors='replace')[-1500:]}")
        time.sleep(0.5)  # let the warm-up settle (idle engine)
        cpu0 = tree_cpu(proc.pid)
        procs0 = cpu_by_process(proc.pid)
        out = subprocess.run([PY, "-c", WRITER, str(inbox), str(n)], check=True, capture_output=True, text=True)
        written = json.loads(out.stdout)
        last_close = written["last_close"]
        done = wait_lines(marker, warm + n, timeout, proc)
        cpu = tree_cpu(proc.pid) - cpu0
        procs: dict[str, float] = {}
        for pid, (label, spent) in cpu_by_process(proc.pid).items():  # a process started meanwhile: all of it
            procs[label] = procs.get(label, 0.0) + spent - procs0.get(pid, (label, 0.0))[1]
        last_op = marker.stat().st_mtime_ns / 1e9  # the last append (the file system's coarse clock: a few ms)
        time.sleep(0.5)  # a late duplicate would show up now
        names = marker_lines(marker)
    finally:
        if script is not None:
            os.killpg(proc.pid, signal.SIGTERM)  # it and its pool; it has nothing to save
        else:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: tinyo stops as a user stops it
        wait_or_kill(proc)
        reader.join(5)
        if master is not None:
            os.close(master)
    burst = [p for p in names if os.path.basename(p).startswith("f_")]
    once = done and len(burst) == n and len(set(burst)) == n
    runs = None
    collected = collect(work) if collect is not None else None
    if script is None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            runs = conn.execute("SELECT count(*), sum(status = 'ok'), count(DISTINCT des_id) FROM runs").fetchone()
        finally:
            conn.close()
        once = once and runs == (n + warm, n + warm, n + warm)
    shutil.rmtree(work, ignore_errors=True)
    return {"lag_s": last_op - last_close, "span_s": last_op - written["first"], "cpu_s": cpu, "exactly_once": once,
            "done": done, "marker_lines": len(burst), "distinct": len(set(burst)), "state_runs": runs,
            "log_lines": reader.lines, "procs": procs, "collected": collected}


# ============================================================================ peers and start-up

PEER_RECIPE = '''
from tinyo import DES, Config, Execution, TinyOConfig, meta_task

N, SHAPE = {n}, {shape!r}


def noop(context):
    return None


@meta_task(root=True)
def on_file(event):
    out, prev = [], event
    for i in range(N):
        targ = f"t{{i}}"
        out.append(DES(deps=frozenset([prev if SHAPE == "chain" else event]), targs=frozenset([targ]),
                       ops=[(noop, Config({{}}))]))
        prev = targ
    return (None, out)


config = TinyOConfig(sql_conn={db!r}, dirs=[{inbox!r}], max_workers=2, execution=Execution.PROCESSES)
'''

DODO = '''
N, SHAPE = {n}, {shape!r}
DOIT_CONFIG = {{"verbosity": 0}}


def noop():
    return True


def task_t():
    for i in range(N):
        yield {{"name": str(i), "actions": [noop], "task_dep": [f"t:{{i - 1}}"] if SHAPE == "chain" and i else []}}
'''


def makefile(n: int, shape: str) -> str:
    lines = [".PHONY: all " + " ".join(f"t{i}" for i in range(n)), "all: " + " ".join(f"t{i}" for i in range(n))]
    for i in range(n):
        dep = f" t{i - 1}" if shape == "chain" and i else ""
        lines.append(f"t{i}:{dep}\n\t@true")
    return "\n".join(lines) + "\n"


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the whole process tree, reaped) of one command, which must succeed."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, timeout=300)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-1500:]}")
    return wall, (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)


def peer_run(tool: str, n: int, shape: str) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-peer-{tool}-", dir=TMPFS))
    try:
        if tool == "tinyo":
            inbox = work / "in"
            inbox.mkdir()
            (inbox / "go.dat").write_text("go")  # the one event, taken in by the start-up scan
            (work / "recipe.py").write_text(PEER_RECIPE.format(n=n, shape=shape, db=str(work / "state.db"),
                                                               inbox=str(inbox)))
            took = timed([*TINYO, "run", "recipe.py", "--stop-after", "1"], work)
            conn = sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True)
            try:
                runs = conn.execute("SELECT count(*), sum(status = 'ok'), count(DISTINCT des_id) FROM runs").fetchone()
            finally:
                conn.close()
            if runs != (n, n, n):  # exactly once, or the figure means nothing
                raise RuntimeError(f"tinyo {shape} {n}: runs (all, ok, distinct DES) {runs}, wanted {n} each")
            return took
        if tool == "doit":
            (work / "dodo.py").write_text(DODO.format(n=n, shape=shape))
            return timed([PY, "-m", "doit", "-n", "2"], work)
        (work / "Makefile").write_text(makefile(n, shape))
        return timed(["make", "-s", "-j2"], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def have_doit() -> bool:
    return subprocess.run([PY, "-c", "import doit"], capture_output=True).returncode == 0


# ============================================================================ report


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--peer-rounds", type=int, default=5, help="rounds of the peers and start-up cases")
    parser.add_argument("--only", default="burst,peers,startup")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args()
    only = set(args.only.split(","))
    res: dict[str, Any] = {"files": args.files, "rounds": args.rounds, "peer_rounds": args.peer_rounds,
                           "load_before": os.getloadavg(),
                           "cpus": os.cpu_count()}
    t_all = time.perf_counter()
    if "burst" in only:
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "text": [], "json": []}
        for _ in range(args.rounds):
            for kind in runs:  # interleaved: load on the machine falls on every case alike
                runs[kind].append(burst_case(kind, args.files, 300))
        base = {k: med(runs["plain"], k) for k in ("lag_s", "cpu_s")}
        res["burst"] = {kind: {"lag_s": med(r, "lag_s"), "cpu_s": med(r, "cpu_s"),
                               "lag_x": med(r, "lag_s") / base["lag_s"], "cpu_x": med(r, "cpu_s") / base["cpu_s"],
                               "exactly_once": all(x["exactly_once"] for x in r), "rounds": r}
                        for kind, r in runs.items()}
    if "peers" in only or "startup" in only:
        tools = ["tinyo", "make"] + (["doit"] if have_doit() else [])
        if "doit" not in tools:
            print("doit is not installed (pip install doit): its column is skipped", file=sys.stderr)
        shapes = {"fanout": args.fanout, "chain": args.chain} if "peers" in only else {"fanout": 0}
        cells: dict[str, list[tuple[float, float]]] = {}
        peer_run("tinyo", 1, "chain")  # compiles the modules every case imports (kept in PYCACHE)
        for _ in range(args.peer_rounds):
            for name, cmd in (("python -c pass", [PY, "-c", "pass"]),
                              ("python -c 'import tinyo'", [PY, "-c", "import tinyo"])):
                cells.setdefault(name, []).append(timed(cmd, HERE))
            for tool in tools if "peers" in only else ["tinyo"]:
                for shape, n in shapes.items():
                    one = peer_run(tool, 1, shape)
                    cells.setdefault(f"{tool} {shape} 1", []).append(one)
                    if tool == "tinyo":
                        cells.setdefault("tinyo run (1 task)", []).append(one)
                    if n:
                        many = peer_run(tool, n, shape)  # right after its T(1): a pair under the same load
                        cells.setdefault(f"{tool} {shape} {n}", []).append(many)
                        cells.setdefault(f"{tool} {shape} marginal", []).append(
                            ((many[0] - one[0]) / (n - 1), (many[1] - one[1]) / (n - 1)))
        res["raw"] = {k: {"wall_s": statistics.median(w for w, _ in v), "cpu_s": statistics.median(c for _, c in v),
                          "samples": v} for k, v in cells.items()}
        if "peers" in only:
            res["peers"] = {shape: {tool: {"ms_per_task": 1000 * res["raw"][f"{tool} {shape} marginal"]["wall_s"],
                                           "cpu_ms_per_task": 1000 * res["raw"][f"{tool} {shape} marginal"]["cpu_s"]}
                                    for tool in tools} for shape in shapes}
        res["startup"] = {k: res["raw"][k]
                          for k in ("python -c pass", "python -c 'import tinyo'", "tinyo run (1 task)")}
    res["load_after"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - t_all
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def report(res: dict[str, Any]) -> None:
    print(f"load average before {res['load_before'][0]:.1f}, after {res['load_after'][0]:.1f} on {res['cpus']} CPUs; "
          f"{res['rounds']} burst rounds, {res['peer_rounds']} peer rounds (medians); {res['seconds']:.0f} s in all")
    if "burst" in res:
        b = res["burst"]
        print(f"\n{res['files']:,} files at once on tmpfs; baseline: the plain durable pipeline")
        print(f"{'case':<28}{'lag s':>8}{'x base':>8}{'CPU s':>8}{'x base':>8}  exactly once  log lines")
        for kind, label in (("plain", "plain pipeline (baseline)"), ("text", "tinyo run, text log (pty)"),
                            ("json", "tinyo run --json (pipe)")):
            r = b[kind]
            lines = int(statistics.median(x["log_lines"] for x in r["rounds"]))
            print(f"{label:<28}{r['lag_s']:>8.2f}{r['lag_x']:>8.1f}{r['cpu_s']:>8.2f}{r['cpu_x']:>8.1f}  "
                  f"{'yes' if r['exactly_once'] else 'NO':<12}  {lines if kind != 'plain' else '-'}")
        print("goals: lag <= 2x, CPU <= 3x")
    if "peers" in res:
        print("\nmarginal ms per task, whole process: median over rounds of (T(N) - T(1)) / (N - 1), T(1) and T(N) "
              "run back to back; wall (CPU of the process tree)")
        for shape, tools in res["peers"].items():
            peers = [v["ms_per_task"] for t, v in tools.items() if t != "tinyo"]
            best = min(peers)
            cells = "  ".join(f"{t} {v['ms_per_task']:.2f} ({v['cpu_ms_per_task']:.2f})" for t, v in tools.items())
            print(f"{shape:<8} {cells}  tinyo / best peer {tools['tinyo']['ms_per_task'] / best:.2f} (goal <= 0.5)")
    if "startup" in res:
        print("\nstart to exit, wall s (CPU s)")
        bare = res["startup"]["python -c pass"]
        for name, v in res["startup"].items():
            print(f"  {name:<26}{v['wall_s']:>7.3f} ({v['cpu_s']:.3f})  x python -c pass "
                  f"{v['wall_s'] / bare['wall_s']:.1f} ({v['cpu_s'] / bare['cpu_s']:.1f})")
        print("  goal: tinyo run <= 0.3 s")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(PYCACHE, ignore_errors=True)
