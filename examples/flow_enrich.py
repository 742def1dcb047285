"""Recipe: enrich orders with customer master data whenever a customer file lands (a data flow op).

The flow reads the orders from a SQLite table (two reader instances, each taking every other id),
adds each order's customer name and segment from the CSV master file that triggered it, and writes
the enriched rows back to another table. Orders whose customer is not in the file are logged.

    tinyo run examples/flow_enrich.py            # or: tinyo-tui examples/flow_enrich.py
    python examples/flow_enrich.py drop          # write a sample customers_<n>.csv into the folder

The demo database and folder live under $TINYO_FLOW_DEMO (default /tmp/tinyo-flow) and are created
when missing. ``python examples/flow_enrich.py run`` runs the flow once without the engine.
"""

import csv
import os
import re
import sqlite3
import sys
import time

from tinyo import DES, Config, Execution, TinyOConfig, meta_task
from tinyo.flow import Flow, steps

BASE = os.environ.get("TINYO_FLOW_DEMO", "/tmp/tinyo-flow")
INBOX = os.path.join(BASE, "in")
DB = os.path.join(BASE, "shop.sqlite")
CUSTOMERS = 40


def ensure_demo_database(path: str = DB, orders: int = 5000) -> None:
    """Create the orders table (and the enriched table) with demo rows if they are missing."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS orders_enriched (id INTEGER PRIMARY KEY, customer_id INTEGER, "
                "amount REAL, name TEXT, segment TEXT, source TEXT)"
            )
            conn.executemany(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?)",
                [(i, 999 if i % 500 == 0 else 1 + (i * 17) % CUSTOMERS, round(5 + (i % 97) * 1.25, 2))
                 for i in range(1, orders + 1)],
            )
    finally:
        conn.close()


def write_master_file(folder: str = INBOX, customers: int = CUSTOMERS) -> str:
    """Write customers_<timestamp>.csv atomically (temp file, then rename) and return its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"customers_{int(time.time())}.csv")
    tmp = os.path.join(folder, ".customers.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "name", "segment"])
        for c in range(1, customers + 1):
            writer.writerow([c, f"Customer {c:03d}", "gold" if c % 5 == 0 else "standard"])
    os.replace(tmp, path)
    return path


def master_must_exist(params):
    """A variable that validates the parameter: the run fails clearly when the file is missing."""
    if not os.path.exists(params["master"]):
        raise FileNotFoundError(f"master file {params['master']!r} does not exist")
    return os.path.basename(params["master"])


def stamp_source(row, ctx):
    row["source"] = ctx.vars.master_name
    return row


ensure_demo_database()

enrich = Flow(
    "enrich_orders",
    params={"master": os.path.join(INBOX, "customers.csv"), "readers": 2},
    variables={"master_name": master_must_exist},
    services={"db": DB},
)
read = enrich.step(
    "read orders",
    steps.SqlInput("SELECT id, customer_id, amount FROM orders WHERE id % ${instance.count} = ${instance.index}"),
    instances=lambda params: params["readers"],
)
add = enrich.step(
    "add customer",
    steps.Lookup(csv="${params.master}", key="customer_id", types={"customer_id": int},
                 fields=["name", "segment"], on_missing="gate"),
    instances=lambda params: params["readers"],
)
stamp = enrich.step("stamp", stamp_source, instances=lambda params: params["readers"])
write = enrich.step("write back", steps.SqlOutput("orders_enriched", mode="replace"))
unknown = enrich.step("unknown customer", steps.Log(prefix="no master record:", fields=["id", "customer_id"]))
count = enrich.step("count", steps.Aggregate((), {"rows": ("count", None)}))
result = enrich.step("result", steps.SetFlowResult("rows"))
enrich.hop(read, add)
enrich.hop(add, stamp)
enrich.hop(add, unknown, gate="missing")
enrich.hop(stamp, write)
enrich.hop(write, count)
enrich.hop(count, result)


@meta_task(root=True)
def on_master_file(event):
    """A customers*.csv landing in the watched folder enriches the orders with it."""
    if re.fullmatch(re.escape(INBOX) + r"/customers[^/]*\.csv", event):
        return (event, [DES(
            deps=frozenset([event]),
            targs=frozenset([f"orders_enriched@{os.path.basename(event)}"]),
            ops=[(enrich, Config({"master": event}))],
        )])
    return (None, [])


config = TinyOConfig(
    sql_conn=os.path.join(BASE, "flow_enrich.db"),
    dirs=[INBOX],
    maxevents=30,
    max_workers=2,
    execution=Execution.PROCESSES,
)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "drop"
    master = write_master_file()
    if command == "run":
        outcome = enrich.run(master=master)
        print(f"ok={outcome.ok} rows written={outcome.result} in {outcome.duration:.2f}s")
        if not outcome.ok:
            print(outcome.error)
    else:
        print(f"wrote {master}")
