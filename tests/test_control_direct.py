"""The request commands' direct way to a running engine (`tinyo` without typer or the recipe): the same
output and exit codes as the full command line, real engines, real sockets, the real recipe index."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import write_recipe
from tinyo import cli_direct
from tinyo.control import index
from tinyo.control.client import ControlClient
from tinyo.control.protocol import PROTOCOL, Fact, Live

RECIPE = """
def load(context):
    print('loaded', sorted(context['deps'])[0].rsplit('/', 1)[-1])

@meta_task(root=True)
def on_event(event):
    if event.startswith('go'):
        return ('k', [DES(deps=frozenset([event]), targs=frozenset(['out/' + event]), ops=[(load, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=[], max_workers=1, timers=[{'name': 'tick', 'initial': datetime(2024, 1, 1), 'interval': timedelta(hours=1)}])
"""


@pytest.fixture
def runtime(monkeypatch):
    """A private XDG_RUNTIME_DIR of this test's own (short, so the socket path fits): the index and the
    socket go there, apart from every other test's."""
    folder = tempfile.mkdtemp(prefix="tx")
    monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def tinyo(*args: str, module: str = "tinyo", cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run a command line (``tinyo``, the entry point, or ``tinyo.cli``, the full one); the result with
    Python's import-time lines taken out of stderr, and the top-level packages it imported."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", module, *args], capture_output=True,
                            text=True, timeout=60, env=env, cwd=cwd)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    result.stderr = "".join(line + "\n" for line in result.stderr.splitlines() if not line.startswith("import time:"))
    return result, imported


def usage(text: str) -> str:
    """``text`` itself; a usage or help text (it names the program run, ``python -m tinyo`` or
    ``python -m tinyo.cli``, and pads its boxes to fit) with one name and single spaces."""
    if "python -m tinyo" not in text:
        return text
    return " ".join(text.replace("python -m tinyo.cli", "python -m tinyo").split())


def same(args: list[str], cwd: Path | None = None) -> bool:
    """Run ``args`` the direct way, then through the full command line: same output and exit code (and
    whether the direct way was taken: it never imports typer)."""
    direct, imported = tinyo(*args, cwd=cwd)
    full, _ = tinyo(*args, module="tinyo.cli", cwd=cwd)
    assert (direct.returncode, usage(direct.stdout), usage(direct.stderr)) == \
        (full.returncode, usage(full.stdout), usage(full.stderr)), args
    return "typer" not in imported


@pytest.fixture
def engine(runtime, tmp_path):
    """`tinyo start` on the recipe (its sql_conn relative, so the engine's working folder matters)."""
    recipe = write_recipe(tmp_path, RECIPE, db="s.db")
    started = subprocess.run([sys.executable, "-m", "tinyo.cli", "start", str(recipe)], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    yield recipe, pid
    if _alive(pid):
        subprocess.run([sys.executable, "-m", "tinyo.cli", "stop", str(recipe), "--now"], capture_output=True,
                       timeout=60, cwd=tmp_path)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def received(client: ControlClient, stream, name: str) -> bool:
    """Whether the engine's bus carries ``event_received`` for ``name`` (read until it does, or 20 s)."""
    client._sock.settimeout(20)
    for message in stream:
        if isinstance(message, Fact) and getattr(message.fact, "kind", "") == "event_received":
            if message.fact.name == name:
                return True
    return False


# ------------------------------------------------------------------------------------------ the direct way
def test_every_request_command_goes_direct_with_the_full_cli_s_output_and_exit_code(engine, tmp_path):
    recipe, _pid = engine
    db = tmp_path / "s.db"
    with ControlClient.connect(db) as client:
        stream = client.subscribe(history=False)
        assert isinstance(next(stream), Live)
        for name in ("go-direct", "go-full"):  # each way takes the event in: the bus says so
            result, imported = tinyo("inject", str(recipe), name, cwd=tmp_path,
                                     module="tinyo" if name == "go-direct" else "tinyo.cli")
            assert result.returncode == 0 and result.stdout == f"asked the running engine to take in {name!r}: it took the request\n"
            assert received(client, stream, name)
            assert ("typer" in imported) == (name == "go-full")
    wanted = "out/go-direct"
    deadline = time.monotonic() + 20
    while not ControlClient.connect(db).query("doc_infos", names=[wanted]) and time.monotonic() < deadline:
        time.sleep(0.05)
    direct_way = [
        ["inject", str(recipe), "ev 1"], ["inject", str(recipe), "ev 2", "--db", str(db)],
        ["inject", "--db=s.db", str(recipe), "ev 3"], ["inject", str(recipe), "undecodable \udcff"],
        ["rerun", str(recipe), wanted], ["rerun", str(recipe), wanted, "-R"], ["rerun", str(recipe), "--downstream", wanted],
        ["fire", str(recipe), "tick"], ["fire", str(recipe), "tick", "--db", "s.db"],
        ["pause", str(recipe)], ["resume", str(recipe)], ["cancel", str(recipe), "4242"],
    ]
    for args in direct_way:
        assert same(args, cwd=tmp_path), f"{args} did not go direct"
    full_way = [  # refused by the engine, or not a plain request: the full command line, its own words
        ["fire", str(recipe), "nope"], ["rerun", str(recipe), "no/such/thing"], ["rerun", str(recipe), "out/\udcff"],
        ["cancel", str(recipe), "x1"], ["cancel", str(recipe), "-3"], ["inject", str(recipe)],
        ["inject", str(recipe), "ev", "--db"], ["inject", str(recipe), "ev", "--debug"], ["pause", str(recipe), "extra"],
        ["inject", str(recipe), "ev", "--help"],
    ]
    for args in full_way:
        assert not same(args, cwd=tmp_path), f"{args} went direct"


def test_help_version_and_other_commands_are_the_full_command_line(runtime, tmp_path):
    for args in (["--help"], ["inject", "--help"], ["--version"], [], ["status", "--help"]):
        direct, imported = tinyo(*args, cwd=tmp_path)
        full, _ = tinyo(*args, module="tinyo.cli", cwd=tmp_path)
        assert direct.returncode == full.returncode and "typer" in imported
        assert usage(direct.stdout) == usage(full.stdout)


def test_without_an_engine_the_commands_run_as_before(runtime, tmp_path):
    recipe = write_recipe(tmp_path, RECIPE, db="s.db")
    assert not same(["pause", str(recipe)], cwd=tmp_path)  # "no tinyo engine is running", exit 2, both ways
    result, _ = tinyo("inject", str(recipe), "go-alone", cwd=tmp_path)  # runs the engine until the work is done
    assert result.returncode == 0 and "go-alone" in result.stdout and "engine stopped" in result.stdout
    assert list((runtime / "tinyo").glob("recipe-*.json")) == []  # that engine forgot itself at its end


def test_a_killed_engine_s_index_entry_is_passed_over(engine, tmp_path, runtime):
    recipe, pid = engine
    entries = list((runtime / "tinyo").glob("recipe-*.json"))
    assert [json.loads(e.read_text())["pid"] for e in entries] == [pid]
    os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.02)
    result, imported = tinyo("inject", str(recipe), "go-after", cwd=tmp_path)  # nothing answers: the long way
    assert "typer" in imported
    assert result.returncode == 0 and "go-after" in result.stdout and "engine stopped" in result.stdout
    assert list((runtime / "tinyo").glob("recipe-*.json")) == []  # the next engine swept the stale entry


def test_the_recipe_names_the_state_file_the_engine_serves_or_the_full_cli_decides(engine, tmp_path):
    recipe, _pid = engine
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # sql_conn 's.db' is relative: from another folder the recipe names another state file, with no engine
    assert not same(["pause", str(recipe)], cwd=elsewhere)
    (tmp_path / "link.py").symlink_to(recipe)
    for spelling in ("recipe.py", "./link.py", f"{elsewhere}/../recipe.py"):  # one file, however it is named
        assert same(["pause", spelling], cwd=tmp_path), spelling
    os.utime(recipe)  # edited since the engine loaded it: it may name another state file now
    assert not same(["resume", str(recipe)], cwd=tmp_path)
    assert same(["resume", str(recipe), "--db", "s.db"], cwd=tmp_path)  # a state file given: no recipe needed


def test_the_index_is_private_and_an_entry_holds_only_while_its_recipe_does(runtime, tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path, RECIPE, db="s.db")
    real = os.path.realpath(recipe)
    monkeypatch.chdir(tmp_path)
    path = index.record(real, "s.db", str(tmp_path / "s.db"), os.getpid())
    assert path is not None and os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(runtime / "tinyo").st_mode & 0o777 == 0o700
    assert index.lookup(real)["db"] == str(tmp_path / "s.db")
    assert index.record(real, "s.db", str(tmp_path / "other.db"), os.getpid()) is None  # on --db: not the recipe's
    os.chmod(runtime / "tinyo", 0o755)
    assert index.lookup(real) is None  # a folder others may enter: nothing in it is trusted
    os.chmod(runtime / "tinyo", 0o700)
    index.forget(path, os.getpid() + 1)  # another engine's entry now: kept
    assert index.lookup(real) is not None
    index.forget(path, os.getpid())
    assert index.lookup(real) is None


def test_the_direct_way_speaks_the_control_protocol_version():
    assert cli_direct.PROTOCOL == PROTOCOL
