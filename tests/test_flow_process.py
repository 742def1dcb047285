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


def add_pid(row):
    row["pid_b"] = os.getpid()
    return row


def first_pid(row):
    row["pid"] = os.getpid()
    return row


def test_a_lane_of_process_steps_shares_one_worker_per_instance(tmp_path):
    src = tmp_path / "n.csv"
    src.write_text("n\n" + "".join(f"{k}\n" for k in range(3000)))
    flow = Flow("proc_lane", params={"src": str(src)}, chunk_size=100)
    read = flow.step("read", steps.CsvInput("${params.src}", types={"n": int}), instances=2, processes=True)
    tag = flow.step("tag", first_pid, instances=2, processes=True)
    more = flow.step("more", add_pid, instances=2, processes=True)
    flow.hop(read, tag)
    flow.hop(tag, more)
    flow.hop(more, flow.step("res", steps.SetFlowResult(collect=True)))
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["n"] for r in run.result) == list(range(3000))
    assert all(r["pid"] == r["pid_b"] != os.getpid() for r in run.result)  # one worker runs the lane
    assert len({r["pid"] for r in run.result}) == 2
    for step in ("read", "tag", "more"):
        assert sum(m.rows_out["out"] for m in run.metrics[step]) == 3000, step
    assert [m.rows_in for m in run.metrics["tag"]] == [m.rows_out["out"] for m in run.metrics["read"]]
    assert all(m.state == "done" for ms in run.metrics.values() for m in ms)


def fails_on_1234(row):
    if row["n"] == 1234:
        raise ValueError("1234 is cursed")
    return row


def test_a_failure_inside_a_shared_worker_names_its_own_step(tmp_path):
    src = tmp_path / "n.csv"
    src.write_text("n\n" + "".join(f"{k}\n" for k in range(3000)))
    flow = Flow("proc_lane_fail", params={"src": str(src)}, chunk_size=100)
    read = flow.step("read", steps.CsvInput("${params.src}", types={"n": int}), instances=2, processes=True)
    check = flow.step("check", steps.Map(fails_on_1234), instances=2, processes=True)
    flow.hop(read, check)
    run = flow.run()
    assert not run.ok and run.failed_step == "check"
    assert "step 'check'" in run.message and "1234 is cursed" in run.message


def identity(row):
    return row


def test_chunks_cross_to_workers_compactly_and_come_back_equal():
    import datetime
    import decimal
    import pickle

    from tinyo.flow.wire import decode, encode

    uniform = [{"id": i, "name": f"n{i}", "score": i / 3, "tags": ["a", i], "missing": None} for i in range(1000)]
    packed = encode(uniform)
    assert packed[:1] == b"C" and packed.count(b"score") == 1  # field names once per chunk, not once per row
    assert len(packed) < len(pickle.dumps(uniform, protocol=pickle.HIGHEST_PROTOCOL))
    assert decode(packed) == uniform
    odd = [{"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1}, {"when": datetime.date(2024, 1, 2), "d": decimal.Decimal("1.5")}]
    assert encode(odd)[:1] == b"P" and decode(encode(odd)) == odd
    assert [list(r) for r in decode(encode(odd))] == [list(r) for r in odd]  # field order kept

    flow = Flow("proc_round_trip", chunk_size=300)
    gen = flow.step("gen", steps.Generate(rows=uniform + odd, index=None))
    same = flow.step("same", steps.Map(identity), instances=2, processes=True)
    flow.hop(gen, same)
    flow.hop(same, flow.step("res", steps.SetFlowResult(collect=True)))
    run = flow.run()
    assert run.ok, run.error
    key = repr
    assert sorted(run.result, key=key) == sorted(uniform + odd, key=key)
