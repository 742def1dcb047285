"""A timer that ticks every five seconds; each tick's op prints the tick's time."""

import re
from datetime import datetime, timedelta

from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def show_tick(context):
    print(datetime.fromtimestamp(float(context["config"]["ts"])).isoformat(sep=" "))


@meta_task(root=True)
def on_tick(event):
    m = re.fullmatch(r"five_seconds_(.+)", event)
    if not m:
        return (None, [])
    return (m.group(1), [DES(deps=frozenset([event]), targs=frozenset([f"shown.{event}"]),
                             ops=[(show_tick, Config({"ts": m.group(1)}))])])


config = TinyOConfig(sql_conn="/tmp/tinyo-examples/clock.db", dirs=[], maxevents=30, max_workers=2,
                     execution=Execution.PROCESSES,
                     timers=[{"name": "five_seconds", "initial": datetime(2024, 1, 1), "interval": timedelta(seconds=5)}])
