"""Data flows: kickstart, gates, parameters, variables, results, interpolation and use as a DES op."""

from __future__ import annotations

import threading
import time

import pytest

from tinyo.flow import REQUIRED, Flow, FlowDefinitionError, FlowFailed, Gates, steps
from tinyo.model import Config


def collect(into: list):
    """A sink function that keeps every row it gets (thread-safe list.append) and drops it."""

    def sink(row, ctx):
        into.append(row)
        return None

    return sink


def test_a_step_without_predecessor_gets_one_empty_row_per_instance():
    seen = []

    def source(row, ctx):
        seen.append((dict(row), ctx.instance.index, ctx.instance.count))
        return [{"n": k} for k in range(3)]

    flow = Flow("kick")
    src = flow.step("source", source, instances=2)
    res = flow.step("result", steps.SetFlowResult("n", collect=True))
    flow.hop(src, res)
    run = flow.run()
    assert run.ok, run.error
    assert sorted(seen) == [({}, 0, 2), ({}, 1, 2)]
    assert sorted(run.result) == [0, 0, 1, 1, 2, 2]
    assert run.rows_in("source") == 2


def test_filter_sends_rows_to_out_and_rejected():
    kept, rejected = [], []
    flow = Flow("filter")
    gen = flow.step("gen", steps.Generate(10))
    flt = flow.step("even", steps.Filter(lambda r: r["i"] % 2 == 0))
    flow.hop(gen, flt)
    flow.hop(flt, flow.step("kept", collect(kept)))
    flow.hop(flt, flow.step("rejected", collect(rejected)), gate="rejected")
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["i"] for r in kept) == [0, 2, 4, 6, 8]
    assert sorted(r["i"] for r in rejected) == [1, 3, 5, 7, 9]
    assert run.metrics["even"][0].rows_out == {"out": 5, "rejected": 5}


def test_switch_names_the_gate_and_unhopped_gates_drop_rows():
    small, big = [], []
    flow = Flow("switch")
    gen = flow.step("gen", steps.Generate(30))
    sw = flow.step("size", steps.Switch(lambda r: "small" if r["i"] < 10 else "big" if r["i"] < 20 else "huge"))
    flow.hop(gen, sw)
    flow.hop(sw, flow.step("small", collect(small)), gate="small")
    flow.hop(sw, flow.step("big", collect(big)), gate="big")
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["i"] for r in small) == list(range(10))
    assert sorted(r["i"] for r in big) == list(range(10, 20))
    assert run.rows_out("size", "huge") == 10


def test_switch_with_declared_gates_rejects_other_names():
    flow = Flow("switch_bad")
    gen = flow.step("gen", steps.Generate(3))
    sw = flow.step("route", steps.Switch(lambda r: "nowhere", gates=["a", "b"]))
    flow.hop(gen, sw)
    run = flow.run()
    assert not run.ok
    assert "step 'route'" in run.message and "'nowhere'" in run.message and "['a', 'b']" in run.message


def test_a_function_may_return_a_list_or_a_gate_dict():
    odd, out = [], []

    def split(row, ctx):
        if row["i"] % 2:
            return {"odd": [row]}
        return [row, dict(row, copy=True)]

    flow = Flow("gates_dict")
    gen = flow.step("gen", steps.Generate(6))
    sp = flow.step("split", split)
    flow.hop(gen, sp)
    flow.hop(sp, flow.step("odd", collect(odd)), gate="odd")
    flow.hop(sp, flow.step("out", collect(out)))
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["i"] for r in odd) == [1, 3, 5]
    assert sorted((r["i"], r.get("copy", False)) for r in out) == [
        (0, False), (0, True), (2, False), (2, True), (4, False), (4, True)]


def test_explicit_gates_reach_an_unhopped_gate_and_are_counted():
    def route(row, ctx):
        return Gates(audit=[row])

    flow = Flow("explicit")
    gen = flow.step("gen", steps.Generate(4))
    flow.hop(gen, flow.step("route", route))
    run = flow.run()
    assert run.ok, run.error
    assert run.rows_out("route", "audit") == 4 and run.rows_out("route") == 0


def test_a_row_that_raises_goes_to_the_error_gate():
    errors, good = [], []

    def fragile(row, ctx):
        if row["i"] == 3:
            raise ValueError(f"bad value {row['i']}")
        return row

    flow = Flow("errors")
    gen = flow.step("gen", steps.Generate(6))
    fr = flow.step("fragile", fragile, instances=1)
    flow.hop(gen, fr)
    flow.hop(fr, flow.step("good", collect(good)))
    flow.hop(fr, flow.step("errors", collect(errors)), gate="error")
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["i"] for r in good) == [0, 1, 2, 4, 5]
    assert len(errors) == 1
    err = errors[0]
    assert err["step"] == "fragile" and err["instance"] == 0
    assert err["row"] == {"i": 3}
    assert err["error"] == "ValueError: bad value 3"
    assert "Traceback" in err["traceback"] and "fragile" in err["traceback"]
    assert run.metrics["fragile"][0].errors == 1


def test_without_error_hop_a_failing_row_fails_the_flow_and_stops_everything_promptly():
    def endless(row, ctx):
        k = 0
        while True:
            yield [{"k": k + j} for j in range(100)]
            k += 100

    class Endless(steps.Step):
        def process(self, rows):
            return endless(rows[0], self.ctx)

    def explode(row, ctx):
        if row["k"] == 5000:
            raise RuntimeError("boom at 5000")
        return row

    flow = Flow("failing", buffer=1000)
    src = flow.step("endless", Endless())
    ex = flow.step("explode", explode, instances=2)
    flow.hop(src, ex)
    flow.hop(ex, flow.step("sink", lambda row, ctx: None))
    started = time.monotonic()
    run = flow.run()
    assert time.monotonic() - started < 10
    assert not run.ok and run.result is None
    assert run.failed_step == "explode"
    assert "flow 'failing' step 'explode' instance" in run.message
    assert "{'k': 5000}" in run.message and "RuntimeError: boom at 5000" in run.message
    assert "Traceback" in run.error and "boom at 5000" in run.traceback
    assert {m.state for m in run.metrics["endless"]} == {"stopped"}
    assert not [t for t in threading.enumerate() if t.name.startswith("flow:failing:")]


def test_parameters_have_defaults_and_overrides_and_unknown_names_fail():
    flow = Flow("params", params={"n": 3, "label": "x"})
    gen = flow.step("gen", steps.Generate("${params.n}", fields={"label": "${params.label}"}))
    flow.hop(gen, flow.step("res", steps.SetFlowResult(lambda r: (r["i"], r["label"]), collect=True)))
    assert flow.run().result == [(0, "x"), (1, "x"), (2, "x")]
    assert flow.run(n=2).result == [(0, "x"), (1, "x")]
    assert flow.run({"n": 1}).result == [(0, "x")]
    bad = flow.run(m=1)
    assert not bad.ok and "flow 'params' has no parameter 'm'" in bad.message and "label, n" in bad.message


def test_required_parameter_must_be_given():
    flow = Flow("required", params={"path": REQUIRED})
    flow.step("noop", lambda row, ctx: None)
    run = flow.run()
    assert not run.ok and "['path'] must be given" in run.message
    assert flow.run(path="x").ok


def test_variables_are_computed_from_parameters_and_may_validate_them():
    def checked(params):
        if params["n"] <= 0:
            raise ValueError(f"n must be positive, got {params['n']}")
        return params["n"] * 10

    flow = Flow("vars", params={"n": 2}, variables={"limit": checked, "name": "run-${params.n}", "k": 7})

    def use(row, ctx):
        return {"limit": ctx.vars.limit, "name": ctx.variables["name"], "k": ctx.vars.k}

    src = flow.step("use", use)
    flow.hop(src, flow.step("res", steps.SetFlowResult()))
    run = flow.run(n=4)
    assert run.ok, run.error
    assert run.result == {"limit": 40, "name": "run-4", "k": 7}
    bad = flow.run(n=0)
    assert not bad.ok and bad.result is None
    assert "variable 'checked'" not in bad.message
    assert "variable 'limit'" in bad.message and "n must be positive, got 0" in bad.message


def test_variables_may_be_one_function_of_the_parameters():
    flow = Flow("vars_fn", params={"a": 2}, variables=lambda p: {"double": p.a * 2})
    gen = flow.step("gen", steps.Generate("${vars.double}"))
    flow.hop(gen, flow.step("res", steps.SetFlowResult("i", collect=True)))
    assert flow.run(a=3).result == [0, 1, 2, 3, 4, 5]


def test_result_is_none_when_the_flow_fails_even_if_it_was_set():
    def late_failure(row, ctx):
        if row["i"] == 9:
            raise KeyError("missing")
        return row

    flow = Flow("late", buffer=1)
    gen = flow.step("gen", steps.Generate(10))
    res = flow.step("res", steps.SetFlowResult("i"))
    fail = flow.step("fail", late_failure)
    flow.hop(gen, res)
    flow.hop(res, fail)
    run = flow.run()
    assert not run.ok and run.result is None
    assert run.metrics["res"][0].rows_in >= 1, "Set Flow Result saw rows before the failure"


def test_context_exposes_flow_instance_params_and_services():
    seen = []

    def look(row, ctx):
        seen.append((ctx.flow.name, ctx.flow.run_id, ctx.instance.index, ctx.instance.count,
                     ctx.params.n, ctx.services["db"], ctx.step))
        return None

    flow = Flow("ctx", params={"n": 5}, services={"db": "/tmp/${params.n}.sqlite"})
    flow.step("look", look, instances=3)
    run = flow.run()
    assert run.ok, run.error
    assert sorted(seen) == [("ctx", run.run_id, i, 3, 5, "/tmp/5.sqlite", "look") for i in range(3)]


def test_instances_may_come_from_a_parameter():
    seen = set()
    flow = Flow("inst", params={"workers": 3})
    flow.step("look", lambda row, ctx: seen.add(ctx.instance.index), instances=lambda p: p["workers"])
    assert flow.run(workers=4).ok
    assert seen == {0, 1, 2, 3}
    bad = flow.run(workers=0)
    assert not bad.ok and "instances must be an int from 1 to 256, got 0" in bad.message


def test_unknown_interpolation_reference_names_the_step_and_setting():
    flow = Flow("interp", params={"n": 1})
    gen = flow.step("gen", steps.Generate("${params.nope}"))
    flow.hop(gen, flow.step("sink", lambda r, c: None))
    run = flow.run()
    assert not run.ok
    assert "step 'gen'" in run.message and "setting 'count'" in run.message
    assert "${params.nope}" in run.message and "params has no 'nope' (it has: n)" in run.message

    flow2 = Flow("interp2")
    flow2.step("q", steps.SqlInput("SELECT ${instance.bogus}"), instances=2)
    run2 = flow2.run()
    assert not run2.ok and "setting 'query'" in run2.message and "instance has no 'bogus' (it has: count, index)" in run2.message

    flow3 = Flow("interp3")
    flow3.step("q", steps.Generate("${n}"))
    assert "not a valid reference" in flow3.run().message


def test_rows_copied_to_several_hops_are_not_shared():
    got_b, got_c = [], []

    def mark(row, ctx):
        row["mark"] = "b"
        got_b.append(row)
        return None

    def keep(row, ctx):
        time.sleep(0.001)
        got_c.append(row)
        return None

    flow = Flow("copies")
    gen = flow.step("gen", steps.Generate(50))
    flow.hop(gen, flow.step("b", mark))
    flow.hop(gen, flow.step("c", keep))
    assert flow.run().ok
    assert len(got_b) == len(got_c) == 50
    assert {id(r) for r in got_b}.isdisjoint({id(r) for r in got_c})
    assert not any("mark" in r for r in got_c)


def test_building_errors_are_clear():
    flow = Flow("build")
    a = flow.step("a", steps.Generate(1))
    b = flow.step("b", lambda r, c: r)
    c = flow.step("c", lambda r, c: r)
    flow.hop(a, b)
    flow.hop(b, c)
    with pytest.raises(FlowDefinitionError, match=r"would close the cycle c -> b -> c"):
        flow.hop(c, b)
    with pytest.raises(FlowDefinitionError, match="cannot feed itself"):
        flow.hop(a, a)
    with pytest.raises(FlowDefinitionError, match="already has a step named 'a'"):
        flow.step("a", steps.Generate(1))
    with pytest.raises(FlowDefinitionError, match=r"'zzz' is not a step of this flow \(steps: a, b, c\)"):
        flow.hop(a, "zzz")
    with pytest.raises(FlowDefinitionError, match="pass an instance"):
        flow.step("d", steps.Map)


def test_a_flow_is_a_des_op():
    flow = Flow("op", params={"n": 3})
    gen = flow.step("gen", steps.Generate("${params.n}"))
    flow.hop(gen, flow.step("res", steps.SetFlowResult("i", collect=True)))
    context = {"deps": frozenset({"a"}), "targs": frozenset({"b"}), "config": Config({"n": 4})}
    assert flow(context) == [0, 1, 2, 3]

    broken = Flow("broken_op")
    broken.step("fail", lambda row, ctx: 1 / 0)
    with pytest.raises(FlowFailed) as info:
        broken({"deps": frozenset(), "targs": frozenset({"x"}), "config": Config({})})
    assert "flow 'broken_op' step 'fail' instance 0/1" in str(info.value)
    assert "ZeroDivisionError" in str(info.value) and "Traceback" in str(info.value)
