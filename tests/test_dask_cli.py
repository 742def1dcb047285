"""``tinyo run RECIPE --executor ...``: a local Dask cluster end to end, and clear usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import drop, write_recipe

pytestmark = pytest.mark.timeout(120)

RECIPE = """
def say(context):
    print('hello from', context['worker'])

@meta_task(root=True)
def gen(event):
    if event.endswith('.csv'):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['said.' + os.path.basename(event)]),
                           ops=[(say, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2)
"""


def tinyo(*args: str, timeout: float = 90, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_extra}
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_executor_must_be_an_address_or_local_dask(tmp_path, inbox):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "c.db", inbox=inbox)
    result = tinyo("run", str(recipe), "--executor", "my-cluster")
    assert result.returncode == 2
    assert "--executor must be a Dask scheduler address like tcp://host:8786, or local-dask" in result.stderr
    result = tinyo("run", str(recipe), "--executor", "local-dask", "--execution", "threads")
    assert result.returncode == 2 and "cannot be combined with --execution threads" in result.stderr


def test_run_with_a_local_dask_cluster(tmp_path, inbox):
    pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "tinyo[dask]")')
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "c.db", inbox=inbox)
    drop(inbox, "a.csv")
    drop(inbox, "b.csv")
    result = tinyo("run", str(recipe), "--executor", "local-dask", "--json", "--stop-after", "2")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    workers = {e["worker"] for e in events if e["type"] == "worker"}
    assert len(workers) >= 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
    lines = sorted(e["line"] for e in events if e["type"] == "op_output")
    assert len(lines) == 2 and all(line.startswith("hello from tcp://127.0.0.1:") for line in lines), lines
    assert events[-1]["type"] == "engine_state" and events[-1]["state"] == "stopped"
    assert "Traceback" not in result.stderr, result.stderr


def test_an_unreachable_scheduler_exits_with_a_clear_error(tmp_path, inbox):
    pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "tinyo[dask]")')
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "c.db", inbox=inbox)
    result = tinyo("run", str(recipe), "--executor", "tcp://127.0.0.1:9", "--idle-exit", "0.1",
                   DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    assert result.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
