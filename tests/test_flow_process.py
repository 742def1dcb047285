"""Data flows: steps whose instances run in worker processes (chunks pickled, results routed back)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tinyo.flow import Flow, ProcessModeError, steps


def tag_with_pid(row, ctx):
    """Module-level, so a worker process can import it."""
    row["pid"] = os.getpid()
    row["instance"] = ctx.instance.index
    row["n"] = ctx.params.n
    return row


def square(row):
    row["sq"] = row["i"] * row["i"]
    return row


def fails_on_seven(row, ctx):
    if row["i"] == 7:
        raise ValueError("seven is not allowed")
    return row


def die_on_three(row, ctx):
    if row["i"] == 3:
        os._exit(3)
    return row


def slow_identity(row, ctx):
    time.sleep(0.01)
    return row


def shout(row, ctx):
    print(f"worker says {row['i']}", flush=True)
    return None


def test_process_mode_step_runs_in_worker_processes():
    got = []
    lock = threading.Lock()

    def keep(row, ctx):
        with lock:
            got.append(row)

    flow = Flow("proc", params={"n": 2000}, chunk_size=100)
    gen = flow.step("gen", steps.Generate("${params.n}"))
    work = flow.step("tag", tag_with_pid, instances=2, processes=True)
    flow.hop(gen, work)
    flow.hop(work, flow.step("keep", keep))
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["i"] for r in got) == list(range(2000))
    pids = {r["pid"] for r in got}
    assert len(pids) == 2 and os.getpid() not in pids
    by_instance = {}
    for r in got:
        by_instance.setdefault(r["instance"], set()).add(r["pid"])
    assert sorted(by_instance) == [0, 1] and all(len(p) == 1 for p in by_instance.values())
    assert all(r["n"] == 2000 for r in got)
    assert [m.rows_in for m in run.metrics["tag"]] == [1000, 1000]
    assert all(m.state == "done" for m in run.metrics["tag"])


def test_builtin_map_runs_in_processes_with_mode_process():
    flow = Flow("proc_map")
    gen = flow.step("gen", steps.Generate(300))
    sq = flow.step("square", steps.Map(square), instances=3, mode="process")
    flow.hop(gen, sq)
    flow.hop(sq, flow.step("res", steps.SetFlowResult("sq", collect=True)))
    run = flow.run()
    assert run.ok, run.error
    assert sorted(run.result) == [i * i for i in range(300)]


def test_process_mode_needs_a_module_level_function():
    flow = Flow("proc_bad")
    with pytest.raises(ProcessModeError, match="must be importable: define .*<lambda>.* at module level"):
        flow.step("bad", lambda row, ctx: row, processes=True)

    def nested(row, ctx):
        return row

    with pytest.raises(ProcessModeError, match="must be importable: define .*<lambda>"):
        flow.step("bad2", steps.Map(lambda r: r), processes=True)
    with pytest.raises(ProcessModeError, match="nested"):
        flow.step("bad3", nested, processes=True)


def test_row_errors_in_a_worker_go_to_the_error_gate():
    errors = []
    flow = Flow("proc_err")
    gen = flow.step("gen", steps.Generate(20))
    work = flow.step("work", fails_on_seven, processes=True)
    flow.hop(gen, work)
    flow.hop(work, flow.step("errors", lambda row, ctx: errors.append(row)), gate="error")
    run = flow.run()
    assert run.ok, run.error
    assert len(errors) == 1 and errors[0]["row"] == {"i": 7}
    assert errors[0]["error"] == "ValueError: seven is not allowed" and errors[0]["step"] == "work"
    assert run.metrics["work"][0].errors == 1
    assert run.rows_out("work") == 19


def test_a_failing_row_in_a_worker_fails_the_flow_with_its_traceback():
    flow = Flow("proc_fail")
    gen = flow.step("gen", steps.Generate(20))
    work = flow.step("work", fails_on_seven, instances=2, processes=True)
    flow.hop(gen, work)
    run = flow.run()
    assert not run.ok and run.result is None
    assert run.failed_step == "work"
    assert "flow 'proc_fail' step 'work' instance" in run.message
    assert "{'i': 7}" in run.message and "seven is not allowed" in run.message
    assert "Traceback" in run.traceback and "fails_on_seven" in run.traceback


def test_what_a_worker_prints_reaches_our_stdout(capfd):
    flow = Flow("proc_print")
    gen = flow.step("gen", steps.Generate(3))
    flow.hop(gen, flow.step("shout", shout, processes=True))
    run = flow.run()
    assert run.ok, run.error
    out = capfd.readouterr().out
    assert "worker says 0" in out and "worker says 2" in out


def test_a_worker_process_that_dies_fails_the_flow_with_its_exit_status():
    flow = Flow("proc_dies")
    gen = flow.step("gen", steps.Generate(10))
    flow.hop(gen, flow.step("die", die_on_three, processes=True))
    run = flow.run()
    assert not run.ok and run.failed_step == "die"
    assert "worker process ended unexpectedly" in run.message and "exit status 3" in run.message


def test_a_failure_elsewhere_stops_worker_processes_promptly():
    def fail_soon(row, ctx):
        raise RuntimeError("downstream broke")

    flow = Flow("proc_stop", chunk_size=10)
    gen = flow.step("gen", steps.Generate(100_000))
    slow = flow.step("slow", slow_identity, instances=2, processes=True)
    flow.hop(gen, slow)
    flow.hop(slow, flow.step("fail", fail_soon))
    started = time.monotonic()
    run = flow.run()
    assert time.monotonic() - started < 10
    assert not run.ok and run.failed_step == "fail" and "downstream broke" in run.message
    assert {m.state for m in run.metrics["slow"]} == {"stopped"}
