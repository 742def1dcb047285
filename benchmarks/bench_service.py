"""Provides the control channel's speed benchmark: CLI command to effect, each figure beside a baseline.

    python benchmarks/bench_service.py [--quick] [--only cli|burst|hub] [--json PATH]

Real processes, a real socket, a temp folder and state file; no assertions: it prints a table and
(with ``--json``) writes every sample. Rows (the issue's target in brackets):

- ``cli_channel``: ``tinyo inject RECIPE EVENT --db PATH`` launched -> its ``event_received`` fact on the
  engine's bus, with the engine started by ``tinyo start`` (the command goes through the control socket,
  the direct way: no typer, no recipe run) [p95 <= 100 ms];
- ``cli_recipe``: the same without ``--db`` (the engine is found through the recipe index);
- ``cli_full``: the same command through the full command line (``python -m tinyo.cli``: typer, and
  the recipe run to learn its state file), as every command went before the direct way;
- ``cli_requests``: the same command with an engine that serves no control channel (an engine in this
  process, as before this change): the request goes into the state file's requests table, which the
  engine reads once a second; the baseline of the row above;
- ``cli_floor``: ``tinyo --help`` launched -> exited: what starting Python and the CLI costs at all
  (no command can take effect sooner), the floor of both rows above, beside ``python -c pass``;
- ``channel``: a connected client's ``inject`` -> ``event_received`` seen by a subscribed client of the
  same engine (the channel's own cost, no process start), beside the same inject called in the
  engine's process (``Engine.inject`` -> the bus subscriber).

- ``burst_none`` / ``burst_two``: files dropped at once into the watched folder of an engine started by
  ``tinyo start`` (benchmarks/recipes/bench_recipe.py: one trivial op per file), last file closed (and
  first file written) -> the engine idle again (its ``stats``, asked every 100 ms), and the engine
  process's CPU, with no client subscribed and then with two ``tinyo events --follow --json`` processes
  subscribed to every fact (as two attached consoles would be; their own CPU is shown too: on a small
  machine they compete with the engine for it) [two within 10% of none]. ``--rounds N`` pairs of bursts,
  after one burst not counted, the order alternating within pairs (none first, then two first); beside
  the ratio of the medians, each pair's ratio two / none, their median, interquartile range and a
  distribution-free 95% interval of the median, which says whether the goal holds, is missed, or is not
  decided by that many pairs (15 pairs: the 4th and 12th of the ordered ratios).

- ``hub_two`` / ``hub_none``: the channel's share of the engine process alone, without the machine's
  other processes: a burst's worth of facts (4 per file, 23,000 files) handed to the control hub
  the way the engine's bus does, with two clients subscribed over socket pairs (their readers
  drain them), beside the same facts with no client subscribed; process CPU.

Times are ``time.time()`` here and the engine's bus ``ts`` (the same host clock).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "engine"))
sys.path.insert(0, str(HERE))

from bench_threads import SPY, thread_names, thread_times  # noqa: E402

SPY_OK = Path(SPY[0]).exists()
"""Whether py-spy is at hand to name the engine's threads (Python threads are all "tinyo" to the OS)."""

from tinyo import events as ev  # noqa: E402
from tinyo.control.client import ControlClient  # noqa: E402
from tinyo.control.protocol import Fact  # noqa: E402
from tinyo.engine import Engine  # noqa: E402

RECIPE = """\
from tinyo import TinyOConfig, meta_task

@meta_task(root=True)
def on_event(event):
    return (None, [])  # the effect measured is the event on the bus; no op runs

config = TinyOConfig(sql_conn='{db}', dirs=[], max_workers=1)
"""


def env() -> dict[str, str]:
    """The commands' environment: this checkout's engine first (the installed ``tinyo`` entry point runs it),
    so that an export of another revision measures its own engine."""
    path = os.pathsep.join(p for p in (str(HERE.parent / "engine"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


SCRIPT = Path(sys.executable).with_name("tinyo")


def cli(*args: str) -> list[str]:
    """``tinyo ARGS`` as a user runs it: the installed entry point beside this Python (else ``python -m
    tinyo``, the same module); a request command takes the direct way when it can."""
    return [str(SCRIPT), *args] if SCRIPT.exists() else [sys.executable, "-m", "tinyo", *args]


def full_cli(*args: str) -> list[str]:
    """The full command line, typer and all, whatever the command."""
    return [sys.executable, "-m", "tinyo.cli", *args]


class Seen:
    """Event names and the bus time they were received at, from any thread."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()

    def add(self, name: str, ts: float) -> None:
        with self.cond:
            self.times[name] = ts
            self.cond.notify_all()

    def wait(self, name: str, timeout: float = 10.0) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: name in self.times, timeout)
            return self.times.get(name)


def _follow(db: str, seen: Seen) -> ControlClient:
    client = ControlClient.connect(db, "bench")

    def run() -> None:
        try:
            for message in client.subscribe(history=False):
                if isinstance(message, Fact) and isinstance(message.fact, ev.EventReceived):
                    seen.add(message.fact.name, message.fact.ts)
        except OSError:
            return  # closed at the end of the case

    threading.Thread(target=run, daemon=True).start()
    return client


def cli_rounds(recipe: Path, db: str | None, seen: Seen, n: int, tag: str, command: Any = cli) -> list[float]:
    out = []
    for i in range(n):
        name = f"{tag}-{i}"
        t0 = time.time()
        args = ("inject", str(recipe), name) + (("--db", db) if db else ())
        proc = subprocess.run(command(*args), capture_output=True, text=True, env=env(), cwd=recipe.parent)
        if proc.returncode != 0:
            raise SystemExit(f"tinyo inject failed: {proc.stderr.strip()}")
        ts = seen.wait(name)
        if ts is not None:
            out.append((ts - t0) * 1000)
        time.sleep(0.05)
    return out


def floor_rounds(n: int, command: list[str]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        subprocess.run(command, capture_output=True, env=env(), check=True)
        out.append((time.time() - t0) * 1000)
    return out


def channel_rounds(db: str, seen: Seen, n: int) -> list[float]:
    out = []
    with ControlClient.connect(db, "bench-commands") as client:
        for i in range(n):
            name = f"lib-{i}"
            t0 = time.time()
            client.command("inject", event=name)
            ts = seen.wait(name)
            if ts is not None:
                out.append(max(0.0, ts - t0) * 1000)
            time.sleep(0.01)
    return out


def in_process_rounds(engine: Engine, seen: Seen, n: int) -> list[float]:
    out = []
    for i in range(n):
        name = f"direct-{i}"
        t0 = time.time()
        engine.inject(name)
        ts = seen.wait(name)
        if ts is not None:
            out.append(max(0.0, ts - t0) * 1000)
        time.sleep(0.01)
    return out


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _helpers(engine: int) -> list[int]:
    """The engine's child processes other than its workers and its watcher: any process it runs for its
    subscribers (an encoder, say), whose CPU counts as the engine's (none today: the followers render their
    own lines)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"tinyo._worker_main" in cmdline or b"tinyo._watch_main" in cmdline:
                continue
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == engine:  # its parent
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


@dataclass
class Started:
    """An engine started by ``tinyo start`` on the benchmark recipe in a folder of its own, warmed up."""

    folder: Path
    inbox: Path
    recipe: Path
    db: str
    env: dict[str, str]
    control: ControlClient

    def settled(self, total: int) -> bool:
        """Whether ``total`` events were taken in and every run they made has ended."""
        stats = self.control.query("stats")
        return stats["events_total"] >= total and stats["queued"] == 0 and stats["running"] == 0


WARM = 50
"""Files the engine takes in before a burst is measured: workers import the recipe, caches fill."""


QUIET = 0.5
"""Seconds a burst waits, once the engine is warm (and any subscriber has its history), before its CPU is read:
what the warm-up's last cycle and the history sent to the followers leave running is counted in neither kind."""


@contextmanager
def started_engine(prefix: str, extra_env: dict[str, str] | None = None) -> Iterator[Started]:
    """``tinyo start`` on the benchmark recipe (``extra_env`` added to its environment), ``WARM`` files taken
    in; stopped (``--now``) and its folder removed on the way out."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    inbox = folder / "inbox"
    inbox.mkdir()
    recipe = folder / "recipe.py"
    shutil.copy(HERE / "recipes" / "bench_recipe.py", recipe)
    db = str(folder / "s.db")
    benv = {**env(), "TINYO_BENCH_DIRS": str(inbox), "TINYO_BENCH_DB": db, **(extra_env or {})}
    started = subprocess.run(cli("start", str(recipe), "--db", db), capture_output=True, text=True, env=benv)
    if started.returncode != 0:
        raise SystemExit(f"tinyo start failed: {started.stderr.strip()}")
    try:
        engine = Started(folder, inbox, recipe, db, benv, ControlClient.connect(db, "bench-control"))
        for i in range(WARM):
            (inbox / f"warm{i}").write_text("w")
        while not engine.settled(WARM):
            time.sleep(0.1)
        yield engine
    finally:
        subprocess.run(cli("stop", str(recipe), "--db", db, "--now"), capture_output=True, env=benv)
        shutil.rmtree(folder, ignore_errors=True)


def burst(n: int, subscribers: int) -> dict[str, Any]:
    """One engine, ``n`` files at once, ``subscribers`` clients reading every fact."""
    followers: list[subprocess.Popen[bytes]] = []
    with started_engine("tinyo-bench-burst-") as engine:
        try:
            folder, inbox, recipe, db, benv, control = (engine.folder, engine.inbox, engine.recipe, engine.db,
                                                        engine.env, engine.control)
            for k in range(subscribers):  # separate processes, as consoles would be: `tinyo events --follow --json`
                out = open(folder / f"sub{k}.jsonl", "w")
                followers.append(subprocess.Popen(cli("events", str(recipe), "--db", db, "--follow", "--json"),
                                                  stdout=out, stderr=subprocess.DEVNULL, env=benv))
                out.close()
            while subscribers and sum(_lines(folder / f"sub{k}.jsonl") for k in range(subscribers)) == 0:
                time.sleep(0.05)  # subscribed: their history has arrived
            time.sleep(QUIET)  # with or without followers alike: the warm-up's and the history's work ends first
            pid = control.pid
            names = thread_names(pid) if SPY_OK else {}
            threads0 = thread_times(pid)
            cpu0 = _cpu(pid)
            helpers = _helpers(pid)
            helpers0 = sum(_cpu(h) for h in helpers)
            subs0 = sum(_cpu(f.pid) for f in followers)
            first = time.time()
            for i in range(n):
                with open(inbox / f"f{i:06d}", "w") as fh:
                    fh.write("x")
            closed = time.time()
            while not engine.settled(WARM + n):
                time.sleep(0.1)
            done = time.time()
            cpu = _cpu(pid) - cpu0
            helpers_cpu = sum(_cpu(h) for h in helpers) - helpers0
            threads: dict[str, float] = {}
            for tid, (used, _switches) in thread_times(pid).items():
                name = names.get(tid, "(not named)")
                threads[name] = threads.get(name, 0.0) + used - threads0.get(tid, (0.0, 0))[0]
            control.close()
            time.sleep(0.5)  # the followers print what is still on its way
            subs = sum(_cpu(f.pid) for f in followers) - subs0
            read = sum(_lines(folder / f"sub{k}.jsonl") for k in range(subscribers))
            return {"lag_s": done - closed, "total_s": done - first, "cpu_s": cpu, "facts_read": float(read),
                    "subscribers_cpu_s": subs, "helpers_cpu_s": helpers_cpu, "threads": threads}
        finally:
            for follower in followers:
                follower.terminate()
                follower.wait(10)


def hub_cpu(files: int, subscribers: int, cycle: int = 300, pause: float = 0.001,
            real_times: bool = False) -> tuple[float, float]:
    """CPU seconds of this process (its clients' writers and readers included), and of the hub's own thread,
    to pass a file's facts (the 4 a file dropped into a watched folder publishes, README "Facts") through a
    Hub to ``subscribers`` clients (each gets the same rows: consoles and `tinyo events --json` alike), handed
    over ``cycle`` at a time every ``pause`` seconds (as the engine's cycles do). The facts' times are 1.0 (short
    to write as JSON), or with ``real_times`` what a burst's are (``time.time()``-like, 17 digits)."""
    import socket

    from tinyo.control.hub import Hub, Outbox

    facts: list[ev.BusEvent] = []
    start = time.time()
    for i in range(files):
        t = start + i * 1.37e-4 if real_times else 1.0
        path = f"/tmp/bench/inbox/f{i:06d}"
        des_id = f"{i:016x}"
        facts += [ev.EventReceived(t, i, path, "file", t, 1, 0, 1),
                  ev.DESRegistered(t, des_id, frozenset({path}), frozenset({"done " + path}), ("noop",), "on_file",
                                   path, False, "queued", "queued: never built"),
                  ev.OpStarted(t, i, des_id, "noop", "w1", 1, frozenset({"done " + path})),
                  ev.OpFinished(t, i, des_id, "noop", "w1", 0.001, None, ("done " + path,), (1,))]
    stopped = threading.Event()
    hub_thread: list[float] = []

    def on_stopped(_reason: str) -> None:  # called on the hub's thread as it ends
        hub_thread.append(hub_thread_cpu(hub))
        stopped.set()

    hub = Hub(on_stopped)
    hub.start()
    for _ in range(subscribers):
        mine, theirs = socket.socketpair()
        box = Outbox(sock=mine)

        def write(box: Outbox = box, sock: socket.socket = mine) -> None:
            while (lines := box.take()) is not None:
                sock.sendall(b"".join(lines))

        def read(sock: socket.socket = theirs) -> None:
            while sock.recv(1 << 20):
                pass

        threading.Thread(target=write, daemon=True).start()
        threading.Thread(target=read, daemon=True).start()
        hub.subscribe(box, False)
    time.sleep(0.1)
    hub.on_facts([ev.EngineState(1.0, "running")])  # the hub thread starts counting from here
    time.sleep(0.1)
    thread0 = hub_thread_cpu(hub)
    cpu0 = time.process_time()
    for i in range(0, len(facts), cycle):
        hub.on_facts(facts[i:i + cycle])  # a cycle's facts, as the bus hands them to the hub
        time.sleep(pause)  # the engine publishes a cycle's facts after its commit, then works on
    hub.on_facts([ev.EngineState(1.0, "stopped")])
    stopped.wait(120)
    return time.process_time() - cpu0, hub_thread[0] - thread0


def hub_thread_cpu(hub: Any) -> float:
    """The CPU seconds the hub's thread has used so far (from ``/proc``)."""
    with open(f"/proc/self/task/{hub._thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cli_results(quick: bool) -> dict[str, list[float]]:
    """The command-to-effect rows and their floors."""
    n_cli, n_old, n_lib = (15, 6, 100) if quick else (40, 12, 300)
    folder = Path(tempfile.mkdtemp(prefix="tinyo-bench-service-"))
    results: dict[str, list[float]] = {}
    try:
        recipe = folder / "recipe.py"
        db = str(folder / "s.db")
        recipe.write_text(RECIPE.replace("{db}", db))
        # --- through the channel: `tinyo start`, a subscribed client here
        started = subprocess.run(cli("start", str(recipe)), capture_output=True, text=True, env=env())
        if started.returncode != 0:
            raise SystemExit(f"tinyo start failed: {started.stderr.strip()}")
        seen = Seen()
        follower = _follow(db, seen)
        try:
            for turn in range(2 if quick else 3):  # interleaved, so a change in the machine's load hits each
                for key, db_arg, command in (("cli_channel", db, cli), ("cli_recipe", None, cli),
                                             ("cli_full", db, full_cli)):
                    results.setdefault(key, []).extend(
                        cli_rounds(recipe, db_arg, seen, n_cli // 3 + 1, f"{key}{turn}", command))
                results.setdefault("cli_floor", []).extend(floor_rounds(n_cli // 3 + 1, cli("--help")))
                results.setdefault("python_floor", []).extend(
                    floor_rounds(n_cli // 3 + 1, [sys.executable, "-c", "pass"]))
            results["channel"] = channel_rounds(db, seen, n_lib)
        finally:
            follower.close()
            subprocess.run(cli("stop", str(recipe), "--now"), capture_output=True, env=env())
        # --- the requests table: an engine in this process without a control channel
        seen = Seen()
        engine = Engine.from_path(recipe, db=db)
        engine.bus.subscribe(lambda e: seen.add(e.name, e.ts) if isinstance(e, ev.EventReceived) else None)
        engine.start()
        try:
            results["in_process"] = in_process_rounds(engine, seen, n_lib)
            results["cli_requests"] = cli_rounds(recipe, db, seen, n_old, "old")
        finally:
            engine.stop(5)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def print_cli(results: dict[str, Any]) -> None:
    rows = [
        ("tinyo inject --db -> event on bus, direct (target p95 <= 100 ms)", "cli_channel", "cli_full"),
        ("tinyo inject (recipe index) -> event on bus, direct", "cli_recipe", "cli_full"),
        ("tinyo inject -> event on bus, full CLI over the channel (before)", "cli_full", None),
        ("tinyo inject -> event on bus, via the requests table", "cli_requests", None),
        ("tinyo --help, launch -> exit (the full CLI's floor)", "cli_floor", "python_floor"),
        ("python -c pass, launch -> exit (Python's floor)", "python_floor", None),
        ("client inject -> event on bus, over the socket", "channel", "in_process"),
        ("Engine.inject -> event on bus, in the engine's process", "in_process", None),
    ]
    print(f"{'case':<72} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'ratio p95':>10}")
    for title, key, base in rows:
        values = results[key]
        ratio = (f"{pct(values, 0.95) / pct(results[base], 0.95):.2f}x" if base else "")
        print(f"{title:<72} {len(values):>4} {pct(values, 0.5):>8.1f} {pct(values, 0.95):>8.1f} {ratio:>10}")
    floor = results["python_floor"]
    over = [v - statistics.median(floor) for v in results["cli_channel"]]
    print(f"direct CLI p95 above the median python -c pass: {pct(over, 0.95):.1f} ms")


def burst_results(quick: bool, rounds: int = 3) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` pairs of bursts, one with no subscriber and one with two, after one burst not counted (the
    machine's caches and the installed modules warm for the first pair as for the others). Within a pair the
    order alternates (none first, then two first), so that neither kind always follows the other's engine
    stopping, or comes first after a change in the machine's load."""
    n_burst, rounds = (3000, 2) if quick else (10_000, rounds)
    bursts: dict[str, list[dict[str, Any]]] = {"burst_none": [], "burst_two": []}
    burst(n_burst, 0)  # warm-up, not counted
    for r in range(rounds):
        order = (0, 2) if r % 2 == 0 else (2, 0)
        for subscribers in order:
            bursts["burst_two" if subscribers else "burst_none"].append(burst(n_burst, subscribers))
    return bursts


def median_bounds(n: int, level: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (low, high) of the sorted values between which the median lies with at least ``level``
    confidence (distribution-free: the number of values below the median is binomial(n, 1/2)); None when n is
    too small for it."""
    from math import comb

    k = -1
    cumulative = 0.0
    while k + 1 < n:
        p = comb(n, k + 1) / 2 ** n
        if 2 * (cumulative + p) > 1 - level:
            break
        cumulative += p
        k += 1
    return None if k < 0 else (k, n - 1 - k)


def paired(none: list[dict[str, Any]], two: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Each pair's ratio two / none for ``key`` (the pairs in the order run), their median, quartiles and a
    distribution-free 95% interval of the median."""
    ratios = [b[key] / a[key] for a, b in zip(none, two) if a[key] > 0]
    ordered = sorted(ratios)
    out: dict[str, Any] = {"ratios": ratios, "n": len(ratios)}
    if ratios:
        q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
        out.update(median=statistics.median(ordered), q1=q[0], q3=q[2])
        bounds = median_bounds(len(ordered))
        if bounds is not None:
            out["ci95"] = (ordered[bounds[0]], ordered[bounds[1]])
    return out


GOAL = 1.10
"""The issue's target: two subscribed within 10% of none."""


def verdict(view: dict[str, Any]) -> str:
    if "ci95" not in view:
        return "too few pairs to say"
    low, high = view["ci95"]
    if high <= GOAL:
        return "the goal holds"
    if low > GOAL:
        return "the goal is missed"
    return "not decided by these pairs"


def print_bursts(bursts: dict[str, list[dict[str, Any]]], n_burst: int) -> None:
    none = bursts["burst_none"]
    two = bursts["burst_two"]
    for what, key, unit in (("lag, last file closed -> idle", "lag_s", "s"), ("first file -> idle", "total_s", "s"),
                            ("engine process CPU", "cpu_s", "s")):
        a = statistics.median(r[key] for r in none)
        b = statistics.median(r[key] for r in two)
        print(f"burst of {n_burst} files, {what}: none attached {a:.2f} {unit}, two subscribed {b:.2f} {unit} "
              f"({b / a:.2f}x; target <= 1.10x)")
    print(f"facts read by the two subscribers: {statistics.median(r['facts_read'] for r in two):.0f}; their "
          f"processes' CPU: {statistics.median(r['subscribers_cpu_s'] for r in two):.2f} s; the engine's other "
          f"processes (not workers, not its watcher): {statistics.median(r['helpers_cpu_s'] for r in two):.2f} s")
    mean_none, mean_two = statistics.mean(r["cpu_s"] for r in none), statistics.mean(r["cpu_s"] for r in two)
    print(f"engine CPU, mean of the {len(two)} rounds: none attached {mean_none:.2f} s, two subscribed {mean_two:.2f} s "
          f"({mean_two / mean_none:.2f}x)")
    names = sorted({name for r in none + two for name in r["threads"]})
    for name in names:  # the engine's threads (named by py-spy), CPU seconds, medians of the rounds
        a = statistics.median(r["threads"].get(name, 0.0) for r in none)
        b = statistics.median(r["threads"].get(name, 0.0) for r in two)
        print(f"  thread {name}: none attached {a:.2f} s, two subscribed {b:.2f} s")
    print(f"paired, each alternated pair's two / none (pairs in the order run; target <= {GOAL:.2f}x):")
    for what, key in (("engine process CPU", "cpu_s"), ("lag, last file closed -> idle", "lag_s"),
                      ("first file -> idle", "total_s")):
        view = paired(none, two, key)
        if not view["n"]:
            continue
        ci = view.get("ci95")
        ci_text = f", 95% interval of the median {ci[0]:.2f}-{ci[1]:.2f}x" if ci else ""
        print(f"  {what}: {view['n']} pairs, median {view['median']:.2f}x, interquartile {view['q1']:.2f}-"
              f"{view['q3']:.2f}x{ci_text}: {verdict(view)}")
        print(f"    pairs: {', '.join(f'{r:.2f}' for r in view['ratios'])}")
    pairs = ", ".join(f"{a['cpu_s']:.2f}/{b['cpu_s']:.2f}" for a, b in zip(none, two))
    print(f"  (engine CPU, none / two, per pair: {pairs} s; load average now {os.getloadavg()[0]:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("cli", "burst", "hub"), help="Measure these rows alone.")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="Pairs of bursts, with and without subscribers "
                        "(alternated; 15 to say whether the goal holds).")
    parser.add_argument("--real-times", action="store_true", help="--only hub: the facts' times as a burst's are "
                        "(17 digits), not 1.0.")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    if args.only in (None, "cli"):
        results.update(cli_results(args.quick))
        print_cli(results)
    if args.only in (None, "burst"):
        results["bursts"] = burst_results(args.quick, args.rounds)
        print_bursts(results["bursts"], 3000 if args.quick else 10_000)
        results["bursts_paired"] = {key: paired(results["bursts"]["burst_none"], results["bursts"]["burst_two"], key)
                                    for key in ("cpu_s", "lag_s", "total_s")}
    if args.only in (None, "hub"):
        runs = {"hub_none": 0, "hub_two": 2}
        for key in runs:
            results[key] = []
        for _ in range(3):  # alternated: a change in the machine's load hits each
            for key, subscribers in runs.items():
                results[key].append(hub_cpu(23_000, subscribers, real_times=args.real_times))
        for label, key in (("with two subscribers", "hub_two"), ("with none", "hub_none")):
            process = statistics.median(r[0] for r in results[key])
            thread = statistics.median(r[1] for r in results[key])
            print(f"hub alone, {23_000 * 7:,} facts (median of 3) {label}: process CPU {process:.2f} s (the "
                  f"clients' readers included), the hub thread's {thread:.2f} s")
    print(f"load average {results['load'][0]:.1f} on {results['cpus']} CPUs")
    if args.json:
        summary = {k: {"n": len(v), "p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95), "samples_ms": v}
                   for k, v in results.items() if isinstance(v, list) and k.startswith(("cli", "python", "channel", "in_"))}
        args.json.write_text(json.dumps({**results, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
