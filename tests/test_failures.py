"""Failures stay contained: a bad generator, a failing op, a dying worker, a hung op."""


import pytest

from tinyo import events as ev
from tinyo.store import Store

from conftest import write_recipe

FAULTS = """
import ctypes, signal

def ok(context):
    print('ok', context['config']['n'])

def boom(context):
    raise ValueError('bad row 42 in ' + context['config']['n'])

def suicide(context):
    os.kill(os.getpid(), signal.SIGKILL)

def segfault(context):
    ctypes.string_at(0)

def sleepy(context):
    print('sleeping', flush=True)
    time.sleep(float(context['config'].get('s', 30)))

def after(context):
    print('downstream ran')

@meta_task(root=True)
def gen(event):
    if event == 'raise':
        raise KeyError('no such thing')
    if event == 'shape':
        return ['not', 'a', 'pair', 'at', 'all']
    if event == 'notdes':
        return ('k', ['a string, not a DES'])
    m = re.fullmatch(r'(ok|boom|suicide|segfault|sleepy)_(\\w+)', event)
    if not m:
        return (None, [])
    fn = {'ok': ok, 'boom': boom, 'suicide': suicide, 'segfault': segfault, 'sleepy': sleepy}[m.group(1)]
    des = [DES(deps=frozenset([event]), targs=frozenset([f'out.{event}']), ops=[(fn, Config({'n': m.group(2), 's': {sleep}}))])]
    if m.group(1) == 'boom':
        des.append(DES(deps=frozenset([f'out.{event}']), targs=frozenset([f'after.{event}']), ops=[(after, Config({}))]))
    return (None, des)

config = TinyOConfig(sql_conn='{db}', dirs=[], max_workers=2, retries={retries}, retry_delay=0.2,
                     op_timeout={timeout})
"""


def faults(tmp_path, retries=0, timeout=None, sleep=30):
    return write_recipe(tmp_path, FAULTS, db=tmp_path / "f.db", retries=retries, timeout=timeout, sleep=sleep)


def test_generator_errors_are_reported_and_the_engine_goes_on(tmp_path, harness):
    with harness(faults(tmp_path)) as h:
        for event in ("raise", "shape", "notdes", "ok_1"):
            h.engine.inject(event)
        h.wait_idle()
    errors = {e.event: e for e in h.of(ev.GeneratorError)}
    assert errors["raise"].generator == "gen" and "raised KeyError" in errors["raise"].error
    assert "Traceback" in errors["raise"].traceback
    assert "expected (key, [DES, ...])" in errors["shape"].error
    assert "at position 0 of its DES list" in errors["notdes"].error
    assert h.lines() == ["ok 1"]


def test_failed_op_stores_error_and_traceback_and_downstream_waits(tmp_path, harness):
    with harness(faults(tmp_path)) as h:
        h.engine.inject("boom_x")
        h.wait_idle()
        failed = h.of(ev.OpFailed)
        assert len(failed) == 1 and "op boom raised ValueError: bad row 42 in x" in failed[0].error
        assert "failed: op boom raised ValueError" in h.engine.explain(failed[0].des_id)
        assert "Traceback" in failed[0].traceback and "boom" in failed[0].traceback
        assert "downstream ran" not in h.lines()
        details = h.engine.des_details(failed[0].des_id)
        assert details.state == "failed" and "ValueError" in details.last_traceback
        down = [d for d in h.of(ev.DESRegistered) if d.ops == ("after",)][0]
        assert "waiting" in h.engine.explain(down.des_id)
    store = Store(str(tmp_path / "f.db"), lock=False)
    run = store.runs_for(failed[0].des_id)[-1]
    assert run.status == "failed" and "ValueError" in run.traceback
    store.close()
    assert h.engine.failures == 1


@pytest.mark.parametrize("kind, reason", [("suicide", "was killed (SIGKILL)"), ("segfault", "segmentation fault")])
def test_a_dying_worker_fails_only_its_op_and_the_pool_recovers(tmp_path, harness, kind, reason):
    with harness(faults(tmp_path)) as h:
        for i in range(6):
            h.engine.inject(f"ok_{i}")
        h.engine.inject(f"{kind}_1")
        for i in range(6, 12):
            h.engine.inject(f"ok_{i}")
        h.wait_idle()
        failed = h.of(ev.OpFailed)
        assert len(failed) == 1 and reason in failed[0].error and kind in failed[0].error
        assert sorted(h.lines()) == sorted(f"ok {i}" for i in range(12))
        dead = [w for w in h.of(ev.WorkerChanged) if w.state == "dead"]
        assert len(dead) == 1
        h.engine.inject("ok_after")
        h.wait_idle()
        assert "ok after" in h.lines()
        assert all(w.state != "dead" for w in h.engine.workers())


def test_cancel_a_running_op(tmp_path, harness):
    with harness(faults(tmp_path)) as h:
        h.engine.inject("sleepy_1")
        h.wait_for(lambda: "sleeping" in h.lines(), what="op to start")
        run_id = h.of(ev.OpStarted)[0].run_id
        h.engine.cancel(run_id)
        h.wait_for(lambda: h.of(ev.OpCancelled), what="cancellation")
        h.wait_idle()
        assert h.of(ev.OpFailed) == []
        details = h.engine.des_details(h.of(ev.OpStarted)[0].des_id)
        assert details.state == "cancelled" and details.runs[-1].status == "cancelled"


def test_op_timeout_stops_the_worker_and_fails_the_run(tmp_path, harness):
    with harness(faults(tmp_path, timeout=0.5)) as h:
        h.engine.inject("sleepy_1")
        h.engine.inject("ok_1")
        h.wait_for(lambda: h.of(ev.OpFailed), what="timeout")
        h.wait_idle()
    failed = h.of(ev.OpFailed)
    assert len(failed) == 1 and "timed out after 0.5s" in failed[0].error
    assert "ok 1" in h.lines()


def test_retries_follow_the_policy_with_backoff(tmp_path, harness):
    with harness(faults(tmp_path, retries=2)) as h:
        h.engine.inject("boom_r")
        h.wait_for(lambda: len(h.of(ev.OpFailed)) == 3, what="three attempts", timeout=30)
        h.wait_idle()
    failed = h.of(ev.OpFailed)
    assert [f.retry_in for f in failed] == [0.2, 0.4, None]
    starts = [s for s in h.of(ev.OpStarted)]
    assert [s.attempt for s in starts] == [1, 2, 3]
    assert starts[1].ts - failed[0].ts >= 0.18 and starts[2].ts - failed[1].ts >= 0.38
    assert len({s.run_id for s in starts}) == 3


FD_OUTPUT = """
import subprocess

def shell(context):
    subprocess.run(['sh', '-c', 'echo from a subprocess'], check=True)
    print('from python')

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['o.' + event]), ops=[(shell, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=[], max_workers=1)
"""


def test_output_written_to_file_descriptors_reaches_the_bus(tmp_path, harness):
    recipe = write_recipe(tmp_path, FD_OUTPUT, db=tmp_path / "o.db")
    with harness(recipe) as h:
        h.engine.inject("go")
        h.wait_for(lambda: "from a subprocess" in h.lines(), what="subprocess output")
        h.wait_idle()
    tagged = {e.line: (e.op, e.worker) for e in h.of(ev.OpOutput)}
    assert tagged["from python"] == ("shell", "w1")
    assert tagged["from a subprocess"][1] == "w1"


def test_an_unguarded_script_embedding_the_engine_does_not_start_engines_in_workers(tmp_path):
    import subprocess as sp
    import sys

    recipe = write_recipe(tmp_path, FD_OUTPUT, db=tmp_path / "u.db")
    script = tmp_path / "embed.py"
    script.write_text(
        "import time\n"
        "from tinyo.engine import Engine\n"
        f"e = Engine.from_path({str(recipe)!r})\n"
        "e.start(); e.inject('go')\n"
        "time.sleep(0.3)\n"
        "while e.idle_since is None: time.sleep(0.05)\n"
        "e.stop(); print('clean exit')\n"
    )
    result = sp.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "clean exit" in result.stdout, result.stderr
    assert "another tinyo engine" not in result.stderr
