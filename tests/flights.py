"""A generated table shaped like the NYC flights of 2013 (19 columns, ~3% missing as ``NA``) and its plain reading.

Tests compare what a flow computes on this file with what plain Python computes on the same rows.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

COLUMNS = ["year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
           "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour",
           "minute", "time_hour"]
CARRIERS = ["UA", "AA", "B6", "DL", "EV", "MQ", "US", "WN", "VX", "FL", "AS", "9E", "F9", "HA", "YV", "OO"]
NULLABLE = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "tailnum")
INTS = ("year", "month", "day", "dep_time", "sched_dep_time", "arr_time", "sched_arr_time", "flight", "distance",
        "hour", "minute")
FLOATS = ("dep_delay", "arr_delay", "air_time")


def write_flights(path: Path, rows: int, *, seed: int = 2013, missing: float = 0.03, all_missing: str | None = None) -> None:
    """Write ``rows`` flights; ``missing`` of the nullable values are ``NA``; every ``dep_delay`` of
    carrier ``all_missing`` is ``NA`` (a group with no value at all)."""
    rnd = random.Random(seed)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i in range(rows):
            month, day = rnd.randint(1, 12), rnd.randint(1, 28)
            sched = rnd.randint(5, 23) * 100 + rnd.choice((0, 15, 30, 45))
            delay = round(rnd.gauss(12, 40))
            carrier = CARRIERS[i % len(CARRIERS)] if i < len(CARRIERS) else rnd.choice(CARRIERS)
            row: dict[str, Any] = {
                "year": 2013, "month": month, "day": day, "dep_time": sched + delay, "sched_dep_time": sched,
                "dep_delay": f"{delay:.1f}", "arr_time": sched + delay + 200, "sched_arr_time": sched + 200,
                "arr_delay": f"{delay + rnd.randint(-20, 20):.1f}", "carrier": carrier,
                "flight": rnd.randint(1, 6000), "tailnum": f"N{rnd.randint(100, 999)}{rnd.choice('UAJ')}",
                "origin": rnd.choice(("EWR", "LGA", "JFK")), "dest": rnd.choice(("IAH", "MIA", "ATL", "ORD", "LAX")),
                "air_time": f"{rnd.uniform(30, 600):.1f}", "distance": rnd.randint(80, 4983),
                "hour": sched // 100, "minute": sched % 100, "time_hour": f"2013-{month:02d}-{day:02d} {sched // 100:02d}:00:00",
            }
            for name in NULLABLE:
                if rnd.random() < missing:
                    row[name] = "NA"
            if carrier == all_missing:
                row["dep_delay"] = "NA"
            writer.writerow([row[c] for c in COLUMNS])


def read_flights(path: Path) -> list[dict[str, Any]]:
    """The rows as plain Python reads them: ``NA`` and empty are None, numbers converted."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            typed: dict[str, Any] = {}
            for name, text in row.items():
                if text in ("NA", ""):
                    typed[name] = None
                elif name in INTS:
                    typed[name] = int(text)
                elif name in FLOATS:
                    typed[name] = float(text)
                else:
                    typed[name] = text
            out.append(typed)
    return out


def reference_by_carrier(rows: list[dict[str, Any]], field: str) -> dict[str, dict[str, Any]]:
    """count_all, count, sum, avg, min and max of ``field`` per carrier, missing values skipped."""
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row["carrier"], []).append(row[field])
    out = {}
    for carrier, values in groups.items():
        present = [v for v in values if v is not None]
        out[carrier] = {
            "carrier": carrier, "rows": len(values), "n": len(present),
            "total": sum(present) if present else None,
            "mean": sum(present) / len(present) if present else None,
            "low": min(present) if present else None, "high": max(present) if present else None,
        }
    return out
