"""The console as a real process in a pseudo-terminal: it ends cleanly when its terminal goes away.

Each test starts ``tinyo-tui`` on a pty with an op running in a worker process, then takes the
terminal away the way it happens in real life (SIGHUP, the terminal closing, SIGTERM, q twice) and
checks that the process ends within the grace period plus a few seconds, burns no CPU meanwhile,
leaves no child behind, and committed its state (the interrupted run is in the state file).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import sqlite3
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

GRACE = 1.0
EXIT_BOUND = GRACE + 8.0
"""Seconds from the hang-up to the process's end (grace, worker shutdown, Python's exit)."""
CPU_BOUND = 1.5
"""CPU seconds the process may use while it stops (a spinning input loop uses about one per second)."""

RECIPE = '''
import gc, os, time
from pathlib import Path
from tinyo import DES, Config, Execution, TinyOConfig, meta_task

def slow(context):
    Path(MARK).write_text(str(os.getpid()))
    time.sleep(120)

@meta_task(root=True)
def on_file(event):
    # generators run in the engine's process: here, the console's
    Path(MARK).with_name("collector.txt").write_text(f"{gc.get_threshold()} {gc.get_freeze_count() > 0}")
    if event.endswith("go.txt"):
        return (None, [DES(deps=[event], targs=["slow.done"], ops=[(slow, Config())])])
    return (None, [])

config = TinyOConfig(sql_conn=SQL, dirs=[DATA], max_workers=1, execution=Execution.PROCESSES, debounce=0.05)
'''


@dataclass
class Console:
    proc: subprocess.Popen[bytes]
    master: int | None
    db: Path
    worker: int
    screen: bytearray = field(default_factory=bytearray)

    def close_master(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (walks /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def console(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Console]:
    data, mark = tmp_path / "data", tmp_path / "worker.pid"
    data.mkdir()
    recipe = tmp_path / "hangup_recipe.py"
    recipe.write_text(textwrap.dedent(RECIPE).replace("SQL", repr(str(tmp_path / "state.db")))
                      .replace("DATA", repr(str(data))).replace("MARK", repr(str(mark))))
    (data / "go.txt").write_text("go\n")
    options = getattr(request, "param", {})
    controlling, grace = options.get("controlling", True), options.get("grace", GRACE)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x64\x00\x00\x00\x00\x00")  # 24 rows, 100 columns

    def session() -> None:
        os.setsid()
        if controlling:  # the pty becomes the controlling terminal: closing it sends SIGHUP
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "24"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tinyo-tui"), str(recipe), "--grace", str(grace)],
                            stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env,
                            preexec_fn=session, close_fds=True)
    os.close(slave)
    con = Console(proc, master, tmp_path / "state.db", 0)

    def read() -> None:  # a terminal reads what the app writes; a full pty would block it
        while con.master is not None:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            con.screen.extend(chunk[-4096:])

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() or not mark.read_text():
            assert proc.poll() is None, f"tinyo-tui ended early: {bytes(con.screen[-2000:])!r}"
            assert time.monotonic() < deadline, "the op never started"
            time.sleep(0.1)
        con.worker = int(mark.read_text())
        yield con
    finally:
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        con.close_master()


def assert_ends_cleanly(con: Console, children: set[int]) -> None:
    """The process exits within the bound, using little CPU, leaving no child, with its state committed."""
    assert con.worker in children
    start, cpu_start = time.monotonic(), _cpu_seconds(con.proc.pid)
    assert cpu_start is not None
    cpu_last = cpu_start
    while con.proc.poll() is None and time.monotonic() - start < EXIT_BOUND:
        sample = _cpu_seconds(con.proc.pid)
        if sample is not None:
            cpu_last = sample
        time.sleep(0.05)
    still = con.proc.poll() is None
    assert not still, (f"tinyo-tui still running {EXIT_BOUND}s after losing its terminal "
                       f"(used {cpu_last - cpu_start:.1f} CPU s meanwhile)")
    assert cpu_last - cpu_start < CPU_BOUND, f"used {cpu_last - cpu_start:.1f} CPU s while stopping"
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = sorted(pid for pid in children if _alive(pid))
    assert not left, f"children left running: {left}"
    with sqlite3.connect(con.db) as db:
        states = [row[0] for row in db.execute("SELECT status FROM runs")]
    assert "interrupted" in states, f"the running op's run was not recorded as interrupted: {states} (exit {con.proc.returncode})"


def test_the_console_runs_the_garbage_collector_less_often(console: Console) -> None:
    """Its process sets the collector as ``collect_less`` says (a full collection stopped the UI for up to
    ~250 ms under a flood), with what existed at start frozen out of its sight."""
    from tinyo_tui.cli import GC_THRESHOLDS

    said = (console.db.parent / "collector.txt").read_text()
    assert said == f"{GC_THRESHOLDS} True", said
    console.proc.send_signal(signal.SIGHUP)
    assert_ends_cleanly(console, _children(console.proc.pid))


def test_sighup_stops_the_engine_and_exits(console: Console) -> None:
    children = _children(console.proc.pid)
    console.proc.send_signal(signal.SIGHUP)
    assert_ends_cleanly(console, children)


def test_closing_the_terminal_stops_the_engine_and_exits(console: Console) -> None:
    children = _children(console.proc.pid)
    console.close_master()
    assert_ends_cleanly(console, children)


@pytest.mark.parametrize("console", [{"controlling": False}], indirect=True)
def test_end_of_input_without_a_signal_stops_the_engine_and_exits(console: Console) -> None:
    """The pty is not the controlling terminal: closing it sends no SIGHUP, only EOF/EIO."""
    children = _children(console.proc.pid)
    console.close_master()
    assert_ends_cleanly(console, children)


def test_sigterm_stops_the_engine_and_exits(console: Console) -> None:
    children = _children(console.proc.pid)
    console.proc.send_signal(signal.SIGTERM)
    assert_ends_cleanly(console, children)
    assert console.proc.returncode == 0


@pytest.mark.parametrize("console", [{"grace": 600.0}], indirect=True)
def test_a_second_ctrl_c_stops_running_ops_at_once(console: Console) -> None:
    """The first Ctrl-C stops gracefully and the header counts the grace down; the second one does not
    wait for it (with a 600 s grace, only the second Ctrl-C can end the process within the bound)."""
    children = _children(console.proc.pid)
    assert console.master is not None
    os.write(console.master, b"\x03")
    deadline = time.monotonic() + 20
    while not re.search(rb"stopping \d+s", console.screen):  # "stopping 599s (q: now)"
        assert time.monotonic() < deadline, f"no countdown in the header: {bytes(console.screen[-1500:])!r}"
        time.sleep(0.05)
    assert console.proc.poll() is None
    os.write(console.master, b"\x03")
    assert_ends_cleanly(console, children)
    assert console.proc.returncode == 0
