"""The Dask scheduler goes away while tinyo runs: ops stay queued, dispatch resumes when it is back.

A real ``dask scheduler`` and ``dask worker`` as subprocesses on 127.0.0.1 (a dask worker stops when
its scheduler dies, so a new one is started with the new scheduler, as a supervisor would).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

distributed = pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "tinyo[dask]")')

from tinyo import events as ev  # noqa: E402
from tinyo.model import Execution  # noqa: E402
from tinyo.store import Store  # noqa: E402

from conftest import write_recipe  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RECIPE = """
def hello(context):
    print('hello', context['config']['name'])

@meta_task(root=True)
def gen(event):
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out.' + event]),
                       ops=[(hello, Config({'name': event}))])])

config = TinyOConfig(sql_conn='{db}', max_workers=1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _scheduler(port: int) -> subprocess.Popen:
    return _spawn("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")


def _worker(address: str) -> subprocess.Popen:
    return _spawn("distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                  "--no-dashboard", "--death-timeout", "60")


def _wait_for_a_worker(address: str) -> None:
    with distributed.Client(address, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)


def test_scheduler_unreachable_keeps_ops_queued_and_dispatch_resumes_when_it_is_back(tmp_path, harness):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_scheduler(port), _worker(address)]
    try:
        _wait_for_a_worker(address)
        recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "f.db")
        with harness(recipe, execution=Execution.DASK, executor_address=address) as h:
            h.engine.inject("a")
            h.wait_for(lambda: h.of(ev.OpFinished), what="a ran")
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            h.wait_for(lambda: any("lost the connection to the Dask scheduler" in n.message
                                   for n in h.of(ev.EngineNotice)), what="the notice")
            h.engine.inject("b")
            time.sleep(1.0)
            assert len(h.of(ev.OpStarted)) == 1, "dispatched while the scheduler was unreachable"
            assert h.engine.stats().queued == 1
            dead = [e for e in h.of(ev.WorkerChanged) if e.state == "dead"]
            assert dead and "unreachable" in dead[-1].detail
            procs += [_scheduler(port), _worker(address)]
            h.wait_for(lambda: len(h.of(ev.OpFinished)) == 2, timeout=60, what="b ran once the scheduler was back")
        assert h.lines() == ["hello a", "hello b"]
        store = Store(str(tmp_path / "f.db"), lock=False)
        assert [r.status for r in store.recent_runs(10)] == ["ok", "ok"]
        store.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
