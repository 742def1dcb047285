"""The recipe used by benchmarks/bench_engine.py (trivial ops, events shaped for each measurement).

The benchmark copies this file into a temp folder per engine it starts (a new path is a new recipe
module, so the environment read below is read again) and sets:

- ``TINYO_BENCH_DIRS``: watched folders, separated by ``os.pathsep`` (empty: none);
- ``TINYO_BENCH_DB``: the state file (the benchmark also passes it as ``db=``);
- ``TINYO_BENCH_MAXEVENTS``: ``maxevents`` (default 30).

Events understood by the root generator:

- ``fanout:<tag>:<n>``        n independent DES (each reads the event document);
- ``chain:<tag>:<n>``         n DES in a chain (DES i reads what DES i-1 writes);
- ``pop:<tag>:<start>:<n>``   n independent DES numbered from ``start`` (to pre-populate a store);
- ``one:<tag>:<i>``           one DES;
- ``none:<tag>:<i>``          no DES (event handling alone);
- an absolute file path       one DES reading that file.
"""

import os

from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def noop(context):
    """A trivial op: does nothing."""
    return None


NOOP = Config({})


@meta_task(root=True)
def bench_gen(event):
    if event.startswith("/"):
        return (None, [DES(deps=frozenset([event]), targs=frozenset([f"file.{os.path.basename(event)}"]),
                           ops=[(noop, NOOP)])])
    kind, _, rest = event.partition(":")
    if kind == "fanout":
        tag, n = rest.split(":")
        return (None, [DES(deps=frozenset([event]), targs=frozenset([f"fan.{tag}.{i}"]), ops=[(noop, NOOP)])
                       for i in range(int(n))])
    if kind == "chain":
        tag, n = rest.split(":")
        out = []
        prev = event
        for i in range(int(n)):
            targ = f"chain.{tag}.{i}"
            out.append(DES(deps=frozenset([prev]), targs=frozenset([targ]), ops=[(noop, NOOP)]))
            prev = targ
        return (None, out)
    if kind == "pop":
        tag, start, n = rest.split(":")
        start = int(start)
        return (None, [DES(deps=frozenset([event]), targs=frozenset([f"pop.{tag}.{i}"]), ops=[(noop, NOOP)])
                       for i in range(start, start + int(n))])
    if kind == "one":
        return (None, [DES(deps=frozenset([event]), targs=frozenset([f"one.{rest}"]), ops=[(noop, NOOP)])])
    return (None, [])


config = TinyOConfig(
    sql_conn=os.environ.get("TINYO_BENCH_DB", "bench.db"),
    dirs=[d for d in os.environ.get("TINYO_BENCH_DIRS", "").split(os.pathsep) if d],
    maxevents=int(os.environ.get("TINYO_BENCH_MAXEVENTS", "30")),
    max_workers=2,
    execution=Execution.PROCESSES,
)
