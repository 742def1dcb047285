"""Generators run on the engine loop's own thread, under a time bound: one that hangs is reported and
left behind on that thread while the loop goes on on a fresh one, and if it ever returns, what it
returns is dropped and that thread touches nothing."""

from __future__ import annotations

import threading

import pytest

from tinyo import events as ev
from tinyo.generators import Abandoned, GeneratorRunner
from tinyo.recipe import MetaTask

from conftest import write_recipe


def _task(fn) -> MetaTask:
    return MetaTask(fn, download=(), root=True)


def test_generators_run_on_the_calling_thread_in_order():
    seen: list[tuple[str, str]] = []

    def gen(event):
        seen.append((event, threading.current_thread().name))
        return (None, [])

    runner = GeneratorRunner([_task(gen)], timeout=5.0)
    out = runner.run([(1, "a"), (2, "b"), (3, "c")], on_hang=lambda done, hung: pytest.fail("no hang here"))
    assert [e.event_id for e in out] == [1, 2, 3]
    assert seen == [(name, threading.current_thread().name) for name in "abc"]


def test_a_batch_past_its_bound_is_handed_over_and_the_stuck_call_raises_abandoned_when_it_returns():
    release = threading.Event()

    def gen(event):
        if event == "slow":
            release.wait(10)
        return (None, [])

    handed: list[tuple[list[int], tuple[int, str, str], str]] = []
    got = threading.Event()

    def on_hang(done, hung):
        handed.append(([e.event_id for e in done], hung, threading.current_thread().name))
        got.set()

    runner = GeneratorRunner([_task(gen)], timeout=0.2)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(runner.run([(1, "a"), (2, "slow"), (3, "c")], on_hang))
        except Abandoned:
            outcome.append("abandoned")

    caller = threading.Thread(target=call)
    caller.start()
    assert got.wait(10), "the monitor reports the batch that outlived its bound"
    assert handed == [([1], (2, "gen", "slow"), "tinyo-generator-bound")]
    assert outcome == [], "the stuck call is still inside the generator"
    release.set()
    caller.join(10)
    assert outcome == ["abandoned"], "what the generator returned late is dropped"
    # the runner serves the next batch as usual
    assert [e.event_id for e in runner.run([(4, "d")], on_hang)] == [4]


def test_a_batch_starting_while_the_monitor_sleeps_idle_is_still_bound_by_its_own_deadline():
    """A batch is not told to the monitor: one that starts after the monitor found no batch running (and
    went to sleep for a bound) hangs, and is reported once its own bound has passed, not a bound later."""
    import time

    release = threading.Event()

    def gen(event):
        if event == "slow":
            release.wait(10)
        return (None, [])

    timeout = 1.0
    runner = GeneratorRunner([_task(gen)], timeout=timeout)
    reported: list[float] = []
    got = threading.Event()

    def on_hang(done, hung):
        reported.append(time.monotonic())
        got.set()

    assert [e.event_id for e in runner.run([(1, "a")], on_hang)] == [1]  # starts the monitor; it finds none
    time.sleep(0.3)  # the monitor is asleep for its bound, with no batch running
    started = time.monotonic()
    caller = threading.Thread(target=lambda: pytest.raises(Abandoned, runner.run, [(2, "slow")], on_hang))
    caller.start()
    assert got.wait(10)
    assert started + timeout <= reported[0] < started + 2 * timeout, "reported at its own deadline"
    release.set()
    caller.join(10)
    runner.close()


RECIPE = """
def ok(context):
    print('ok', context['config']['n'])

@meta_task(root=True)
def gen(event):
    if event == 'late':
        time.sleep(1.5)  # past the bound: reported as hung; what it returns afterwards is dropped
        return (None, [DES(deps=frozenset(['late']), targs=frozenset(['out.late']), ops=[(ok, Config({'n': 'late'}))])])
    if event == 'exit':
        sys.exit(3)
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]), ops=[(ok, Config({'n': event}))])])

config = TinyOConfig(sql_conn='{db}', dirs=[], max_workers=2, execution=Execution.THREADS, generator_timeout=0.3)
"""


def test_the_loop_goes_on_on_a_fresh_thread_and_the_late_return_changes_nothing(tmp_path, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db")
    with harness(recipe) as h:
        first = h.engine.loop.thread
        for event in ("one", "late", "two", "exit", "three"):
            h.engine.inject(event)
        h.wait_for(lambda: {"ok one", "ok two", "ok three"} <= set(h.lines()), what="the events around the hang")
        assert h.engine.loop.thread is not first and h.engine.loop.thread.name == "tinyo-engine"
        first.join(10)  # the hung generator returns on the old thread, which then ends, touching nothing
        assert not first.is_alive()
        h.engine.inject("four")
        h.wait_for(lambda: "ok four" in h.lines(), what="an event after the late return")
        h.wait_idle()
        errors = {e.event: e.error for e in h.of(ev.GeneratorError)}
        registered = [e.targs for e in h.of(ev.DESRegistered)]
        told = [(e.name, e.des_count, e.errors) for e in h.of(ev.EventReceived)]
        late = [i for i, e in enumerate(h.events) if getattr(e, "name", getattr(e, "event", None)) == "late"
                and isinstance(e, (ev.EventReceived, ev.GeneratorError))]
    assert h.engine.state == "stopped" and h.engine.fatal is None
    # each event told once, once its generators had seen it (those put back after the hang too); the hung
    # one with no DES count, before its error
    assert sorted(told) == [("exit", 0, 1), ("four", 1, 0), ("late", None, 0), ("one", 1, 0), ("three", 1, 0),
                            ("two", 1, 0)]
    assert [type(h.events[i]) for i in late] == [ev.EventReceived, ev.GeneratorError]
    assert "did not return within 0.3s" in errors["late"]
    assert errors["exit"].startswith("raised SystemExit: 3"), "a generator's sys.exit() is its error, not the engine's"
    assert frozenset({"out.late"}) not in registered
    assert sorted(h.lines()) == ["ok four", "ok one", "ok three", "ok two"]


def test_the_bound_keeping_thread_ends_with_the_engine(tmp_path, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db")
    with harness(recipe) as h:
        h.engine.inject("one")
        h.wait_for(lambda: "ok one" in h.lines(), what="one event")
        monitor = h.engine.loop.generators._monitor
        assert monitor is not None and monitor.is_alive()
    monitor.join(5)
    assert not monitor.is_alive()


def test_an_infinite_bound_never_reports_a_batch_and_the_monitor_keeps_running():
    """``generator_timeout=inf`` (no bound): batches run and nothing is reported; the monitor thread does
    not fail on a wait longer than the platform allows."""
    runner = GeneratorRunner([_task(lambda event: (None, []))], timeout=float("inf"))
    for n in range(3):
        assert [e.event_id for e in runner.run([(n, "a")], lambda done, hung: pytest.fail("no bound"))] == [n]
    monitor = runner._monitor
    assert monitor is not None
    monitor.join(0.2)
    assert monitor.is_alive(), "the monitor waits (it did not die on the wait's length)"
    runner.close()
    monitor.join(5)
    assert not monitor.is_alive()
