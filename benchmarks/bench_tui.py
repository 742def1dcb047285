"""Provides the console speed benchmark: key latency under an event flood, memory, idle CPU, first frame.

    python benchmarks/bench_tui.py [--rate 2000] [--seconds 30] [--mode files|inject]
                                   [--execution threads|processes] [--views off,on]
                                   [--console embedded|attached|embedded,attached] [--json PATH]

``--views off,on`` (the default) runs the flood twice in one run: with the operator views off (no
Timeline pane, no header sparklines: the baseline), then on, and prints the two side by side with the
ratio on/off, so a busy machine shows in both columns (``on,off`` swaps the order, to see what the
order itself costs; ``on`` or ``off`` runs one).

``--console embedded,attached`` runs each of those twice: the console with the engine in its own
process (embedded, as ``tinyo-tui recipe.py`` with nothing running: the baseline), then the engine
started by ``tinyo start`` in a process of its own and the real console attached to it through the
control socket (``tinyo-tui recipe.py`` with an engine running); same flood, same keys, columns side
by side with the ratio attached/embedded. Attached, ``rss_growth`` is the console's process alone
(``engine_rss_growth_mb`` is the engine's), and ``facts_missed``/``resyncs`` say how often the
console read the engine's facts too slowly and asked it again.

A real engine on a temp folder runs a recipe whose root generator turns every file event into one
DES with a trivial op that prints one line (the files are written by a process of their own); the console runs headless (Textual's test driver, a
120x40 screen) with the engine started the way ``tinyo-tui`` starts it. Measured, not asserted
(targets from the issue in brackets):

- ``first_frame``: engine start + app start until the first frame is painted [< 1 s];
- ``key_p95``: during the flood, a pane key (1..5) every 0.25 s; time from the key event to the
  first repaint after the pane switched, p50/p95/max [p95 < 100 ms]; ``key_handled``: to the pane
  switch alone (the rest is the repaint);
- ``rss_growth``: resident memory at the end of the flood minus before it [< 50 MB];
- ``ui_thread_cpu_s`` / ``ui_thread_runq_wait_s``: during the flood, the seconds the console's UI thread
  ran, and the seconds it was ready to run but waited for a CPU (a busy machine: key latency includes it);
- ``lost``: events written/injected minus events the engine stored (read from its stats) [0];
- ``idle_cpu``: process CPU over 10 s once everything is done and the console is idle [< 1 %]
  (with the views on, the header sparkline and the timeline still slide then: 30 s and 60 s after
  the last event and run; ``idle_cpu_after_slide_pct`` is measured once they have stopped);
- ``idle_timers``: active Textual timers of the app while idle (the drain interval must be paused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT / "engine", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

RECIPE = '''
from tinyo import DES, TinyOConfig, Config, Execution, meta_task

def touch(context):
    print("handled", context["config"]["n"])

@meta_task(root=True)
def every_file(event):
    if event.endswith(".csv") or event.startswith("flood_"):
        n = event.rsplit("_", 1)[-1].split(".")[0]
        return (None, [DES(deps=[event], targs=[f"out.{n}"], ops=[(touch, Config(n=n))])])
    return (None, [])

config = TinyOConfig(sql_conn=SQL, dirs=[DATA], max_workers=2, execution=Execution.EXECUTION,
                     debounce=0.05, maxevents=500)
'''


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of this process (or ``pid``), in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        return 0.0


def flood(stop: threading.Event, rate: int, seconds: float, mode: str, data: Path, engine: Any,
          sent: list[int]) -> None:
    """Write (or inject) ``rate`` events per second in 10 ms slices until ``seconds`` pass. Files are
    written by a process of their own (as files arrive from elsewhere): the writer does not take the
    console's (or the embedded engine's) interpreter lock."""
    if mode == "files" and engine is not None:
        import subprocess

        writer = subprocess.run([sys.executable, __file__, "--write-files", str(data), str(rate), str(seconds)],
                                capture_output=True, text=True, check=True)
        sent.append(int(writer.stdout.split()[-1]))
        return
    start = time.perf_counter()
    n = 0
    while not stop.is_set():
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while n < due:
            if mode == "files":
                (data / f"flood_{n}.csv").write_text(f"{n}\n")
            else:
                engine.inject(f"flood_{n}")
            n += 1
        time.sleep(0.01)
    sent.append(n)


def set_sparklines(on: bool) -> None:
    """The baseline has header layouts without sparklines (and the timeline pane hidden once mounted)."""
    from dataclasses import replace

    from tinyo_tui.widgets import status_header

    kept = getattr(set_sparklines, "layouts", None) or status_header.LAYOUTS
    set_sparklines.layouts = kept  # type: ignore[attr-defined]
    status_header.LAYOUTS = kept if on else tuple(replace(layout, spark=0) for layout in kept)


def active_timers(app: Any) -> list[Any]:
    nodes = [app, *app.screen_stack, *app.screen.walk_children()]
    return [t for node in nodes for t in getattr(node, "_timers", ())
            if t._task is not None and not t._task.done() and t._active.is_set()]


def main_thread_sched() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of this process's main thread, the
    console's UI loop (Linux schedstat; zeros elsewhere): the wait is what a busy machine adds."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/schedstat") as fh:
            on_cpu, waiting = (int(v) / 1e9 for v in fh.read().split()[:2])
        return on_cpu, waiting
    except (OSError, ValueError):
        return 0.0, 0.0


def start_service(recipe: Path) -> int:
    """``tinyo start recipe``: the engine in a process of its own; its pid."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "engine"), str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "tinyo.cli", "start", str(recipe)], capture_output=True,
                            text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"tinyo start failed: {result.stderr.strip()}")
    return int(result.stdout.split("(pid ")[1].split(")")[0])


def stop_service(recipe: Path, pid: int) -> None:
    import signal
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "engine"), str(ROOT)])}
    subprocess.run([sys.executable, "-m", "tinyo.cli", "stop", str(recipe), "--now"], capture_output=True,
                   env=env, timeout=120)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def is_idle(engine: Any) -> bool:
    """Nothing queued or running (asked over the socket, off the UI loop, when attached)."""
    if hasattr(engine, "is_idle"):
        return bool(engine.is_idle())
    stats = await asyncio.to_thread(engine.stats)
    return stats.queued == 0 and stats.running == 0 and stats.buffered == 0


async def run(args: argparse.Namespace, views: bool, console: str = "embedded") -> dict[str, Any]:
    from textual import events

    from tinyo.engine import Engine
    from tinyo_tui.app import build_app
    from tinyo_tui.widgets.run_timeline import RunTimeline
    from tinyo_tui.widgets.status_header import StatusHeader

    tmp = Path(tempfile.mkdtemp(prefix="tinyo-bench-tui-"))
    data = tmp / "data"
    data.mkdir()
    recipe = tmp / "bench_tui_recipe.py"
    recipe.write_text(RECIPE.replace("SQL", repr(str(tmp / "state.db"))).replace("DATA", repr(str(data)))
                      .replace("EXECUTION", args.execution.upper()))
    results: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds, "mode": args.mode,
                               "execution": args.execution, "views": "on" if views else "off", "console": console}

    service = 0
    if console == "attached":
        from tinyo.control.handle import RemoteEngine
        from tinyo.recipe import load_recipe

        service = start_service(recipe)
        t0 = time.perf_counter()  # the engine runs already: its start is not the console's
        engine: Any = RemoteEngine(load_recipe(recipe), tmp / "state.db", reattach=True)
    else:
        t0 = time.perf_counter()
        engine = Engine.from_path(recipe)
        if args.execution == "processes":
            engine.start()  # as tinyo-tui does: the fork server must start with the real stderr
    app = build_app(engine, theme="dark")
    if args.gc == "tuned":
        from tinyo_tui.cli import collect_less

        collect_less()  # as tinyo-tui does before it runs the app
    first_frame: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.call_after_refresh(lambda: first_frame.append(time.perf_counter() - t0))
        while not first_frame:
            await asyncio.sleep(0.005)
        results["first_frame_s"] = round(first_frame[0], 3)
        if not views:
            app.screen.query_one(RunTimeline).display = False
        await pilot.pause(0.5)

        deadline = time.perf_counter() + 30
        while service and app.state.engine_state != "running" and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)  # attached: the engine's history has reached the console
        rss_before = rss_mb()
        engine_rss_before = rss_mb(service) if service else 0.0
        stop = threading.Event()
        sent: list[int] = []
        thread = threading.Thread(target=flood, args=(stop, args.rate, args.seconds, args.mode, data, engine, sent),
                                  daemon=True)
        thread.start()
        latencies: list[float] = []
        handled: list[float] = []
        panes = ["2", "3", "4", "5", "6", "1"] if views else ["2", "3", "4", "5", "1"]
        names = ["documents", "workers", "lanes", "output", "timeline", "events"] if views else [
            "documents", "workers", "lanes", "output", "events"]
        index = 0
        cpu0 = time.process_time()
        sched0 = main_thread_sched()
        while thread.is_alive():
            await asyncio.sleep(0.25)
            key, target = panes[index % len(panes)], names[index % len(panes)]
            index += 1
            painted: list[float] = []
            start = time.perf_counter()
            app._driver.send_message(events.Key(key, key))  # as if typed: through the driver's queue
            while app.screen.active_pane != target:
                await asyncio.sleep(0.001)
                if time.perf_counter() - start > 5:
                    break
            handled.append((time.perf_counter() - start) * 1000)
            app.screen.call_after_refresh(lambda: painted.append(time.perf_counter()))
            while not painted and time.perf_counter() - start < 5:
                await asyncio.sleep(0.001)
            if painted:
                latencies.append((painted[0] - start) * 1000)
        results["flood_cpu_s"] = round(time.process_time() - cpu0, 2)
        sched1 = main_thread_sched()
        results["ui_thread_cpu_s"] = round(sched1[0] - sched0[0], 2)
        results["ui_thread_runq_wait_s"] = round(sched1[1] - sched0[1], 2)
        header = app.screen.query_one(StatusHeader)
        timeline = app.screen.query_one(RunTimeline)
        results["sparkline_cells"] = header.layout_used.spark if header.layout_used else 0
        results["timeline_shown"] = bool(timeline.display and timeline.region.area)
        results["timeline_runs_kept"] = len(app.state.history.runs)
        results["tick_cost_ms_at_end"] = round(app._tick_cost * 1000, 1)
        pacer = getattr(app, "pacer", None)
        if pacer is not None:
            results["paint_cost_ms_at_end"] = round(pacer.paint_cost * 1000, 1)
        results["rss_growth_mb"] = round(rss_mb() - rss_before, 1)
        if service:
            results["engine_rss_growth_mb"] = round(rss_mb(service) - engine_rss_before, 1)
        total = sent[0] if sent else 0
        results["sent"] = total
        # Let the engine take in the rest, then compare what it stored with what was sent.
        deadline = time.perf_counter() + 120
        stats = await asyncio.to_thread(engine.stats)
        while stats.events_total < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
            stats = await asyncio.to_thread(engine.stats)
        results["stored"] = stats.events_total
        results["lost"] = max(0, total - stats.events_total)
        results["console_rows_kept"] = len(app.state.events)
        results["console_output_lines"] = len(app.state.output) + app.state.output_dropped
        results["console_rows_older"] = app.state.events_dropped
        results["bridge_dropped_facts"] = app.bridge.dropped_facts
        if service:
            notes = [row.line for row in app.state.output if "facts were missed" in row.line]
            results["resyncs"] = len(notes)
            results["facts_missed"] = sum(int(line.split(" ", 1)[0].replace(",", "")) for line in notes)
        if latencies:
            ordered = sorted(latencies)
            results["key_ms_p50"] = round(statistics.median(ordered), 1)
            results["key_ms_p95"] = round(ordered[int(0.95 * (len(ordered) - 1))], 1)
            results["key_ms_max"] = round(ordered[-1], 1)
            results["key_samples"] = len(ordered)
            ordered = sorted(handled)
            results["key_handled_ms_p50"] = round(statistics.median(ordered), 1)
            results["key_handled_ms_p95"] = round(ordered[int(0.95 * (len(ordered) - 1))], 1)
        while not await is_idle(engine):
            await asyncio.sleep(0.5)
        await pilot.pause(8.0)  # the drain interval stops after one empty tick; the settle tick after ~5 s
        active = active_timers(app)
        results["idle_timers"] = len(active)
        results["idle_timer_names"] = ",".join(sorted({str(t.name) for t in active}))
        cpu1, wall1 = time.process_time(), time.perf_counter()
        await asyncio.sleep(10)
        results["idle_cpu_pct"] = round(100 * (time.process_time() - cpu1) / (time.perf_counter() - wall1), 2)
        if views:
            # The sliding views stop once their window holds nothing (timeline: 60 s after the last run).
            deadline = time.perf_counter() + 70
            while active_timers(app) and time.perf_counter() < deadline:
                await asyncio.sleep(1)
            results["timers_after_slide"] = ",".join(sorted({str(t.name) for t in active_timers(app)}))
            cpu1, wall1 = time.process_time(), time.perf_counter()
            await asyncio.sleep(10)
            results["idle_cpu_after_slide_pct"] = round(
                100 * (time.process_time() - cpu1) / (time.perf_counter() - wall1), 2)
        stop.set()
    engine.stop(timeout=10)  # attached: detaches
    if service:
        stop_service(recipe, service)
    return results


def main() -> None:
    if sys.argv[1:2] == ["--write-files"]:  # the flood's writer process: DATA RATE SECONDS
        sent: list[int] = []
        flood(threading.Event(), int(sys.argv[3]), float(sys.argv[4]), "files", Path(sys.argv[2]), None, sent)
        print(sent[0])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--mode", choices=("files", "inject"), default="files")
    parser.add_argument("--execution", choices=("threads", "processes"), default="processes")
    parser.add_argument("--views", choices=("off,on", "on,off", "on", "off"), default="off,on",
                        help="timeline pane and header sparklines, in this order (off is the baseline)")
    parser.add_argument("--console", choices=("embedded", "attached", "embedded,attached", "attached,embedded"),
                        default="embedded", help="the engine in the console's process, or attached to over its socket")
    parser.add_argument("--gc", choices=("tuned", "python"), default="tuned",
                        help="the collector as tinyo-tui sets it (tuned), or Python's default thresholds")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs: dict[str, dict[str, Any]] = {}
    for console in args.console.split(","):
        for name in args.views.split(","):
            set_sparklines(name == "on")
            label = f"{console[:8]} views {name}" if "," in args.console else f"views {name}"
            runs[label] = asyncio.run(run(args, views=name == "on", console=console))
    columns = list(runs)
    keys = list(dict.fromkeys(key for name in columns for key in runs[name]))
    ratio = ("  ratio " + ("attached/embedded" if "," in args.console else "on/off")) if len(columns) == 2 else ""
    print(f"{'figure':>26}  " + "  ".join(f"{name:>18}" for name in columns) + ratio)
    for key in keys:
        values = [runs[name].get(key, "") for name in columns]
        line = f"{key:>26}  " + "  ".join(f"{str(value):>18}" for value in values)
        if len(columns) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            line += f"  {values[1] / values[0]:>12.2f}" if values[0] else f"  {'-':>12}"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
