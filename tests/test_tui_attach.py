"""The console attached to an engine started with `tinyo start`: history, live facts, keys, detaching."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_tui_pilot import RECIPE, started, sync, until
from tinyo.control.client import running_engine
from tinyo.control.handle import RemoteEngine
from tinyo.errors import TinyoError
from tinyo.recipe import load_recipe
from tinyo_tui.app import build_app
from tinyo_tui.cli import _attach
from tinyo_tui.screens.inject import InjectDialog


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out.pop("XDG_RUNTIME_DIR", None)
    return out


def tinyo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env())


@pytest.fixture(autouse=True)
def _no_xdg(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "pilot_recipe.py"
    text = textwrap.dedent(RECIPE).replace("SQL", repr(str(tmp_path / "state.db"))).replace("DATA", repr(str(data)))
    path.write_text(text)
    return path


@pytest.fixture
def service(recipe: Path):
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    yield pid
    tinyo("stop", str(recipe), "--now")
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@sync
async def test_an_attached_console_shows_history_acts_live_and_quits_without_stopping_the_engine(
        recipe: Path, tmp_path: Path, service: int) -> None:
    assert tinyo("inject", str(recipe), "echo_before").returncode == 0
    recipe_obj, engine = _attach(recipe, None, False, False)
    assert isinstance(engine, RemoteEngine) and engine.pid == service
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            assert f"attached to pid {service}" in app.recipe_name
            # history: what happened before the console was there
            await until(pilot, lambda: any(r.name == "echo_before" for r in app.state.events), what="history event")
            await until(pilot, lambda: any(row.line == "echo before" for row in app.state.output), what="history output")
            # live: a key acts on the engine in the other process
            await pilot.press("i")
            assert isinstance(app.screen, InjectDialog)
            await pilot.press(*"echo_live", "enter")
            await until(pilot, lambda: any(row.line == "echo live" for row in app.state.output), what="live output")
            await until(pilot, lambda: app.state.docs.get("done.echo_live") is not None
                        and app.state.docs["done.echo_live"].state == "up to date", what="the document's state")
            await pilot.press("q")  # no stop question: quitting detaches
            await pilot.pause(0.5)
        assert app.return_code == 0
    finally:
        engine.stop()
    with running_engine(tmp_path / "state.db") as client:
        assert client.pid == service  # the engine goes on


def test_attach_only_is_an_error_when_nothing_runs_and_embeds_otherwise(recipe: Path) -> None:
    with pytest.raises(TinyoError, match="nothing to attach to"):
        _attach(recipe, None, False, True)
    loaded, engine = _attach(recipe, None, False, False)
    assert engine is None and loaded.path == load_recipe(recipe).path
    no_tty = subprocess.run([sys.executable, "-m", "tinyo_tui.cli", str(recipe), "--attach"], capture_output=True,
                            text=True, timeout=60, env=env(), stdin=subprocess.DEVNULL)
    assert no_tty.returncode == 2 and "--attach needs a terminal" in no_tty.stderr


def test_a_hang_up_detaches_an_attached_console_and_its_engine_goes_on_running_the_op(
        recipe: Path, tmp_path: Path, service: int) -> None:
    import fcntl
    import struct
    import termios
    import threading
    import time

    from tinyo import events as ev
    from tinyo.control.client import ControlClient
    from tinyo.control.protocol import Fact, Live

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 32, 120, 0, 0))
    console = subprocess.Popen([sys.executable, "-m", "tinyo_tui.cli", str(recipe)], stdin=slave, stdout=slave,
                               stderr=slave, env={**env(), "TERM": "xterm-256color"}, start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def drain() -> None:  # a terminal that reads what the console draws
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while f"attached to pid {service}".encode() not in screen:
            assert time.monotonic() < deadline, "the console did not attach"
            time.sleep(0.1)
        with ControlClient.connect(tmp_path / "state.db") as client:
            client.command("inject", event="slow_op")
            deadline = time.monotonic() + 20
            while client.query("stats")["running"] < 1:
                assert time.monotonic() < deadline, "the slow op did not start"
                time.sleep(0.05)
            console.send_signal(signal.SIGHUP)  # the SSH connection drops
            assert console.wait(timeout=10) is not None  # the console is gone ...
            time.sleep(0.5)
            stats = client.query("stats")
            assert stats["state"] == "running" and stats["running"] == 1  # ... the engine and its op are not
        with ControlClient.connect(tmp_path / "state.db") as look:
            for message in look.subscribe(history=True):
                if isinstance(message, Live):
                    break
                assert not (isinstance(message, Fact) and isinstance(message.fact, (ev.OpCancelled, ev.OpFailed)))
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
        os.close(master)
