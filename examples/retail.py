"""Retail loads: daily fact files and a dimension file land in a folder; the combined facts for a
day are built once both that day's facts and the dimension are loaded, except on Wednesdays.

Try it:  tinyo run examples/retail.py   then, in another shell,
    echo x > /tmp/tinyo-examples/retail/fact_file_20241028.csv
    echo y > /tmp/tinyo-examples/retail/dimensional_file.csv
"""

import re
from datetime import datetime

from tinyo import DES, Config, Execution, TinyOConfig, meta_task

FOLDER = "/tmp/tinyo-examples/retail"


def stage(context):
    print(f"staging {sorted(context['deps'])} into {sorted(context['targs'])}")


def combine(context):
    print(f"combining {', '.join(sorted(context['deps']))} into {', '.join(sorted(context['targs']))}")


@meta_task()
def daily_facts(day):
    if not re.fullmatch(r"\d{8}", str(day)):
        return (None, [])
    if datetime.strptime(day, "%Y%m%d").weekday() == 2:  # Wednesdays are skipped
        return (None, [])
    return (day, [DES(deps=frozenset([f"staging.facts_{day}", "dimension"]),
                      targs=frozenset([f"facts.{day}"]), ops=[(combine, Config({}))])])


@meta_task(root=True, download=[daily_facts])
def fact_file(event):
    m = re.fullmatch(r".*/fact_file_(\d{8})\.csv", event)
    if not m:
        return (None, [])
    day = m.group(1)
    return (day, [DES(deps=frozenset([event]), targs=frozenset([f"staging.facts_{day}"]), ops=[(stage, Config({}))])])


@meta_task(root=True, download=[daily_facts])
def dimension_file(event):
    if not event.endswith("/dimensional_file.csv"):
        return (None, [])
    today = datetime.now().strftime("%Y%m%d")
    return (today, [DES(deps=frozenset([event]), targs=frozenset(["dimension"]), ops=[(stage, Config({}))])])


config = TinyOConfig(sql_conn="/tmp/tinyo-examples/retail.db", dirs=[FOLDER], maxevents=30, max_workers=2,
                     execution=Execution.PROCESSES)
