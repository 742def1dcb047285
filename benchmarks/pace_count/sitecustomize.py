"""Counts a `tinyo start` engine's cycles, commits and batches for bench_pace.py (only when TINYO_PACE_COUNT names a
file): wraps the loop's methods once its module is imported, and writes the counts there every 0.2 s."""
import os

if os.environ.get("TINYO_PACE_COUNT"):
    import json
    import sys
    import threading
    import time

    OUT = os.environ["TINYO_PACE_COUNT"]
    COUNTS = {"cycles": 0, "commits": 0, "batches": 0, "batch_events": 0, "submits": 0, "tasks": 0,
              "inbox_items": 0, "stores": 0, "stored": 0, "held_cycles": 0,
              "cycles_batch": 0, "cycles_inbox_only": 0, "cycles_store_only": 0, "cycles_other": 0, "sizes": {}}

    def _patch() -> None:
        while "tinyo.core.loop" not in sys.modules or "tinyo.store_base" not in sys.modules:
            time.sleep(0.05)
        time.sleep(0.2)
        from tinyo.core import loop as L
        from tinyo.core import inflow as I
        from tinyo import store_base as S

        cycle, commit, next_batch, handle = L.Loop.cycle, S.StoreBase.commit if hasattr(S, "StoreBase") else None, \
            I.Inflow.next_batch, L.Loop._handle

        store_events = I.Inflow.store_events

        def se(self, *a, **k):
            n = store_events(self, *a, **k)
            if n:
                COUNTS["stores"] += 1
                COUNTS["stored"] += n
            return n

        I.Inflow.store_events = se
        holds = getattr(I.Inflow, "holds_intake", None)
        if holds is not None:
            def hi(self, *a):
                got = holds(self, *a)
                COUNTS["held_cycles"] += bool(got)
                return got
            I.Inflow.holds_intake = hi

        def c(self):
            COUNTS["cycles"] += 1
            b, i, st = COUNTS["batches"], COUNTS["inbox_items"], COUNTS["stores"]
            try:
                return cycle(self)
            finally:
                if COUNTS["batches"] > b:
                    COUNTS["cycles_batch"] += 1
                elif COUNTS["inbox_items"] > i and COUNTS["stores"] == st:
                    COUNTS["cycles_inbox_only"] += 1
                elif COUNTS["stores"] > st and COUNTS["inbox_items"] == i:
                    COUNTS["cycles_store_only"] += 1
                else:
                    COUNTS["cycles_other"] += 1

        def nb(self, size):
            got = next_batch(self, size)
            if got:
                COUNTS["batches"] += 1
                COUNTS["batch_events"] += len(got)
                k = str(len(got))
                COUNTS["sizes"][k] = COUNTS["sizes"].get(k, 0) + 1
            return got

        def h(self, item):
            COUNTS["inbox_items"] += 1
            return handle(self, item)

        L.Loop.cycle, I.Inflow.next_batch, L.Loop._handle = c, nb, h
        for name in dir(S):
            cls = getattr(S, name)
            if isinstance(cls, type) and "commit" in cls.__dict__:
                orig = cls.__dict__["commit"]

                def cm(self, _orig=orig):
                    if self.conn.in_transaction:
                        COUNTS["commits"] += 1
                    return _orig(self)
                cls.commit = cm
        while True:
            with open(OUT + ".tmp", "w") as f:
                json.dump(COUNTS, f)
            os.replace(OUT + ".tmp", OUT)
            time.sleep(0.2)

    threading.Thread(target=_patch, daemon=True).start()
