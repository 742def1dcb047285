"""THREADS and INLINE run the same recipe with the same results; hostile names print literally."""

import json
import os
import subprocess
import sys

import pytest

from tinyo import Execution
from tinyo import events as ev
from tinyo.store import Store

from conftest import drop, write_recipe

RECIPE = """
def shout(context):
    print('got', context['config']['name'])
    print('to stderr', file=sys.stderr)

@meta_task(root=True)
def gen(event):
    name = os.path.basename(event) if os.path.isabs(event) else event
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out:' + name]),
                       ops=[(shout, Config({'name': name}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, retention_events={keep})
"""


@pytest.mark.parametrize("execution, workers", [(Execution.THREADS, {"t1", "t2"}), (Execution.INLINE, {"inline"})])
def test_other_executors_give_the_same_results(tmp_path, inbox, harness, execution, workers):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "e.db", inbox=inbox, keep=None)
    with harness(recipe, execution=execution) as h:
        for i in range(4):
            drop(inbox, f"f{i}.txt")
        h.wait_idle()
    assert sorted(e.line for e in h.of(ev.OpOutput) if e.stream == "stdout") == [f"got f{i}.txt" for i in range(4)]
    assert len([e for e in h.of(ev.OpOutput) if e.stream == "stderr"]) == 4
    assert {e.worker for e in h.of(ev.OpStarted)} <= workers
    assert len(h.of(ev.OpFinished)) == 4


HOSTILE = ["[bold]loud.txt", "x[red]y[dim].txt", "new\nline.txt", "esc\x1b[31mred.txt", "ünï ✓ 名前.txt", "sp ace.txt",
           "rtl\u202etxt.exe"]


def test_hostile_file_names_are_processed_once_and_printed_literally(tmp_path, inbox):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "h.db", inbox=inbox, keep=None)
    for name in HOSTILE:
        drop(inbox, name)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    text = subprocess.run([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--idle-exit", "0.5"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "\x1b" not in out, "an escape sequence reached the terminal"
    assert "\u202e" not in out and "rtl\\u202etxt.exe" in out, "a bidi override reached the terminal"
    assert "[bold]loud.txt" in out and "esc\\x1b[31mred.txt" in out and "new\\nline.txt" in out
    assert "ünï ✓ 名前.txt" in out and "x[red]y[dim].txt" in out
    injected = subprocess.run([sys.executable, "-m", "tinyo.cli", "inject", str(recipe), "[/]"],
                              capture_output=True, text=True, env=env, timeout=60)
    assert injected.returncode == 0 and "got [/]" in injected.stdout
    store = Store(str(tmp_path / "h.db"), lock=False)
    names = sorted(os.path.basename(r[3]) if r[3].startswith("/") else r[3] for r in store.recent_events(100))
    assert names == sorted(HOSTILE + ["[/]"]) and store.run_counts() == {"ok": len(HOSTILE) + 1}
    store.close()
    (tmp_path / "h.db").unlink()
    js = subprocess.run([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--idle-exit", "0.5", "--json"],
                        capture_output=True, text=True, env=env, timeout=60)
    got = [json.loads(line) for line in js.stdout.splitlines()]
    received = sorted(os.path.basename(e["name"]) for e in got if e["type"] == "event_received")
    assert received == sorted(HOSTILE)


def test_retention_prunes_old_events(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "p.db", inbox=inbox, keep=100)
    with harness(recipe, execution=Execution.INLINE) as h:
        for i in range(700):
            h.engine.inject(f"manual-{i}")
        h.wait_idle()
    store = Store(str(tmp_path / "p.db"), lock=False)
    assert store.count("events") <= 700 - 400
    store.close()
