"""Ops on a Dask cluster: a LocalCluster on 127.0.0.1 (two worker processes, one thread each) per module.

The seed scenarios give the same results as on the process pool; op output and data-flow metrics
reach the bus; a worker killed mid-op is survived (retry policy); an orchestrator restart while ops
run on the cluster is reconciled (running -> awaited, finished -> recorded, lost -> run again);
cancel from the console cancels the Dask task; start-up errors are clear.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "tinyo[dask]")')

from tinyo import events as ev  # noqa: E402
from tinyo.errors import TinyoError  # noqa: E402
from tinyo.executors import dask_executor  # noqa: E402
from tinyo.model import Execution  # noqa: E402
from tinyo.store import Store  # noqa: E402

from conftest import drop, write_recipe  # noqa: E402
from test_e2e_scenarios import CHAIN, RETAIL, TIMER, WEEKDAY  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as lc:
        with distributed.Client(lc, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            yield lc, client


@pytest.fixture
def dask_harness(harness, cluster):
    lc, client = cluster
    client.wait_for_workers(2, timeout=60)  # a test may have killed one; its nanny restarts it

    def make(recipe: Path, **kw):
        return harness(recipe, execution=Execution.DASK, executor_address=lc.scheduler_address, **kw)

    return make


def _outcome(h, folder):
    """What a scenario produced, independent of timing, worker names and the temp folder."""
    here = str(folder)
    return (sorted(line.replace(here, "<dir>") for line in h.lines()),
            sorted(tuple(sorted(t.replace(here, "<dir>") for t in e.targs)) for e in h.of(ev.DESRegistered)),
            Counter(e.op for e in h.of(ev.OpFinished)), len(h.of(ev.OpFailed)))


def _run_retail(h, inbox):
    drop(inbox, "fact_file_20241028.csv")
    drop(inbox, "fact_file_20241030.csv")
    h.wait_idle()
    drop(inbox, "dimensional_file.csv")
    h.wait_idle()


def _run_weekday(h, inbox):
    for name in ("file_20241028.csv", "file_20241029.csv", "file_20241103.csv", "notes.txt"):
        drop(inbox, name)
    h.wait_idle()


def _run_chain(h, inbox):
    drop(inbox, "file_1")
    h.wait_for(lambda: (inbox / "file_10").exists(), what="file_10")
    h.wait_idle()


@pytest.mark.parametrize("body,drive", [(RETAIL, _run_retail), (WEEKDAY, _run_weekday), (CHAIN, _run_chain)],
                         ids=["retail", "weekday", "chain"])
def test_seed_scenarios_give_the_same_results_as_the_process_pool(tmp_path, harness, dask_harness, body, drive):
    outcomes = []
    workers = []
    for label in ("processes", "dask"):
        folder = tmp_path / label
        inbox = folder / "inbox"
        inbox.mkdir(parents=True)
        recipe = write_recipe(folder, body, db=folder / "s.db", inbox=inbox, day="20241028")
        make = harness if label == "processes" else dask_harness
        with make(recipe) as h:
            drive(h, inbox)
        outcomes.append(_outcome(h, folder))
        workers.append({e.worker for e in h.of(ev.OpStarted)})
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][2], "no op ran"
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers[1]), workers[1]


def test_timer_scenario_runs_on_the_cluster(tmp_path, dask_harness):
    recipe = write_recipe(tmp_path, TIMER, db=tmp_path / "t.db")
    with dask_harness(recipe) as h:
        h.wait_for(lambda: len(h.of(ev.OpFinished)) >= 3, what="three timer ops")
    for line in h.lines()[:3]:
        time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")  # the op printed the tick's datetime


OUTPUT = """
def talk(context):
    print('begin', context['config']['n'], flush=True)
    print('to stderr', file=sys.stderr)
    time.sleep(1.0)
    print('end', context['config']['n'])
    return {'n': context['config']['n']}

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]),
                       ops=[(talk, Config({'n': event}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=2)
"""


def test_op_output_reaches_the_bus_while_the_op_runs_and_workers_show_their_address(tmp_path, dask_harness, cluster):
    _, client = cluster
    recipe = write_recipe(tmp_path, OUTPUT, db=tmp_path / "o.db")
    with dask_harness(recipe) as h:
        h.engine.inject("x1")
        h.wait_for(lambda: "begin x1" in h.lines(), what="the first line")
        assert not h.of(ev.OpFinished), "the line arrived only after the op ended"
        busy = [w for w in h.engine.workers() if w.state == "busy"]
        assert len(busy) == 1 and busy[0].op == "talk" and busy[0].pid is None
        h.wait_idle()
    addresses = set(client.nthreads())
    out = {(e.stream, e.line) for e in h.of(ev.OpOutput)}
    assert out == {("stdout", "begin x1"), ("stderr", "to stderr"), ("stdout", "end x1")}
    (finished,) = h.of(ev.OpFinished)
    assert finished.worker in addresses and finished.result == "{'n': 'x1'}"
    shown = {e.worker for e in h.of(ev.WorkerChanged)}
    assert addresses <= shown, "the console's Workers pane is fed WorkerChanged events for every Dask worker"
    store = Store(str(tmp_path / "o.db"), lock=False)
    (run,) = store.recent_runs(5)
    assert run.status == "ok" and run.worker == finished.worker and "begin x1" in run.output
    store.close()


FLOW = """
from tinyo.flow import Flow, steps

def slow(row, ctx):
    time.sleep(0.002)
    return row

metered = Flow("metered", params={"n": 300}, chunk_size=20, buffer=40)
_gen = metered.step("gen", steps.Generate("${params.n}"))
_work = metered.step("work", slow, instances=2)
_res = metered.step("res", steps.SetFlowResult("i", collect=True))
metered.hop(_gen, _work)
metered.hop(_work, _res)

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['flowed']), ops=[(metered, Config({'n': 300}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=2)
"""


def test_data_flow_metrics_reach_the_bus(tmp_path, dask_harness):
    recipe = write_recipe(tmp_path, FLOW, db=tmp_path / "f.db")
    with dask_harness(recipe) as h:
        h.engine.inject("go")
        h.wait_for(lambda: h.of(ev.OpFinished) or h.of(ev.OpFailed), what="the flow run")
        h.wait_idle()
    assert not h.of(ev.OpFailed), h.of(ev.OpFailed)
    (finished,) = h.of(ev.OpFinished)
    samples = h.of(ev.FlowMetrics)
    assert samples and all(s.run_id == finished.run_id and s.flow == "metered" for s in samples)
    finals = [s for s in samples if s.state == "done"]
    assert sorted((s.step, s.instance) for s in finals) == [("gen", 0), ("res", 0), ("work", 0), ("work", 1)]
    assert sum(s.rows_in for s in finals if s.step == "work") == 300
    assert sum(s.rows_out["out"] for s in finals if s.step == "work") == 300


DIE = """
import signal

def fragile(context):
    with open('{ledger}', 'a') as fh:
        fh.write('die' + str(context['attempt']) + '\\n')
    marker = '{marker}'
    if not os.path.exists(marker):
        open(marker, 'w').close()
        print('dying', flush=True)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    print('survived, attempt', context['attempt'])

def steady(context):
    with open('{ledger}', 'a') as fh:
        fh.write(context['config']['name'] + '\\n')
    time.sleep(0.4)

@meta_task(root=True)
def gen(event):
    op = fragile if event == 'die' else steady
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]),
                       ops=[(op, Config({'name': event}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=2, retries=1, retry_delay=0.1)
"""


def test_a_worker_killed_mid_op_fails_the_run_and_the_retry_policy_runs_it_again(tmp_path, dask_harness, cluster):
    """The op that was running is failed and retried; the op waiting on the same worker moves to the
    other one; none runs twice (Dask does not run the lost one again by itself)."""
    _, client = cluster
    recipe = write_recipe(tmp_path, DIE, db=tmp_path / "d.db", marker=tmp_path / "marker", ledger=tmp_path / "ledger")
    with dask_harness(recipe) as h:
        for event in ("die", "s1", "s2", "s3"):
            h.engine.inject(event)
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 4, timeout=60, what="every op done")
        h.wait_idle()
    (failed,) = h.of(ev.OpFailed)
    assert failed.worker.startswith("tcp://") and "Dask worker" in failed.error and failed.worker in failed.error
    assert failed.retry_in is not None
    assert "survived, attempt 2" in h.lines()
    store = Store(str(tmp_path / "d.db"), lock=False)
    runs = store.recent_runs(10)
    store.close()
    assert sorted((r.attempt, r.status) for r in runs) == [(1, "failed"), (1, "ok"), (1, "ok"), (1, "ok"), (2, "ok")]
    time.sleep(0.5)
    assert sorted((tmp_path / "ledger").read_text().split()) == ["die1", "die2", "s1", "s2", "s3"], \
        "an op ran twice"
    client.wait_for_workers(2, timeout=60)


RESTART = """
def slow(context):
    name = context['config']['name']
    with open('{ledger}', 'a') as fh:
        fh.write(name + '\\n')
    print('started', name, flush=True)
    time.sleep(context['config']['secs'])
    print('finished', name)

@meta_task(root=True)
def gen(event):
    secs = {'a': 4.0, 'b': 1.0, 'c': 0.1}[event]
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]),
                       ops=[(slow, Config({'name': event, 'secs': secs}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=2)
"""


def test_orchestrator_restart_while_ops_run_on_the_cluster_is_reconciled(tmp_path, dask_harness, cluster):
    _, client = cluster
    ledger = tmp_path / "ledger"
    recipe = write_recipe(tmp_path, RESTART, db=tmp_path / "r.db", ledger=ledger)
    with dask_harness(recipe) as h1:
        for name in ("a", "b", "c"):
            h1.engine.inject(name)
        h1.wait_for(lambda: len(h1.of(ev.OpStarted)) == 2, what="a and b running")
        des = {sorted(e.targs)[0][4:]: e.des_id for e in h1.of(ev.DESRegistered)}
        h1.engine.stop(timeout=0)  # a and b run on; c waits in Dask's queue
    assert not h1.of(ev.OpFinished)
    # c is lost meanwhile (as if the scheduler had forgotten it): it must run again
    (c_name,) = [n for n in client.list_datasets() if str(n).endswith("-" + des["c"])]
    client.unpublish_dataset(c_name)
    time.sleep(1.5)  # b finishes while no orchestrator listens
    with dask_harness(recipe) as h2:
        h2.wait_for(lambda: len(h2.of(ev.OpFinished)) == 3, timeout=30, what="a, b and c finished")
        h2.wait_idle()
    lines = h2.lines()
    assert "finished a" in lines and "finished b" in lines and "finished c" in lines
    assert sorted(ledger.read_text().split()) == ["a", "b", "c"], "an op ran twice"
    store = Store(str(tmp_path / "r.db"), lock=False)
    runs = store.recent_runs(10)
    store.close()
    by_des = {}
    for r in runs:
        by_des.setdefault(r.des_id, []).append(r.status)
    assert by_des[des["a"]] == ["ok"] and by_des[des["b"]] == ["ok"]
    assert by_des[des["c"]] == ["interrupted", "ok"]
    assert not [n for n in client.list_datasets() if str(n).startswith("tinyo-")
                and str(n).rsplit("-", 1)[-1] in des.values()], "datasets left on the scheduler"


CANCEL = """
def long(context):
    print('started', context['config']['name'], flush=True)
    for _ in range(300):
        time.sleep(0.02)
    print('not cancelled')

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]),
                       ops=[(long, Config({'name': event}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=2)
"""


def test_cancel_from_the_console_cancels_the_dask_task_running_or_queued(tmp_path, dask_harness, cluster):
    _, client = cluster
    recipe = write_recipe(tmp_path, CANCEL, db=tmp_path / "c.db")
    with dask_harness(recipe) as h:
        for name in ("a", "b", "c"):
            h.engine.inject(name)
        h.wait_for(lambda: len(h.of(ev.OpStarted)) == 2, what="two running")
        running = h.of(ev.OpStarted)[0].run_id
        queued = next(rid for rid in h.engine.call(lambda: list(h.engine.loop.runbook.open)) if rid not in
                      {e.run_id for e in h.of(ev.OpStarted)})
        h.engine.cancel(queued)
        h.engine.cancel(running)
        h.wait_for(lambda: len(h.of(ev.OpCancelled)) == 2, timeout=5, what="both cancelled")
        h.engine.cancel(h.of(ev.OpStarted)[1].run_id)
        h.wait_idle()
    assert "not cancelled" not in h.lines()
    assert len(h.of(ev.OpCancelled)) == 3 and not h.of(ev.OpFinished)
    store = Store(str(tmp_path / "c.db"), lock=False)
    assert {r.status for r in store.recent_runs(10)} == {"cancelled"}
    store.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(client.processing().values()):
        time.sleep(0.05)
    assert not any(client.processing().values()), "a cancelled op still occupies a Dask worker"


def test_a_worker_that_cannot_import_the_recipe_is_a_clear_error_at_start(tmp_path, dask_harness, cluster):
    body = """
    import multiprocessing
    if multiprocessing.parent_process() is not None:  # a Dask worker process, not the orchestrator
        raise ImportError("No module named 'secret_dep'")

    def op(context):
        pass

    @meta_task(root=True)
    def gen(event):
        return (None, [])

    config = TinyOConfig(sql_conn='{db}')
    """
    recipe = write_recipe(tmp_path, body, db=tmp_path / "e.db")
    h = dask_harness(recipe)
    with pytest.raises(TinyoError) as info:
        with h:
            pass
    text = str(info.value)
    assert "cannot run this recipe" in text and "secret_dep" in text
    assert all(addr in text for addr in cluster[1].nthreads())


def test_an_unreachable_scheduler_is_a_clear_error_naming_it(tmp_path, harness, monkeypatch):
    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", 0.5)
    recipe = write_recipe(tmp_path, OUTPUT, db=tmp_path / "u.db")
    h = harness(recipe, execution=Execution.DASK, executor_address="tcp://127.0.0.1:9")
    with pytest.raises(TinyoError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        with h:
            pass


def test_without_distributed_the_message_names_the_extra(monkeypatch):
    from tinyo.executors import make_executor

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(TinyoError, match=r'pip install "tinyo\[dask\]"'):
        make_executor(Execution.DASK, recipe_path="x.py", max_workers=1, sink=print, resolver=None,  # type: ignore[arg-type]
                      clock=time.time, address="tcp://127.0.0.1:8786")


def test_the_client_event_loop_never_waits_on_a_full_forwarder_queue(tmp_path, monkeypatch):
    """The client's event loop offers worker messages to a bounded queue and drops what does not fit
    (the runs are collected from their results instead); it is never held up, and the drops are counted."""
    monkeypatch.setattr(dask_executor, "EVENTS_MAX", 8)
    sink_got: list[object] = []
    ex = dask_executor.DaskExecutor(str(tmp_path / "recipe.py"), "tcp://127.0.0.1:1", 1, sink_got.append, time.time,
                                    str(tmp_path / "state.db"))
    for i in range(12):
        ex._offer(("ev", {"w": "w1", "m": [(i, "out", 1, ("stdout", "x"))]}))
    assert ex._q.qsize() == 8 and ex._dropped == 4
    ex._hand_over(("cancel", 1, "cancel"))  # control items never wait either, and are never dropped
    assert list(ex._control) == [("cancel", 1, "cancel")]
