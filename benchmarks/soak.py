"""Soak: a real engine under a steady stream of mixed events for a long time, watched for drift.

    python benchmarks/soak.py                  # the full soak: one hour
    python benchmarks/soak.py --ci             # the CI form: two minutes
    python benchmarks/soak.py --duration 300 --rate 50 --json soak.json

It runs ``tinyo run RECIPE --json`` as a subprocess (Execution.PROCESSES, 2 workers) on a temp folder.
A writer rewrites a fixed set of files (``--files``, default 200) in the watched folder at a steady
rate (``--rate`` per second), every ``--fail-every``-th write with content that makes its op fail
(retried once, then failed until the file changes again); a timer ticks every second (events with no
DES). The state file keeps ``--retention`` events and runs. So after warm-up the state is bounded:
what must stay flat is flat unless something leaks.

Every ``--sample`` seconds it records the orchestrator's RSS and open file descriptors (and the
workers'), the state file's size (main file and WAL), and the write -> op-started latency of
the writes in that window. After warm-up (the first ``--warmup`` fraction, at least 15 s) it checks:

- RSS: the orchestrator's RSS at the end (median of the last 3 samples) is within
  max(5 MB, 10%) of its RSS just after warm-up (median of the first 3);
- fds: the orchestrator's open fds at the end are within 4 of those after warm-up, and so are the
  workers' (summed);
- latency drift: the median of the per-window p50 latencies in the last third is at most
  1.5x + 3 ms that of the first third after warm-up;
- database size: the main state file grew by at most 5% + 64 KB over the second half of the run
  after warm-up, and the WAL stayed under 32 MB (retention prunes events and runs, so once the kept
  history is full, freed pages are reused and the file stops growing);
- nothing lost: every write was followed by its op starting (attempt 1), and the engine reported
  no error notice.

It prints a table (one row per sample) and a verdict per check, writes everything as JSON with
``--json``, and exits 1 if a check failed (2 if the engine could not run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

RECIPE = '''
import os, time
from datetime import datetime, timedelta
from tinyo import DES, Config, Execution, TinyOConfig, meta_task

HERE = os.path.dirname(os.path.abspath(__file__))

def load(context):
    (src,) = context['deps']
    with open(src) as fh:
        text = fh.read()
    if text.startswith('fail'):
        raise ValueError('bad content in ' + os.path.basename(src))
    print('loaded', os.path.basename(src), len(text))

@meta_task(root=True)
def on_event(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + os.path.basename(event)]),
                           ops=[(load, Config({{}}))])])
    return (None, [])  # timer ticks: events with no DES

config = TinyOConfig(
    sql_conn=os.path.join(HERE, 'soak.db'), dirs=[os.path.join(HERE, 'inbox')], max_workers={workers},
    execution=Execution.PROCESSES, retries=1, retry_delay=0.2,
    retention_events={retention}, retention_runs={retention},
    timers=[{{'name': 'tick', 'initial': datetime(2020, 1, 1), 'interval': timedelta(seconds=1)}}],
)
'''


# ====================================================================== process probes


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    out[int(fh.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _descendants(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ====================================================================== the soak


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="tinyo-soak-"))
        self.inbox = self.folder / "inbox"
        self.inbox.mkdir()
        self.db = self.folder / "soak.db"
        self.recipe = self.folder / "soak_recipe.py"
        self.recipe.write_text(RECIPE.format(workers=args.workers, retention=args.retention or None))
        self.lock = threading.Lock()
        self.pending: dict[str, deque[float]] = defaultdict(deque)
        self.latencies: list[tuple[float, float]] = []  # (write time, latency s)
        self.counts: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.writes = 0
        self.samples: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[str] | None = None

    # ------------------------------------------------------------ engine output
    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("type")
            self.counts[kind] += 1
            if kind == "op_started" and event.get("attempt") == 1:
                targs = event.get("targs") or []
                name = targs[0][4:] if targs and str(targs[0]).startswith("out.") else None
                if name:
                    with self.lock:
                        queue = self.pending.get(name)
                        if queue:
                            written = queue.popleft()
                            self.latencies.append((written, float(event["ts"]) - written))
            elif kind == "op_failed":
                self.counts["op_failed_final" if event.get("retry_in") is None else "op_failed_retry"] += 1
            elif kind == "notice" and event.get("level") == "error":
                self.errors.append(str(event.get("message")))

    # ------------------------------------------------------------ sampling
    def _sample(self, t0: float, since: float) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        workers = _descendants(pid)
        now = time.time()
        with self.lock:
            window = [lat for written, lat in self.latencies if since <= written < now]
            backlog = sum(len(q) for q in self.pending.values())
        self.samples.append({
            "t": round(now - t0, 1),
            "rss_mb": round(_rss_kb(pid) / 1024, 1),
            "workers_rss_mb": round(sum(_rss_kb(p) for p in workers) / 1024, 1),
            "fds": _fds(pid),
            "workers_fds": sum(_fds(p) for p in workers),
            "processes": 1 + len(workers),
            "db_kb": _size(self.db) // 1024,
            "wal_kb": _size(Path(str(self.db) + "-wal")) // 1024,
            "writes": self.writes,
            "started": self.counts["op_started"],
            "failed": self.counts["op_failed_final"],
            "backlog": backlog,
            "lat_n": len(window),
            "lat_p50_ms": round(_pct(window, 0.5) * 1000, 2) if window else None,
            "lat_p99_ms": round(_pct(window, 0.99) * 1000, 2) if window else None,
        })

    # ------------------------------------------------------------ run
    def run(self) -> int:
        args = self.args
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        stderr = open(self.folder / "engine.stderr", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(self.recipe), "--json"],
                                     stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while self.counts["worker"] < args.workers and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                print(f"soak: the engine exited with {self.proc.returncode}:\n"
                      + (self.folder / "engine.stderr").read_text()[-2000:], file=sys.stderr)
                return 2
            time.sleep(0.05)
        time.sleep(0.5)
        interval = 1.0 / args.rate
        t0 = time.time()
        start = time.monotonic()
        next_write = start
        next_sample = start + args.sample
        window_start = time.time()
        seq = 0
        try:
            while time.monotonic() - start < args.duration:
                now = time.monotonic()
                if now >= next_sample:
                    self._sample(t0, window_start)
                    window_start = time.time()
                    next_sample += args.sample
                    self._print_row(self.samples[-1], header=len(self.samples) == 1)
                if now < next_write:
                    time.sleep(min(next_write - now, max(0.0, next_sample - now)))
                    continue
                name = f"f{seq % args.files:04d}.txt"
                fail = args.fail_every and seq % args.fail_every == args.fail_every - 1
                content = f"{'fail' if fail else 'ok'} {seq}\n"
                # registered before the write, so the engine can never report the op before it is expected
                # (the latency then includes the few microseconds of the write itself)
                with self.lock:
                    self.pending[name].append(time.time())
                with open(self.inbox / name, "w") as fh:
                    fh.write(content)
                self.writes += 1
                seq += 1
                next_write += interval
                if self.proc.poll() is not None:
                    break
            # drain: every write should be picked up
            drain = time.monotonic() + 15
            while time.monotonic() < drain:
                with self.lock:
                    if not any(self.pending.values()):
                        break
                time.sleep(0.05)
            self._sample(t0, window_start)
            self._print_row(self.samples[-1], header=False)
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            reader.join(timeout=10)
            stderr.close()
        return 0

    # ------------------------------------------------------------ report
    COLUMNS = [("t", "t s", 7), ("rss_mb", "RSS MB", 8), ("workers_rss_mb", "wRSS MB", 8), ("fds", "fds", 5),
               ("workers_fds", "wfds", 5), ("db_kb", "db KB", 8), ("wal_kb", "wal KB", 8), ("writes", "writes", 8),
               ("started", "started", 8), ("failed", "failed", 7), ("backlog", "backlog", 8),
               ("lat_p50_ms", "p50 ms", 8), ("lat_p99_ms", "p99 ms", 8)]

    def _print_row(self, sample: dict[str, Any], header: bool) -> None:
        if header:
            print(" ".join(f"{title:>{width}}" for _, title, width in self.COLUMNS))
        print(" ".join(f"{'-' if sample[key] is None else sample[key]:>{width}}" for key, _, width in self.COLUMNS),
              flush=True)

    def verdicts(self) -> list[dict[str, Any]]:
        args = self.args
        warm = max(15.0, args.warmup * args.duration)
        after = [s for s in self.samples if s["t"] >= warm]
        out: list[dict[str, Any]] = []

        def check(name: str, ok: bool, detail: str) -> None:
            out.append({"check": name, "ok": bool(ok), "detail": detail})

        if len(after) < 6:
            check("enough samples", False, f"only {len(after)} samples after a {warm:.0f}s warm-up; run longer")
            return out
        head, tail = after[:3], after[-3:]

        def med(rows: list[dict[str, Any]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        rss0, rss1 = med(head, "rss_mb"), med(tail, "rss_mb")
        limit = max(5.0, 0.10 * rss0)
        check("orchestrator RSS flat", rss1 - rss0 <= limit,
              f"{rss0:.1f} MB after warm-up -> {rss1:.1f} MB at the end (allowed +{limit:.1f} MB)")
        fd0, fd1 = med(head, "fds"), med(tail, "fds")
        check("orchestrator fds flat", fd1 - fd0 <= 4, f"{fd0:.0f} -> {fd1:.0f}")
        wfd0, wfd1 = med(head, "workers_fds"), med(tail, "workers_fds")
        check("worker fds flat", wfd1 - wfd0 <= 4, f"{wfd0:.0f} -> {wfd1:.0f} (all worker processes)")
        third = max(1, len(after) // 3)
        first = [s["lat_p50_ms"] for s in after[:third] if s["lat_p50_ms"] is not None]
        last = [s["lat_p50_ms"] for s in after[-third:] if s["lat_p50_ms"] is not None]
        if first and last:
            l0, l1 = statistics.median(first), statistics.median(last)
            check("latency does not drift", l1 <= 1.5 * l0 + 3.0,
                  f"median window p50 {l0:.2f} ms (first third) -> {l1:.2f} ms (last third)")
        else:
            check("latency does not drift", False, "no latency measured")
        # once retention prunes, the file reuses freed pages: it must stop growing (checked over the last half)
        db0, dbm, db1 = head[0]["db_kb"], after[len(after) // 2]["db_kb"], after[-1]["db_kb"]
        check("database size bounded by retention", db1 <= dbm * 1.05 + 64,
              f"{db0} KB after warm-up, {dbm} KB half-way, {db1} KB at the end; "
              f"WAL peak {max(s['wal_kb'] for s in self.samples)} KB")
        check("WAL bounded", max(s["wal_kb"] for s in self.samples) <= 32 * 1024, "under 32 MB")
        with self.lock:
            lost = sum(len(q) for q in self.pending.values())
        check("no write lost", lost == 0, f"{self.writes} writes, {lost} never led to an op start")
        check("no engine error", not self.errors, "; ".join(self.errors[:3]) or "none")
        check("failing ops failed", self.counts["op_failed_final"] > 0 or not args.fail_every,
              f"{self.counts['op_failed_final']} failed for good, {self.counts['op_failed_retry']} retried")
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load (default 3600)")
    parser.add_argument("--ci", action="store_true", help="the CI form: 120 s, samples every 3 s")
    parser.add_argument("--rate", type=float, default=25.0, help="file writes per second (default 25)")
    parser.add_argument("--files", type=int, default=200, help="distinct file names rewritten in turn")
    parser.add_argument("--fail-every", type=int, default=20, help="every Nth write makes its op fail (0: never)")
    parser.add_argument("--retention", type=int, default=1000, help="events and runs kept in the state file (0: keep all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=float, default=None, help="seconds between samples (default 10; CI 3)")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run treated as warm-up")
    parser.add_argument("--json", type=Path, default=None, help="write samples and verdicts here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (state file, engine stderr)")
    args = parser.parse_args(argv)
    if args.ci:
        args.duration = min(args.duration, 120.0)
    if args.sample is None:
        args.sample = 3.0 if args.duration <= 300 else 10.0
    soak = Soak(args)
    print(f"soak: {args.duration:.0f}s at {args.rate:g} writes/s over {args.files} files, 1 timer tick/s, "
          f"every {args.fail_every}th op fails, retention {args.retention}; folder {soak.folder}", flush=True)
    try:
        status = soak.run()
        if status:
            return status
        verdicts = soak.verdicts()
        print()
        for v in verdicts:
            print(f"  {'ok  ' if v['ok'] else 'FAIL'}  {v['check']}: {v['detail']}")
        failed = [v for v in verdicts if not v["ok"]]
        with soak.lock:
            lat = [x for _, x in soak.latencies]
        summary = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "writes": soak.writes, "counts": dict(soak.counts), "errors": soak.errors,
            "latency_ms": {"p50": _pct(lat, 0.5) * 1000 if lat else None, "p99": _pct(lat, 0.99) * 1000 if lat else None},
            "samples": soak.samples, "verdicts": verdicts, "ok": not failed,
        }
        print(json.dumps({k: summary[k] for k in ("writes", "latency_ms", "ok")} |
                         {"verdicts": {v["check"]: v["ok"] for v in verdicts}}))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"soak: kept {soak.folder}")
        else:
            shutil.rmtree(soak.folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
