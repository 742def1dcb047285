"""Data flows: split-then-rejoin graphs cannot deadlock on bounded buffers; cycles are refused."""

from __future__ import annotations

import threading
import time

import pytest

from tinyo.flow import Flow, FlowDefinitionError, steps


def slow(row, ctx):
    if row["i"] % 50 == 0:
        time.sleep(0.001)
    row["path"] = "slow"
    return row


def fast(row, ctx):
    row["path"] = "fast"
    return row


def _run_with_deadline(flow, seconds=20.0, **params):
    """Run in a thread so a deadlock fails the test instead of hanging it."""
    box = []
    thread = threading.Thread(target=lambda: box.append(flow.run(**params)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"flow {flow.name!r} did not finish in {seconds}s: deadlock"
    return box[0]


@pytest.mark.parametrize("buffer", [1, 7, 100])
def test_split_then_rejoin_with_tiny_buffers_finishes(buffer):
    """A feeds B (slow) and C (fast); both feed D. D reads whatever arrives first, so no deadlock."""
    flow = Flow("diamond", chunk_size=16, buffer=buffer)
    a = flow.step("a", steps.Generate(3000))
    b = flow.step("b", slow)
    c = flow.step("c", fast)
    d = flow.step("d", steps.Aggregate("path", {"n": ("count", None)}))
    flow.hop(a, b)
    flow.hop(a, c)
    flow.hop(b, d)
    flow.hop(c, d)
    flow.hop(d, flow.step("res", steps.SetFlowResult(collect=True)))
    run = _run_with_deadline(flow)
    assert run.ok, run.error
    assert sorted((r["path"], r["n"]) for r in run.result) == [("fast", 3000), ("slow", 3000)]


def test_split_rejoin_across_instances_and_partitions_finishes():
    flow = Flow("diamond_multi", chunk_size=10, buffer=5)
    a = flow.step("a", steps.Generate(2000), instances=2)
    b = flow.step("b", slow, instances=3)
    c = flow.step("c", fast, instances=1)
    d = flow.step("d", steps.Aggregate(("path", "i"), {"n": ("count", None)}), instances=2)
    flow.hop(a, b)
    flow.hop(a, c)
    flow.hop(b, d, partition="i")
    flow.hop(c, d, partition="i")
    flow.hop(b, c, gate="copy")  # an extra cross hop on an unused gate changes nothing
    flow.hop(d, flow.step("res", steps.SetFlowResult(collect=True)))
    run = _run_with_deadline(flow)
    assert run.ok, run.error
    assert len(run.result) == 2 * 2000  # (path, i) pairs: both paths saw each i twice (2 generators)
    assert all(r["n"] == 2 for r in run.result)


def test_a_cycle_is_refused_when_the_closing_hop_is_added():
    flow = Flow("cyclic")
    a = flow.step("a", steps.Generate(1))
    b = flow.step("b", fast)
    c = flow.step("c", fast)
    flow.hop(a, b)
    flow.hop(b, c, gate="out")
    with pytest.raises(FlowDefinitionError) as info:
        flow.hop(c, a, gate="error")
    assert "flow 'cyclic' hop 'c'.error -> 'a' would close the cycle c -> a -> b -> c" in str(info.value)
    assert [(h.source, h.target) for h in flow.hops] == [("a", "b"), ("b", "c")]


def test_a_failure_downstream_of_a_blocked_producer_stops_the_run():
    def fail_late(row, ctx):
        time.sleep(0.01)
        raise RuntimeError("sink broke")

    flow = Flow("blocked_then_fail", chunk_size=10, buffer=10)
    a = flow.step("a", steps.Generate(10_000_000))
    b = flow.step("b", fail_late)
    flow.hop(a, b)
    started = time.monotonic()
    run = _run_with_deadline(flow, 15)
    assert time.monotonic() - started < 5
    assert not run.ok and run.failed_step == "b" and "sink broke" in run.message
    assert run.metrics["a"][0].state == "stopped"
