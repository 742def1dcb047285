"""Provides the real-data cases of ``bench_flow.py``: a flights-shaped CSV it generates, and the plain loops to beat.

The file has the shape of the NYC flights of 2013 (19 columns, ``NA`` for ~3% of the nullable
values). The flow and the plain loop compute the same thing: per carrier name (looked up in a
small master CSV), the row count, the count, sum and mean of ``dep_delay`` (missing values
skipped), written to a CSV file.
"""

from __future__ import annotations

import csv
import os
import random
import time
from pathlib import Path
from typing import Any

from tinyo.flow import Flow, steps

COLUMNS = ["year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
           "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour",
           "minute", "time_hour"]
CARRIERS = ["UA", "AA", "B6", "DL", "EV", "MQ", "US", "WN", "VX", "FL", "AS", "9E", "F9", "HA", "YV", "OO"]
NULLABLE = {3, 5, 6, 8, 11, 14}
NA = ("NA", "")


def make_files(directory: Path, rows: int, seed: int = 2013) -> tuple[Path, Path]:
    """The flights file (generated once per size) and the carrier master file."""
    directory.mkdir(parents=True, exist_ok=True)
    master = directory / "carriers.csv"
    with open(master, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["carrier", "name"])
        writer.writerows((c, f"{c} Airlines") for c in CARRIERS)
    path = directory / f"flights_{rows}_{seed}.csv"
    if path.exists():
        return path, master
    rnd = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for _ in range(rows):
            month, day = rnd.randint(1, 12), rnd.randint(1, 28)
            sched = rnd.randint(5, 23) * 100 + rnd.choice((0, 15, 30, 45))
            delay = int(rnd.gauss(12, 40))
            values: list[Any] = [
                2013, month, day, sched + delay, sched, delay, sched + delay + 200, sched + 200,
                delay + rnd.randint(-20, 20), rnd.choice(CARRIERS), rnd.randint(1, 6000),
                f"N{rnd.randint(100, 999)}UA", rnd.choice(("EWR", "LGA", "JFK")), rnd.choice(("IAH", "MIA", "ATL")),
                rnd.randint(30, 600), rnd.randint(80, 4983), sched // 100, sched % 100,
                f"2013-{month:02d}-{day:02d} {sched // 100:02d}:00:00",
            ]
            for i in NULLABLE:
                if rnd.random() < 0.03:
                    values[i] = "NA"
            writer.writerow(values)
    os.replace(tmp, path)
    return path, master


def plain_loop(path: Path, master: Path, out: Path) -> float:
    """The loop a data engineer would write instead of the flow."""
    start = time.perf_counter()
    with open(master, newline="") as fh:
        names = {r["carrier"]: r["name"] for r in csv.DictReader(fh)}
    groups: dict[Any, list[Any]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            text = row["dep_delay"]
            delay = None if text in NA else float(text)
            row["name"] = name = names.get(row["carrier"])
            acc = groups.get(name)
            if acc is None:
                acc = groups[name] = [0, 0, 0.0]
            acc[0] += 1
            if delay is not None:
                acc[1] += 1
                acc[2] += delay
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "flights", "delays", "total_delay", "mean_delay"])
        for name, (rows, n, total) in groups.items():
            writer.writerow([name, rows, n, total if n else None, total / n if n else None])
    return time.perf_counter() - start


AGGREGATE = {"flights": ("count_all", None), "delays": ("count", "dep_delay"),
             "total_delay": ("sum", "dep_delay"), "mean_delay": ("avg", "dep_delay")}


def real_flow(path: Path, master: Path, out: Path, instances: int = 1, processes: bool = False,
              columns: bool = False) -> float:
    """CSV -> Lookup -> Aggregate -> CSV; with ``instances`` > 1 the CSV input, lookup and a partial
    aggregate run in that many lanes (worker processes with ``processes``), and one more Aggregate
    adds up the partial results. ``columns`` reads only the two fields used (``CsvInput(columns=)``)."""
    flow = Flow("bench_real", params={"src": str(path), "master": str(master), "out": str(out)})
    read = flow.step("read", steps.CsvInput("${params.src}", na_values=NA, types={"dep_delay": float},
                                            columns=["carrier", "dep_delay"] if columns else None),
                     instances=instances, processes=processes)
    look = flow.step("lookup", steps.Lookup(csv="${params.master}", key="carrier", fields=["name"]),
                     instances=instances, processes=processes)
    flow.hop(read, look)
    if instances == 1:
        agg = flow.step("aggregate", steps.Aggregate("name", AGGREGATE))
        flow.hop(look, agg)
    else:
        part = flow.step("partial", steps.Aggregate("name", {
            "flights": ("count_all", None), "delays": ("count", "dep_delay"), "total_delay": ("sum", "dep_delay")}),
            instances=instances, processes=processes)
        agg = flow.step("aggregate", steps.Aggregate("name", {
            "flights": ("sum", "flights"), "delays": ("sum", "delays"), "total_delay": ("sum", "total_delay")}))
        mean = flow.step("mean", steps.Map(_mean))
        flow.hop(look, part)
        flow.hop(part, agg)
        flow.hop(agg, mean)
        agg = mean
    write = flow.step("write", steps.CsvOutput("${params.out}",
                                               fields=["name", "flights", "delays", "total_delay", "mean_delay"]))
    flow.hop(agg, write)
    start = time.perf_counter()
    run = flow.run()
    elapsed = time.perf_counter() - start
    if not run.ok:
        raise SystemExit(f"real-data flow failed: {run.error}")
    return elapsed


def _mean(row: dict[str, Any]) -> dict[str, Any]:
    row["mean_delay"] = row["total_delay"] / row["delays"] if row["delays"] else None
    return row


def same_results(a: Path, b: Path) -> bool:
    """The two output files hold the same groups and (to rounding) the same figures."""
    def load(p: Path) -> dict[str, tuple[float, ...]]:
        with open(p, newline="") as fh:
            return {r["name"]: tuple(round(float(r[k]), 6) if r[k] else 0.0
                                     for k in ("flights", "delays", "total_delay", "mean_delay"))
                    for r in csv.DictReader(fh)}
    return load(a) == load(b)
