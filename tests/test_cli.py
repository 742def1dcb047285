"""The headless CLI as scripts use it: exit statuses, JSON lines, status, dag, why, rerun, inject."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import drop, write_recipe

RECIPE = """
def load(context):
    print('loaded', sorted(context['deps'])[0].rsplit('/', 1)[-1])

def report(context):
    if os.path.exists('{fail_flag}'):
        raise RuntimeError('report failed on purpose')
    print('report built')

@meta_task()
def build(key):
    return (None, [DES(deps=frozenset(['staging']), targs=frozenset(['report']), ops=[(report, Config({}))])])

@meta_task(root=True, download=[build])
def on_event(event):
    if event.endswith('.csv') or event == 'go':
        return ('k', [DES(deps=frozenset([event]), targs=frozenset(['staging']), ops=[(load, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2)
"""


def tinyo(*args, timeout=60):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def recipe(tmp_path, inbox):
    return write_recipe(tmp_path, RECIPE, db=tmp_path / "c.db", inbox=inbox, fail_flag=tmp_path / "fail")


def test_run_json_lines_and_stop_after(recipe, inbox):
    drop(inbox, "a.csv")
    result = tinyo("run", str(recipe), "--json", "--stop-after", "1")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    for expected in ("engine_state", "event_received", "des_registered", "op_started", "op_output", "op_finished"):
        assert expected in kinds
    # the file's version, the DES's first state and the targets' versions told by those facts
    assert all(e["version"] == 1 for e in events if e["type"] == "event_received")
    assert all(e["state"] for e in events if e["type"] == "des_registered")
    assert all(e["versions"] == [1] for e in events if e["type"] == "op_finished")
    output = [e["line"] for e in events if e["type"] == "op_output"]
    assert output == ["loaded a.csv", "report built"]
    assert kinds[-1] == "engine_state" and events[-1]["state"] == "stopped"


def test_text_log_prints_op_output_whole_after_a_tag(recipe, inbox):
    drop(inbox, "a.csv")
    result = tinyo("run", str(recipe), "--idle-exit", "0.5")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "load[w1] | loaded a.csv" in lines or "load[w2] | loaded a.csv" in lines
    assert any(line.endswith("| report built") for line in lines)


def test_a_failed_op_in_a_bounded_run_exits_1_without_traceback(recipe, inbox, tmp_path):
    (tmp_path / "fail").touch()
    drop(inbox, "a.csv")
    result = tinyo("run", str(recipe), "--idle-exit", "0.5")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "report failed on purpose" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    debug = tinyo("run", str(recipe), "--idle-exit", "0.5", "--debug")
    assert debug.returncode == 0  # nothing changed since: nothing runs, nothing fails


def test_status_dag_why_and_rerun(recipe, inbox):
    drop(inbox, "a.csv")
    assert tinyo("run", str(recipe), "--idle-exit", "0.5").returncode == 0
    status = json.loads(tinyo("status", str(recipe), "--json").stdout)
    assert status["des"] == 2 and status["des_states"] == {"ok": 2} and status["runs"] == {"ok": 2}
    text = tinyo("status", str(recipe)).stdout
    assert "DES states: ok 2" in text
    mermaid = tinyo("dag", str(recipe), "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and '"report"' in mermaid and "-->" in mermaid
    dot = tinyo("dag", str(recipe), "--format", "dot").stdout
    assert dot.startswith("digraph tinyo") and "->" in dot
    why = tinyo("why", str(recipe), "report").stdout
    assert "document report: version 1" in why and "up to date" in why and "last run" in why
    rerun = tinyo("rerun", str(recipe), "staging", "--downstream")
    assert rerun.returncode == 0, rerun.stderr
    assert "loaded a.csv" in rerun.stdout and "report built" in rerun.stdout
    status = json.loads(tinyo("status", str(recipe), "--json").stdout)
    assert status["runs"] == {"ok": 4}
    only = tinyo("rerun", str(recipe), "report")
    assert "report built" in only.stdout and "loaded" not in only.stdout


def test_a_folder_that_cannot_be_watched_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "c.db", inbox=blocker / "inbox", fail_flag=tmp_path / "fail")
    result = tinyo("run", str(recipe), "--idle-exit", "1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tinyo: error:")]
    assert errors == [f"tinyo: error: config: dirs: cannot watch {blocker / 'inbox'}: NotADirectoryError: "
                      f"[Errno 20] Not a directory: '{blocker / 'inbox'}'"]


def test_inject_and_usage_errors(recipe):
    result = tinyo("inject", str(recipe), "go")
    assert result.returncode == 0 and "loaded go" in result.stdout
    assert tinyo("fire", str(recipe), "nope").returncode == 2
    assert "no timer named 'nope'" in tinyo("fire", str(recipe), "nope").stderr
    assert tinyo("run").returncode == 2
    assert tinyo("dag", str(recipe), "--format", "gif").returncode == 2


def test_rerun_is_handed_to_a_running_engine(recipe, inbox):
    proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        time.sleep(1.0)
        drop(inbox, "a.csv")
        time.sleep(1.0)
        result = tinyo("rerun", str(recipe), "report")
        assert result.returncode == 0 and "asked the running engine" in result.stdout
        time.sleep(2.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert out.count("report built") == 2, out
    assert proc.returncode == 0, err


def test_pause_resume_and_cancel_go_to_the_running_engine(recipe, inbox):
    assert tinyo("pause", str(recipe)).returncode == 2  # nothing is running
    proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        time.sleep(1.0)
        assert tinyo("pause", str(recipe)).returncode == 0
        time.sleep(1.5)
        drop(inbox, "held.csv")
        time.sleep(1.5)
        assert tinyo("resume", str(recipe)).returncode == 0
        time.sleep(2.0)
        unknown = tinyo("cancel", str(recipe), "999")  # the engine says there is no such run; nothing is sent
        assert unknown.returncode == 2 and "there is no run 999 in" in unknown.stderr
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    lines = out.splitlines()
    paused = next(i for i, line in enumerate(lines) if "engine paused" in line)
    resumed = next(i for i, line in enumerate(lines) if "resumed" in line)
    loaded = next(i for i, line in enumerate(lines) if "loaded held.csv" in line)
    assert paused < resumed < loaded
