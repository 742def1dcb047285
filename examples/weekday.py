"""Prints the date of a dated file if it is a Monday, and the weekday's name otherwise.

Try it:  tinyo run examples/weekday.py   and   touch-free:  echo 1 > /tmp/tinyo-examples/weekday/file_20241028.csv
"""

import re
from datetime import datetime

from tinyo import DES, Config, Execution, TinyOConfig, meta_task

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def say_date(context):
    print(context["config"]["date"])


def say_weekday(context):
    print(DAYS[datetime.strptime(context["config"]["date"], "%Y%m%d").weekday()])


@meta_task(root=True)
def dated_file(event):
    m = re.fullmatch(r".*file_(\d{8})\.csv", event)
    if not m:
        return (None, [])
    date = m.group(1)
    op = say_date if datetime.strptime(date, "%Y%m%d").weekday() == 0 else say_weekday
    return (date, [DES(deps=frozenset([event]), targs=frozenset([f"print.{date}"]), ops=[(op, Config({"date": date}))])])


config = TinyOConfig(sql_conn="/tmp/tinyo-examples/weekday.db", dirs=["/tmp/tinyo-examples/weekday"],
                     maxevents=30, max_workers=2, execution=Execution.PROCESSES)
