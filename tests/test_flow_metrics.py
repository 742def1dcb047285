"""Data flows: live metrics reach the engine through tinyo.runtime, throttled, with a final sample."""

from __future__ import annotations

import threading
import time

from tinyo import runtime
from tinyo.events import FlowMetrics
from tinyo.flow import Flow, steps
from tinyo.model import Config
from tinyo.runtime import RunContext

FIELDS = {"flow", "flow_run", "step", "instance", "instances", "state", "rows_in", "rows_out", "errors",
          "rows_per_s", "buffer_fill", "buffer_size", "counters"}


def slow(row, ctx):
    time.sleep(0.002)
    return row


def _flow(rows=400):
    flow = Flow("metered", params={"n": rows}, chunk_size=20, buffer=40)
    gen = flow.step("gen", steps.Generate("${params.n}"))
    work = flow.step("work", slow, instances=2)
    res = flow.step("res", steps.SetFlowResult("i", collect=True))
    flow.hop(gen, work)
    flow.hop(work, res)
    return flow


def test_metrics_reach_the_bound_run_context_from_every_step_thread():
    received = []
    lock = threading.Lock()

    def emit(kind, run_id, payload):
        with lock:
            received.append((kind, run_id, payload, threading.current_thread().name))

    flow = _flow()
    with runtime.running(RunContext(run_id=1, des_id="d", worker="w1", emit=emit)):
        result = flow(({"deps": frozenset(), "targs": frozenset({"t"}), "config": Config({"n": 400})}))
    assert sorted(result) == list(range(400))
    assert received and all(kind == "metric" and run_id == 1 for kind, run_id, _, _ in received)
    samples = [p for _, _, p, _ in received]
    assert all(set(p) == FIELDS for p in samples)
    assert any(name.startswith("flow:metered:work#") for _, _, _, name in received)
    # every sample converts to the engine's bus event
    events = [FlowMetrics(ts=0.0, run_id=1, **p) for p in samples]
    assert {e.step for e in events} == {"gen", "work", "res"}

    finals = [p for p in samples if p["state"] == "done"]
    assert sorted((p["step"], p["instance"]) for p in finals) == [("gen", 0), ("res", 0), ("work", 0), ("work", 1)]
    work_final = [p for p in finals if p["step"] == "work"]
    assert sum(p["rows_in"] for p in work_final) == 400
    assert sum(p["rows_out"]["out"] for p in work_final) == 400
    assert all(p["instances"] == 2 and p["buffer_size"] == 40 for p in work_final)
    assert len({p["flow_run"] for p in samples}) == 1


def test_samples_are_throttled_per_instance_and_show_states():
    samples = []
    flow = _flow(600)
    started = time.monotonic()
    run = flow.run(on_metrics=samples.append)
    elapsed = time.monotonic() - started
    assert run.ok, run.error
    for step, index in (("gen", 0), ("work", 0), ("work", 1), ("res", 0)):
        mine = [s for s in samples if s["step"] == step and s["instance"] == index]
        # at most ~10 a second, plus the first and the final sample
        assert len(mine) <= elapsed / 0.1 + 3, (step, index, len(mine), elapsed)
        assert mine[-1]["state"] == "done"
    states = {s["state"] for s in samples}
    assert "blocked" in states, "the fast generator should have been blocked by the slow workers"
    assert "waiting" in states, "the result step should have waited for input"
    live_rates = [s["rows_per_s"] for s in samples if s["step"] == "work" and s["state"] != "done"]
    assert any(rate > 0 for rate in live_rates)
    assert run.metrics["work"][0]["rows_in"] + run.metrics["work"][1]["rows_in"] == 600


def test_metrics_sink_receives_samples_outside_the_engine():
    got = []
    with runtime.metrics_sink(got.append):
        run = _flow(50).run()
    assert run.ok
    assert {s["step"] for s in got} == {"gen", "work", "res"}
    assert all(s["flow_run"] == run.run_id for s in got)


def test_a_failing_metrics_callback_fails_the_run_clearly():
    def broken(sample):
        raise RuntimeError("callback broke")

    run = _flow(10).run(on_metrics=broken)
    assert not run.ok and "on_metrics callback raised RuntimeError: callback broke" in run.message


def test_inside_an_engine_run_prints_and_metrics_of_step_threads_belong_to_the_op():
    """Run the flow through the engine's op runner: Log lines from step threads become op output."""
    import sys

    from tinyo import worker

    messages = []
    lock = threading.Lock()

    def emit(kind, run_id, payload):
        with lock:
            messages.append((kind, run_id, payload))

    flow = Flow("engine_op", params={"n": 3})
    gen = flow.step("gen", steps.Generate("${params.n}"))
    flow.hop(gen, flow.step("log", steps.Log(prefix="row:"), instances=2))
    task = worker.Task(run_id=7, des_id="d1", attempt=1, recipe_path="", ops=(("<recipe>:flow", Config({"n": 3})),),
                       deps=frozenset(), targs=frozenset({"t"}))
    saved = sys.stdout, sys.stderr
    try:
        worker.install_routers()
        worker.run_task(task, lambda ref: flow, emit, "w1")
    finally:
        sys.stdout, sys.stderr = saved
    done = [p for k, _, p in messages if k == "done"]
    assert done and done[0][0] is True, done
    lines = sorted(p[1] for k, _, p in messages if k == "out" and p[0] == "stdout")
    assert lines == ["row: {'i': 0}", "row: {'i': 1}", "row: {'i': 2}"]
    metric_steps = {p["step"] for k, rid, p in messages if k == "metric" and rid == 7}
    assert metric_steps == {"gen", "log"}
