"""The process pool at its seam, where an op misbehaves or runs long: real worker processes, their pipes, and
what they report (the pool as ``test_process_worker`` drives it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tinyo.messages import Requeue, WorkerLost

from test_process_worker import WAIT, pool  # noqa: F401 - the fixture


def test_an_op_whose_exception_cannot_be_read_fails_alone_and_its_worker_goes_on(pool):  # noqa: F811
    p = pool()
    for i in range(40):  # fast ops one at a time: the pool learns they are fast
        p.run(p.task("tag", tag=str(i)))
    pid = p.executor._workers[0].pid
    before = [p.task("tag", tag="a"), p.task("tag", tag="b")]
    bad, after = p.task("unreadable"), p.task("tag", tag="c")
    p.executor.submit([*before, bad, after])  # one message: the worker holds the outcomes of the first two
    error = p.wait_for("done", bad.run_id)
    assert error[:2] == (False, "op unreadable raised Unreadable (its str() raised RuntimeError)")
    assert "Unreadable" in error[2]  # its traceback
    assert [p.wait_for("done", t.run_id)[:4] for t in (*before, after)] == [
        (True, None, None, repr(tag)) for tag in ("a", "b", "c")]
    runs = [run_id for kind, run_id, _ in p.raw if kind in ("ran", "done")]
    assert len(runs) == len(set(runs)) == 44  # each ended once: nothing run again
    assert not [o for o in p.other if isinstance(o, (WorkerLost, Requeue))]
    assert p.executor._workers[0].pid == pid


def test_a_watched_op_s_later_lines_reach_the_engine_while_it_runs(pool):  # noqa: F811
    p = pool()
    then = p.flag.with_name("then")
    chatty = p.task("chatty", flag=str(p.flag), then=str(then))
    p.executor.submit([chatty])
    p.wait_for("start", chatty.run_id)  # sent by the watch thread: the op is watched from now on
    assert p.wait_for("out", chatty.run_id) == ("stdout", "halfway")
    p.flag.touch()
    deadline = time.monotonic() + WAIT
    while ("stdout", "later") not in [payload for kind, rid, payload in p.seen if (kind, rid) == ("out", chatty.run_id)]:
        assert time.monotonic() < deadline, f"no second line; saw {p.seen}"
        p.wait_any()
    assert ("done", chatty.run_id) not in [(k, r) for k, r, _ in p.seen]  # still running: it waits for ``then``
    then.touch()
    assert p.wait_for("done", chatty.run_id)[:4] == (True, None, None, "'chatted'")


def test_the_watch_thread_wakes_every_watch_after_while_a_long_op_prints_nothing(pool):  # noqa: F811
    from tinyo.worker_process import WATCH_AFTER

    p = pool()
    held = p.hold()
    p.executor.submit([held])
    p.wait_for("start", held.run_id)
    pid = p.executor._workers[0].pid
    watch = next(tid for tid in os.listdir(f"/proc/{pid}/task") if tid != str(pid))  # the other: the op thread

    def wakes() -> int:  # the times it waited and was woken (each wake-up of a poll or a wait is one)
        status = (Path(f"/proc/{pid}/task") / watch / "status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")).split()[1])

    first, since = wakes(), time.monotonic()
    time.sleep(0.5)
    woken, elapsed = wakes() - first, time.monotonic() - since
    # a load on the machine only delays its wake-ups; two per look at most (the interpreter lock, taken back
    # from the op thread, may be waited for too)
    assert woken <= 2 * elapsed / WATCH_AFTER + 5, (woken, elapsed)

