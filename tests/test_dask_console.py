"""The console on an engine whose ops run on a Dask cluster: Workers, Output and Lanes panes show the
remote workers (address instead of pid), and the cancel key cancels the Dask task."""

from __future__ import annotations

import asyncio
import functools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "tinyo[dask]")')
pytest.importorskip("textual")

from tinyo.engine import Engine  # noqa: E402
from tinyo_tui.app import TinyoApp, build_app  # noqa: E402
from tinyo_tui.screens.confirm import ConfirmDialog  # noqa: E402
from tinyo_tui.widgets.workers_table import WorkersTable  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RECIPE = '''
import time
from tinyo import DES, TinyOConfig, Config, Execution, meta_task
from tinyo.flow import Flow, steps

def slow(context):
    print("slow starts on", context["worker"], flush=True)
    for _ in range(600):
        time.sleep(0.05)
    print("slow was not cancelled")

def pace(row, ctx):
    time.sleep(0.003)
    return row

lanes = Flow("lanes", params={"n": 200}, chunk_size=10, buffer=20)
_gen = lanes.step("gen", steps.Generate("${params.n}"))
_work = lanes.step("work", pace, instances=2)
lanes.hop(_gen, _work)

@meta_task(root=True)
def manual(event):
    op = slow if event.startswith("slow") else lanes
    return (None, [DES(deps=[event], targs=[f"done.{event}"], ops=[(op, Config(n=200))])])

config = TinyOConfig(sql_conn=SQL, max_workers=2, execution=Execution.DASK, executor_address=ADDRESS)
'''


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as lc:
        with distributed.Client(lc, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            yield lc, client


def sync(test: Callable[..., Any]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


@sync
async def test_the_console_shows_dask_workers_their_output_and_lanes_and_cancels_on_the_cluster(
        tmp_path: Path, cluster: Any) -> None:
    lc, client = cluster
    recipe = tmp_path / "console_recipe.py"
    recipe.write_text(textwrap.dedent(RECIPE).replace("SQL", repr(str(tmp_path / "state.db")))
                      .replace("ADDRESS", repr(lc.scheduler_address)))
    engine = Engine.from_path(recipe)
    app: TinyoApp = build_app(engine, theme="dark")
    addresses = set(await asyncio.to_thread(client.nthreads))
    try:
        async with app.run_test(size=(160, 44)) as pilot:
            await until(pilot, lambda: app.state.engine_state == "running", what="engine running")
            await until(pilot, lambda: addresses <= set(app.state.workers), what="both Dask workers listed")
            assert all(app.state.workers[a].pid is None for a in addresses)
            # Lanes: a data flow's metrics
            engine.inject("flow_1")
            await until(pilot, lambda: any(lanes for lanes in app.state.flows.values()), what="flow lanes")
            # Workers + Output: a running op on a Dask worker
            engine.inject("slow_1")
            await until(pilot, lambda: any(r.state == "busy" and r.op == "slow" for r in app.state.workers.values()),
                        what="slow op busy")
            busy = next(name for name, r in app.state.workers.items() if r.state == "busy" and r.op == "slow")
            assert busy in addresses
            await until(pilot, lambda: any(row.line == f"slow starts on {busy}" and row.worker == busy
                                           for row in app.state.output), what="the op's line in the Output pane")
            await pilot.press("3")
            table = app.screen.query_one(WorkersTable)
            for _ in range(6):
                if table.selected_worker is not None and table.selected_worker.op == "slow":
                    break
                await pilot.press("down")
            assert table.selected_worker is not None and table.selected_worker.name == busy
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await until(pilot, lambda: any(d.state == "cancelled" for d in app.state.des.values()), what="cancelled")
            for _ in range(100):
                if not any((await asyncio.to_thread(client.processing)).values()):
                    break
                await pilot.pause(0.05)
            assert not any((await asyncio.to_thread(client.processing)).values()), "the Dask worker is still busy"
        assert not any(row.line == "slow was not cancelled" for row in app.state.output)
    finally:
        engine.stop(timeout=2.0)
