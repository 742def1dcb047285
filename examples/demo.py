"""A demo recipe that makes activity by itself within seconds (no files to drop, nothing to set up).

Every 2 seconds a timer ticks. Each tick writes a small sales CSV into the watched inbox; each CSV
that lands is loaded into a staging table, and once the store master data is loaded too, a report
is built for it. Every ninth report fails on its first run, on purpose, so there is a failure to
look at and to retry. Try every key of the console (`?` lists them):

- `enter` on an event, document, worker or output line: its details; `esc` goes back.
- `r` on a failed report (Documents `2`, or its `failed:` line in Output `5`): it runs again and
  succeeds; `R` reruns it and everything downstream. `r` on a tick event (2 DES) asks which.
- `t`: a picker of the two timers; `tick` writes the next sales file, `calendar` loads the calendar.
- `i`, then `rebuild`: a 30-second op starts; in Workers (`3`) select it and press `c` to cancel it.
  `i` with `tick_18`: report 9, which fails on its first run.
- `p` pauses intake (the header counts what is buffered), `p` again releases it.
- `/` filters the Events or Output pane (`!` inverts); in Documents it jumps to a name (`report`).
- `tab`, `1`-`5` move between panes; `ctrl+p` opens the command palette; `q` quits.

Drop your own `sales_<n>.csv` into /tmp/tinyo-demo/inbox too (set TINYO_DEMO_DIR to use another folder).
"""

import os
import random
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

from tinyo import DES, Config, Execution, TinyOConfig, meta_task

ROOT = Path(os.environ.get("TINYO_DEMO_DIR", "/tmp/tinyo-demo"))
INBOX = ROOT / "inbox"
STORES = ["north", "south", "east", "west", "harbour"]


# ---- ops (module level, so worker processes can import them)
def write_sales(context):
    n, path = context["config"]["n"], context["config"]["path"]
    rng = random.Random(n)
    time.sleep(0.2)
    rows = [f"{store},{rng.randint(5, 500)}.{rng.randint(0, 99):02d}" for store in STORES]
    Path(path).write_text("store,amount\n" + "\n".join(rows) + "\n")
    print(f"wrote {len(rows)} sales rows for tick {n}")


def load_stores(context):
    time.sleep(0.3)
    print(f"loaded {len(STORES)} stores into dim.stores")


def load_calendar(context):
    time.sleep(0.3)
    print("loaded 366 days into dim.calendar")


def load_sales(context):
    (path,) = context["deps"]
    lines = Path(path).read_text().splitlines()[1:]
    time.sleep(0.4)
    print(f"staged {len(lines)} rows from {Path(path).name}")


def build_report(context):
    n = context["config"]["n"]
    path = INBOX / f"sales_{n}.csv"
    total = sum(float(line.split(",")[1]) for line in path.read_text().splitlines()[1:])
    time.sleep(0.6)
    failed_once = ROOT / f"report_{n}.failed_once"
    if n % 9 == 0 and not failed_once.exists():
        failed_once.touch()  # the first run fails; a rerun (r) succeeds
        raise ValueError(f"report {n}: totals do not reconcile (demo failure, press r to retry)")
    print(f"report {n}: {len(STORES)} stores, total {total:,.2f}")


def rebuild_warehouse(context):
    for step in range(1, 31):
        print(f"rebuilding the warehouse: step {step}/30 (press c in Workers to cancel)")
        time.sleep(1.0)


# ---- generators
@meta_task(root=True)
def on_tick(event):
    # a timer's own ticks end in .0; `t` fires one now (any fraction); `i` may type tick_18
    match = re.fullmatch(r"tick_(\d+)(\.\d+)?", event)
    if not match:
        return (None, [])
    n = (int(match.group(1)) // 2) % 100_000
    target = str(INBOX / f"sales_{n}.csv")
    return (None, [
        DES(deps=frozenset([event]), targs=frozenset([target]),
            ops=[(write_sales, Config({"n": n, "path": target}))]),
        DES(deps=frozenset(), targs=frozenset(["dim.stores"]), ops=[(load_stores, Config({}))]),
    ])


@meta_task(root=True)
def on_calendar(event):
    if not event.startswith("calendar_"):
        return (None, [])
    return (None, [DES(deps=frozenset([event]), targs=frozenset(["dim.calendar"]), ops=[(load_calendar, Config({}))])])


@meta_task(root=True)
def on_rebuild(event):
    if event != "rebuild":
        return (None, [])
    return (None, [DES(deps=frozenset([event]), targs=frozenset(["warehouse"]),
                       ops=[(rebuild_warehouse, Config({}))])])


@meta_task()
def report(n):
    return (n, [DES(deps=frozenset([f"staging.sales_{n}", "dim.stores"]), targs=frozenset([f"report.{n}"]),
                    ops=[(build_report, Config({"n": n}))])])


@meta_task(root=True, download=[report])
def on_sales_file(event):
    match = re.fullmatch(r".*/sales_(\d+)\.csv", event)
    if not match:
        return (None, [])
    n = int(match.group(1))
    return (n, [DES(deps=frozenset([event]), targs=frozenset([f"staging.sales_{n}"]),
                    ops=[(load_sales, Config({}))])])


config = TinyOConfig(
    sql_conn=str(ROOT / "demo.db"),
    dirs=[str(INBOX)],
    maxevents=30,
    max_workers=2,
    execution=Execution.PROCESSES,
    timers=[{"name": "tick", "initial": datetime(2024, 1, 1), "interval": timedelta(seconds=2)},
            {"name": "calendar", "initial": datetime(2024, 1, 1), "interval": timedelta(days=1)}],
)
