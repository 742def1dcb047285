"""``tinyo run`` from the ``tinyo`` entry point without typer: its arguments read as the full command line reads
them (or left to it), and the run it starts is the full one's, control channel included (and its garbage
collector settled once the engine is built)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer

from conftest import drop, write_recipe
from tinyo.cli import app
from tinyo.cli_run_direct import parse_run
from tinyo.control.client import ControlClient, NotRunning
from tinyo.headless import run_headless
from tinyo.heap import YOUNG
from tinyo.model import Execution


def full_parse(argv: list[str]) -> dict[str, Any]:
    """The ``run_headless`` arguments the full command line (typer's own parser) reads from ``argv``."""
    group = typer.main.get_command(app)
    root = group.make_context("tinyo", list(argv))
    name, command, rest = group.resolve_command(root, root._protected_args + root.args)
    assert name == "run"
    params = command.make_context("run", rest, parent=root).params
    assert params.pop("executor") is None
    execution = params.pop("execution")
    params["execution"] = Execution(getattr(execution, "value", execution)) if execution is not None else None
    params["recipe"] = str(params["recipe"])
    params["debug"] = params["debug"] or root.params["debug"]
    return params


def direct_parse(argv: list[str]) -> dict[str, Any] | None:
    """``parse_run``'s arguments, with ``run_headless``'s defaults for those it leaves out."""
    parsed = parse_run(argv)
    if parsed is None:
        return None
    defaults = {name: p.default for name, p in inspect.signature(run_headless).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {key: value for key, value in {**defaults, **parsed}.items() if key in full_parse(argv)}


@pytest.mark.parametrize("argv", [
    "run r.py",
    "run r.py --stop-after 1",
    "run --stop-after=3 r.py --json",
    "--debug run r.py",
    "run r.py --debug -v",
    "run r.py --verbose --allow-world-writable --idle-exit 0.5",
    "run r.py --idle-exit=2 --workers 3 --execution threads",
    "run r.py --db state.db --execution=inline",
    "run r.py --db=other.db --db last.db",
    "run dir/recipe.py --idle-exit .25 --stop-after 0 --workers=1",
])
def test_what_it_reads_it_reads_as_the_full_command_line_does(argv):
    args = argv.split()
    assert direct_parse(args) == full_parse(args)


@pytest.mark.parametrize("argv", [
    "run",                                   # no recipe: the full command line says so
    "run --help", "--help", "--version run r.py",
    "run r.py other.py",                     # a second argument
    "run r.py --executor tcp://h:8786",      # Dask: checked by the full command line
    "run r.py --workers 0",                  # too few: the full command line says it
    "run r.py --idle-exit soon", "run r.py --idle-exit 1e3", "run r.py --stop-after -1",
    "run r.py --execution Threads", "run r.py --db", "run r.py --db --json", "run r.py --db=",
    "run r.py -vv", "run r.py -- r.py", "run r.py --unknown",
    "status r.py", "inject r.py go",
])
def test_anything_else_is_left_to_the_full_command_line(argv):
    assert parse_run(argv.split()) is None


RECIPE = """
import gc, sys, time

def hold(context):
    release = '{release}'
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    if 'bad' in sorted(context['deps'])[0]:
        raise ValueError('bad file')

@meta_task(root=True)
def on_file(event):
    with open('{modules}', 'w') as fh:
        fh.write(' '.join(sorted(m for m in ('typer', 'click', 'rich') if m in sys.modules)))
    with open('{collector}', 'w') as fh:
        fh.write(f'{gc.get_threshold()[0]} {gc.get_freeze_count() > 0}')
    return (None, [DES(deps=frozenset([event]), targs=frozenset(['out/' + event.rsplit('/', 1)[-1]]),
                       ops=[(hold, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1)
"""


def _env() -> dict[str, str]:
    out = dict(os.environ)
    out.pop("XDG_RUNTIME_DIR", None)  # the socket goes beside the state file, inside the test's folder
    return out


def _connect(db: Path) -> ControlClient | None:
    try:
        return ControlClient.connect(db)
    except NotRunning:
        return None


def test_a_short_tinyo_run_goes_without_typer_and_serves_the_control_channel(tmp_path, inbox):
    db, release, modules, collector = (tmp_path / name for name in ("s.db", "release", "modules", "collector"))
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox, release=release, modules=modules, collector=collector)
    drop(inbox, "a.csv")
    proc = subprocess.Popen([sys.executable, "-m", "tinyo", "run", str(recipe), "--stop-after", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 30
        client = None
        while client is None and time.monotonic() < deadline and proc.poll() is None:
            client = _connect(db)
            time.sleep(0.01)
        assert client is not None, proc.stderr.read() if proc.poll() is not None else "no control socket"
        with client:
            assert client.pid == proc.pid
            assert client.query("stats")["state"] == "running"  # the op holds the run open meanwhile
        release.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert modules.read_text() == ""  # the generator ran in the engine's process: no command-line modules there
    assert collector.read_text() == f"{YOUNG} True"  # what was loaded at start is frozen, young collections rarer
    assert "ok     hold [w1] run 1" in out


def test_a_bounded_run_with_a_failed_op_exits_as_the_full_command_line_does(tmp_path, inbox):
    db, release, modules, collector = (tmp_path / name for name in ("s.db", "release", "modules", "collector"))
    release.touch()
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox, release=release, modules=modules, collector=collector)
    drop(inbox, "bad.csv")
    codes = []
    for module in ("tinyo", "tinyo.cli"):
        db.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-m", module, "run", str(recipe), "--stop-after", "1"],
                              capture_output=True, text=True, env=_env(), timeout=60)
        assert "op hold raised ValueError: bad file" in done.stdout + done.stderr
        codes.append(done.returncode)
    assert codes == [1, 1]
