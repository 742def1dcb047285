"""Recipe: totals per customer, read by 4 instances and repartitioned by customer into 2.

Each of the 4 reader instances takes its own slice of the sales table
(``WHERE id % ${instance.count} = ${instance.index}``); a partition function on the next hop sends
every sale of one customer to the same one of the 2 totalling instances, so each instance holds
complete totals for its customers. A CPU-bound scoring step runs its instances in worker processes.
The totals are written to ``customer_totals``.

It runs every minute (timer ``totals_every_minute``) and whenever a file named ``recompute*`` lands
in $TINYO_FLOW_DEMO/partition (default /tmp/tinyo-flow/partition).

    tinyo run examples/flow_partition.py
    touch /tmp/tinyo-flow/partition/recompute-now     # or: tinyo fire examples/flow_partition.py totals_every_minute
    python examples/flow_partition.py                 # run the flow once without the engine
"""

import os
import re
import sqlite3
from datetime import datetime, timedelta

from tinyo import DES, Config, Execution, TinyOConfig, meta_task
from tinyo.flow import Flow, steps

BASE = os.environ.get("TINYO_FLOW_DEMO", "/tmp/tinyo-flow")
TRIGGERS = os.path.join(BASE, "partition")
DB = os.path.join(BASE, "sales.sqlite")


def ensure_demo_database(path: str = DB, sales: int = 20000, customers: int = 60) -> None:
    """Create the sales and customer_totals tables with demo rows if they are missing."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS sales (id INTEGER PRIMARY KEY, customer TEXT, amount INTEGER)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS customer_totals (customer TEXT PRIMARY KEY, total INTEGER, "
                "sales INTEGER, big_sales INTEGER, run TEXT)"
            )
            conn.executemany(
                "INSERT OR IGNORE INTO sales VALUES (?, ?, ?)",
                [(i, f"cust-{(i * 31) % customers:03d}", 1 + (i * 7919) % 500) for i in range(1, sales + 1)],
            )
    finally:
        conn.close()


def by_customer(row):
    """The partition function: every sale of one customer goes to the same totalling instance."""
    return row["customer"]


def score(row):
    """A deliberately CPU-bound score (runs in worker processes): is this a big sale?"""
    acc = row["amount"]
    for k in range(200):
        acc = (acc * 31 + k) % 10007
    row["big"] = 1 if row["amount"] >= 400 else 0
    row["check"] = acc
    return row


def stamp(row, ctx):
    row["run"] = ctx.flow.run_id
    return row


ensure_demo_database()

totals = Flow(
    "customer_totals",
    params={"readers": 4, "totalers": 2, "scorers": 2},
    services={"db": DB},
    chunk_size=500,
)
read = totals.step(
    "read sales",
    steps.SqlInput("SELECT id, customer, amount FROM sales WHERE id % ${instance.count} = ${instance.index}"),
    instances=lambda params: params["readers"],
)
scored = totals.step("score", steps.Map(score), instances=lambda params: params["scorers"], processes=True)
total = totals.step(
    "total per customer",
    steps.Aggregate("customer", {"total": ("sum", "amount"), "sales": ("count", None), "big_sales": ("sum", "big")}),
    instances=lambda params: params["totalers"],
)
stamped = totals.step("stamp", stamp, instances=lambda params: params["totalers"])
write = totals.step("write totals", steps.SqlOutput("customer_totals", mode="replace",
                                                    fields=["customer", "total", "sales", "big_sales", "run"]))
count = totals.step("count", steps.Aggregate((), {"customers": ("count", None), "total": ("sum", "total")}))
report = totals.step("report", steps.Log(prefix="customer totals:"))
result = totals.step("result", steps.SetFlowResult())
totals.hop(read, scored)
totals.hop(scored, total, partition=by_customer)
totals.hop(total, stamped)
totals.hop(stamped, write)
totals.hop(write, count)
totals.hop(count, report)
totals.hop(report, result)


@meta_task(root=True)
def recompute_totals(event):
    """Every timer tick, and every recompute* file, recomputes the totals."""
    if event.startswith("totals_every_minute_") or re.fullmatch(re.escape(TRIGGERS) + r"/recompute[^/]*", event):
        return (event, [DES(
            deps=frozenset([event]),
            targs=frozenset([f"customer_totals@{event}"]),
            ops=[(totals, Config({"readers": 4, "totalers": 2}))],
        )])
    return (None, [])


config = TinyOConfig(
    sql_conn=os.path.join(BASE, "flow_partition.db"),
    dirs=[TRIGGERS],
    timers=[{"name": "totals_every_minute", "initial": datetime(2024, 1, 1), "interval": timedelta(minutes=1)}],
    maxevents=30,
    max_workers=2,
    execution=Execution.PROCESSES,
)


if __name__ == "__main__":
    outcome = totals.run()
    print(f"ok={outcome.ok} result={outcome.result} in {outcome.duration:.2f}s")
    if not outcome.ok:
        print(outcome.error)
