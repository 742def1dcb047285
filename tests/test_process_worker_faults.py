"""The process pool at its seam, where an op misbehaves or runs long: real worker processes, their pipes, and
what they report (the pool as ``test_process_worker`` drives it)."""

from __future__ import annotations

from tinyo.messages import Requeue, WorkerLost

from test_process_worker import pool  # noqa: F401 - the fixture


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
