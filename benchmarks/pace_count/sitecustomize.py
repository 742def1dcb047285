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
              "cycles_batch": 0, "cycles_inbox_only": 0, "cycles_store_only": 0, "cycles_other": 0, "sizes": {},
              "lingers": 0, "lingers_met": 0, "quiet_wakes": 0, "cpu_batch": 0.0, "cpu_inbox_only": 0.0, "cpu_store_only": 0.0, "cpu_other": 0.0, "cpu_commit": 0.0}

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
        from tinyo import waker as W
        if os.environ.get("TINYO_PACE_NO_LINGER"):  # the same engine without its linger, to tell what it changes
            from tinyo.executors import process as P
            P.reports_due = lambda *a: ([], 0.0)
        if hasattr(W.Waker, "_linger"):
            linger, take = W.Waker._linger, W.Waker._take

            wait = W.Waker.wait

            def wt(self, timeout=None):
                self._pace_why = "set" if self._flag else "timeout"
                return wait(self, timeout)

            W.Waker.wait = wt

            def lg(self, due, watched):
                self._pace_why = "linger" if due[0] else "nothing due"
                if due[0]:
                    COUNTS["lingers"] += 1
                    self._pace_met = True
                try:
                    return linger(self, due, watched)
                finally:
                    self._pace_met = False

            def tk(self, ready, watched):
                if getattr(self, "_pace_why", "") == "timeout" and ready:
                    self._pace_why = "byte" if any(fd == self._r for fd, _ in ready) else "pipe"
                if getattr(self, "_pace_met", False) and ready:
                    COUNTS["lingers_met"] += 1
                return take(self, ready, watched)

            W.Waker._linger, W.Waker._take = lg, tk
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
            t0 = time.thread_time()
            try:
                return cycle(self)
            finally:
                if COUNTS["batches"] > b:
                    kind = "batch"
                elif COUNTS["inbox_items"] > i and COUNTS["stores"] == st:
                    kind = "inbox_only"
                elif COUNTS["stores"] > st and COUNTS["inbox_items"] == i:
                    kind = "store_only"
                else:
                    kind = "other"
                COUNTS["cycles_" + kind] += 1
                if kind == "inbox_only":
                    why = "why_" + getattr(self.wake, "_pace_why", "?")
                    COUNTS[why] = COUNTS.get(why, 0) + 1
                COUNTS["cpu_" + kind] += time.thread_time() - t0

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
                    t0 = time.thread_time()
                    try:
                        return _orig(self)
                    finally:
                        COUNTS["cpu_commit"] += time.thread_time() - t0
                cls.commit = cm
        while True:
            with open(OUT + ".tmp", "w") as f:
                json.dump(COUNTS, f)
            os.replace(OUT + ".tmp", OUT)
            time.sleep(0.2)

    threading.Thread(target=_patch, daemon=True).start()
