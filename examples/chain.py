"""A self-continuing chain: step_k (k a single digit) makes step_{k+1}, up to step_10.

Start it with:  echo go > /tmp/tinyo-examples/chain/step_1
"""

import re
import time

from tinyo import DES, Config, Execution, TinyOConfig, meta_task

FOLDER = "/tmp/tinyo-examples/chain"


def next_step(context):
    time.sleep(0.5)
    path = context["config"]["path"]
    with open(path, "w") as fh:
        fh.write(path)
    print(f"made {path}")


@meta_task(root=True)
def step(event):
    m = re.fullmatch(r".*/step_(\d)", event)
    if not m:
        return (None, [])
    k = int(m.group(1))
    target = f"{FOLDER}/step_{k + 1}"
    return (k, [DES(deps=frozenset([event]), targs=frozenset([target]), ops=[(next_step, Config({"path": target}))])])


config = TinyOConfig(sql_conn="/tmp/tinyo-examples/chain.db", dirs=[FOLDER], maxevents=30, max_workers=2,
                     execution=Execution.PROCESSES)
