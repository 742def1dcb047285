"""The command-line surface of tinyo and tinyo-tui: help conventions, shared options, --version, python -m tinyo,
shell completion (scripts, timer names, document names), and tinyo-tui's terminal checks."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from enum import Enum
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import drop, write_recipe
from tinyo.cli import app as tinyo_app
from tinyo.completion import LIMIT
from tinyo.store import Store
from tinyo_tui.cli import typer_app as tui_app

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
SHARED = ("--db", "--execution", "--workers", "--executor", "--debug", "--allow-world-writable")
VALUE_METAVARS = {"PATH", "SECONDS", "N", "ADDRESS", "NAME", "MODE", "MB"}

RECIPE = """
def count(context):
    print('counted', sorted(context['deps'])[0].rsplit('/', 1)[-1])

@meta_task(root=True)
def on_event(event):
    if event.endswith('.csv'):
        name = event.rsplit('/', 1)[-1]
        return (None, [DES(deps=frozenset([event]), targs=frozenset([f'count.{name}']), ops=[(count, Config({}))])])
    return (None, [])

print('a recipe that prints while it loads')
print('and complains', file=sys.stderr)
config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1,
                     timers=[{'name': 'hourly', 'initial': datetime(2024, 1, 1), 'interval': timedelta(hours=1)},
                             {'name': 'daily', 'initial': datetime(2024, 1, 1), 'interval': timedelta(days=1)},
                             {'name': 'hourly_backup', 'initial': datetime(2024, 1, 1), 'interval': timedelta(hours=1)}])
"""


def entry_point(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path}: the {name} entry point is not installed (pip install -e .)"
    return str(path)


def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env or ENV)


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last of ``words`` (typer's own protocol, the installed tinyo)."""
    parts = words.split(" ")
    result = run(entry_point("tinyo"), env={**(env or ENV), "_TINYO_COMPLETE": "complete_bash",
                                            "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path, RECIPE, db=tmp_path / "state" / "s.db", inbox=tmp_path / "inbox")


# ------------------------------------------------------------------------------------------ help
def _commands() -> list[object]:
    group = typer.main.get_command(tinyo_app)
    return [pytest.param("tinyo", tinyo_app, [], id="tinyo")] + \
        [pytest.param("tinyo", tinyo_app, [name], id=f"tinyo {name}") for name in group.commands] + \
        [pytest.param("tinyo-tui", tui_app, [], id="tinyo-tui")]


@pytest.mark.parametrize(("prog", "app", "path"), _commands())
def test_help_shows_flags_bare_values_by_kind_and_an_example(prog: str, app: typer.Typer, path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name=prog, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Usage:" in text
    assert "<bool>" not in text
    assert f"{'Start with' if not path and prog == 'tinyo' else 'Example'}: {prog} " in text
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    for option in (p for p in command.params if isinstance(p, typer.core.TyperOption)):
        if option.is_flag or isinstance(option.default, Enum):  # a choice shows its values: <mermaid|dot|...>
            continue
        assert option.metavar in VALUE_METAVARS, f"{prog} {' '.join(path)} {option.opts[0]}: metavar {option.metavar!r}"
        assert f"{option.opts[0]}" in text and option.metavar in text


def test_tinyo_tui_shares_option_names_and_help_with_tinyo_run() -> None:
    run_params = {p.opts[0]: p for p in typer.main.get_command(tinyo_app).commands["run"].params if p.opts}
    tui_params = {p.opts[0]: p for p in typer.main.get_command(tui_app).params if p.opts}
    for name in SHARED:
        assert (tui_params[name].help, tui_params[name].metavar) == (run_params[name].help, run_params[name].metavar)
    assert tui_params["--theme"].envvar == "TINYO_THEME"


# ------------------------------------------------------------------------------------------ version, python -m
def test_version_comes_from_the_installed_distribution() -> None:
    expected = version("tinyo")
    assert run(entry_point("tinyo"), "--version").stdout == f"tinyo {expected}\n"
    assert run(entry_point("tinyo-tui"), "--version").stdout == f"tinyo-tui {expected}\n"
    import tinyo

    assert tinyo.__version__ == expected


def test_python_m_tinyo_runs_the_same_command_line(recipe: Path) -> None:
    result = run(sys.executable, "-m", "tinyo", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m tinyo [OPTIONS] COMMAND" in result.stdout
    for command in ("init", "run", "validate", "status", "dag", "why", "rerun", "fire"):
        assert f" {command} " in result.stdout
    validated = run(sys.executable, "-m", "tinyo", "validate", str(recipe))
    assert validated.returncode == 0 and "timer daily: every 1 day" in validated.stdout


# ------------------------------------------------------------------------------------------ completion
@pytest.mark.parametrize("prog", ["tinyo", "tinyo-tui"])
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_typers_own(prog: str, shell: str) -> None:
    # typer detects the shell from the parent process; its switch for naming the shell instead:
    result = run(entry_point(prog), "--show-completion", shell,
                 env={**ENV, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert result.returncode == 0, result.stderr
    var = "_" + prog.upper().replace("-", "_") + "_COMPLETE"
    assert f"{var}=complete_{shell}" in result.stdout


def test_completion_script_for_the_shell_it_runs_in() -> None:
    result = run("bash", "-c", f"{entry_point('tinyo')} --show-completion")
    assert result.returncode == 0, result.stderr
    assert "complete -o default -F _tinyo_completion tinyo" in result.stdout


def test_fire_completes_the_recipes_timer_names_without_starting_anything(recipe: Path, tmp_path: Path) -> None:
    assert complete(f"tinyo fire {recipe} ") == ["hourly", "daily", "hourly_backup"]
    assert complete(f"tinyo fire {recipe} hour") == ["hourly", "hourly_backup"]
    assert complete(f"tinyo fire {tmp_path / 'missing.py'} ") == []
    # the recipe was imported (its print went nowhere), but no engine started: no state file, no watched folder
    assert not (tmp_path / "state").exists() and not (tmp_path / "inbox").exists()


def test_why_and_rerun_complete_document_names_from_the_state_file(recipe: Path, tmp_path: Path) -> None:
    assert complete(f"tinyo why {recipe} ") == []  # no state file yet: nothing, and no error
    (tmp_path / "inbox").mkdir()
    for name in ("a.csv", "b.csv"):
        drop(tmp_path / "inbox", name)
    done = run(entry_point("tinyo"), "run", str(recipe), "--stop-after", "2")
    assert done.returncode == 0, done.stderr
    assert complete(f"tinyo why {recipe} count.") == ["count.a.csv", "count.b.csv"]
    assert complete(f"tinyo rerun {recipe} count.b") == ["count.b.csv"]
    assert complete(f"tinyo why {recipe} {tmp_path / 'inbox'}/") == [str(tmp_path / "inbox" / n) for n in ("a.csv", "b.csv")]
    # --db names the state file without loading the recipe, which may be anything
    (tmp_path / "broken.py").write_text("raise SystemExit('not loadable')\n")
    db = tmp_path / "state" / "s.db"
    assert complete(f"tinyo why {tmp_path / 'broken.py'} --db {db} count.a") == ["count.a.csv"]


def test_document_completion_is_bounded(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    store = Store(str(db))
    store.add_names([(f"doc.{i:05d}", "doc.*") for i in range(LIMIT * 3)])
    store.commit()
    store.close()
    offered = complete(f"tinyo why {tmp_path / 'none.py'} --db {db} doc.")
    assert offered == [f"doc.{i:05d}" for i in range(LIMIT)]
    assert complete(f"tinyo why {tmp_path / 'none.py'} --db {db} doc.0059") == [f"doc.0059{i}" for i in range(10)]


# ------------------------------------------------------------------------------------------ tinyo-tui
def test_tinyo_tui_without_a_terminal_runs_headless(recipe: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([entry_point("tinyo-tui"), str(recipe), "--workers", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 30
        while "engine running" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert "engine running" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.splitlines()[0] == f"tinyo-tui: no terminal, running the headless engine (like `tinyo run {recipe}`)"


def _in_a_terminal(argv: list[str], env: dict[str, str], keys_after: tuple[bytes, bytes] | None = None
                   ) -> tuple[int, str]:
    """Run ``argv`` with a 100x30 pty as its terminal; its exit status and everything it wrote.
    ``keys_after`` = (seen, keys): type ``keys`` once ``seen`` has been written."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"},
                            close_fds=True, start_new_session=True)
    os.close(slave)
    written = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            written += data
            if keys_after is not None and keys_after[0] in written:
                os.write(master, keys_after[1])
                keys_after = None
    finally:
        os.close(master)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return code, written.decode(errors="replace")


def test_tinyo_tui_in_a_terminal_opens_the_console_and_quits_on_q(recipe: Path) -> None:
    code, out = _in_a_terminal([entry_point("tinyo-tui"), str(recipe), "--theme", "light", "--execution", "threads"],
                               ENV, keys_after=(b"Documents", b"q"))
    assert code == 0, out[-2000:]
    assert "Events" in out and "Documents" in out and "no terminal" not in out


def test_tinyo_tui_in_a_terminal_refuses_an_unknown_theme_from_option_or_environment(recipe: Path) -> None:
    code, out = _in_a_terminal([entry_point("tinyo-tui"), str(recipe), "--theme", "no-such-theme"], ENV)
    assert code == 2 and "tinyo-tui: error: unknown theme 'no-such-theme'" in out
    code, out = _in_a_terminal([entry_point("tinyo-tui"), str(recipe)], {**ENV, "TINYO_THEME": "also-not-a-theme"})
    assert code == 2 and "tinyo-tui: error: unknown theme 'also-not-a-theme'" in out


def test_tinyo_tui_usage_errors(recipe: Path) -> None:
    both = run(entry_point("tinyo-tui"), str(recipe), "--executor", "local-dask", "--execution", "threads")
    assert both.returncode == 2
    assert both.stderr.strip() == "tinyo-tui: error: --executor runs ops on Dask; it cannot be combined with --execution"
    assert run(entry_point("tinyo-tui"), str(recipe), "--workers", "0").returncode == 2
    missing = run(entry_point("tinyo-tui"))
    assert missing.returncode == 2 and "Missing argument 'RECIPE'" in missing.stderr
