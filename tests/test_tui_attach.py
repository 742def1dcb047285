"""The console attached to an engine started with `tinyo start`: history, live facts, keys, detaching."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_control import _no_xdg, env, tinyo  # noqa: F401 - `_no_xdg` is a fixture
from test_tui_pilot import recipe, started, sync, until  # noqa: F401 - `recipe` is a fixture
from tinyo.control.client import running_engine
from tinyo.control.handle import RemoteEngine
from tinyo.errors import TinyoError
from tinyo.recipe import load_recipe
from tinyo_tui.app import build_app
from tinyo_tui.cli import _attach
from tinyo_tui.screens.inject import InjectDialog


def end_engine(recipe: Path, pid: int) -> None:
    """Stop the engine a test started on ``recipe`` (and kill what is left of it)."""
    tinyo("stop", str(recipe), "--now")
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def service(recipe: Path):
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    yield pid
    end_engine(recipe, pid)


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
            assert not [row.line for row in app.state.output if row.kind == "error"]
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


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@sync
async def test_stopping_the_engine_from_an_attached_console_is_asked_first_and_goes_through_the_channel(
        recipe: Path, tmp_path: Path, service: int) -> None:
    from textual.widgets import Button

    from tinyo_tui.screens.confirm import ConfirmDialog
    from tinyo_tui.screens.help import HelpScreen
    from tinyo_tui.widgets.footer import StableFooter

    _, engine = _attach(recipe, None, False, False)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            footer = app.screen.query_one(StableFooter)
            assert ("q", "Detach", True, "Quit: detach; the engine goes on running (S stops it)") in footer._signature()
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            rows = app.screen._rows
            assert ("S", "Stop the engine (asked first)") in rows
            assert ("q", "Quit: detach; the engine goes on running (S stops it)") in rows
            assert not [text for _, text in rows if "stops the engine" in text or "Stop the engine gracefully" in text]
            await pilot.press("escape")
            await pilot.press("S")
            assert isinstance(app.screen, ConfirmDialog)
            assert f"pid {service}" in app.screen._title
            assert app.screen.focused is app.screen.query_one("#no", Button)  # Cancel is the default
            await pilot.press("enter")
            assert not isinstance(app.screen, ConfirmDialog)
            await pilot.pause(0.5)
            with running_engine(tmp_path / "state.db") as client:  # cancelled: nothing was sent
                assert client.pid == service and client.query("stats")["state"] == "running"
            # the palette entry asks the same question; yes stops the engine through the channel
            await pilot.press("ctrl+p")
            await pilot.press(*"Stop engine")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the stop question")
            await pilot.press("y")
            await until(pilot, lambda: _gone(service), what="the engine process to end")
            await until(pilot, lambda: app.state.engine_state == "stopped", what="the console to say it stopped")
            await until(pilot, lambda: any(row.kind == "notice" and f"engine (pid {service}) stopped: waiting"
                                           in row.name for row in app.state.events), what="the waiting line")
            assert app.is_running  # the console stays, waiting
            assert any(row.kind == "cmd" and row.line == f"stopping the engine (pid {service})"
                       for row in app.state.output)
            await pilot.press("q")
            await pilot.pause(0.3)
        assert app.return_code == 0
    finally:
        engine.stop()
    assert running_engine(tmp_path / "state.db") is None


@sync
async def test_the_stop_key_in_an_embedded_console_is_the_graceful_quit_asked_first(recipe: Path) -> None:
    from tinyo.engine import Engine
    from tinyo_tui.screens.confirm import ConfirmDialog

    engine = Engine.from_path(recipe)
    app = build_app(engine, theme="dark")
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            await pilot.press("S")
            assert isinstance(app.screen, ConfirmDialog) and app.screen._title == "Stop the engine and quit?"
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert app.is_running and engine.state == "running"
            await pilot.press("S", "y")
            await until(pilot, lambda: not app.is_running, what="the console to quit")
        assert app.return_code == 0 and engine.state == "stopped"
    finally:
        engine.stop(timeout=2.0)


@sync
async def test_an_attached_console_waits_when_the_engine_stops_and_re_attaches_when_one_starts_again(
        recipe: Path, tmp_path: Path, service: int) -> None:
    _, engine = _attach(recipe, None, False, False)
    app = build_app(engine, theme="dark")
    restarted = 0
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            assert tinyo("inject", str(recipe), "echo_first").returncode == 0
            await until(pilot, lambda: any(row.line == "echo first" for row in app.state.output), what="live output")
            assert tinyo("stop", str(recipe)).returncode == 0
            await until(pilot, lambda: app.state.engine_state == "stopped", what="the console to say it stopped")
            await until(pilot, lambda: any(row.kind == "notice" and f"engine (pid {service}) stopped: waiting"
                                           in row.name for row in app.state.events), what="the waiting line")
            await pilot.pause(1.5)  # a few tries to re-attach find nothing, and the console just waits
            assert app.is_running and app.attached_to == service and app.state.engine_state == "stopped"
            result = tinyo("start", str(recipe))
            assert result.returncode == 0, result.stderr
            restarted = int(result.stdout.split("(pid ")[1].split(")")[0])
            assert restarted != service
            await until(pilot, lambda: app.attached_to == restarted, what="the console to re-attach")
            header = app.screen.query_one("#header")
            assert f"attached to pid {restarted}" in header.render().plain
            await until(pilot, lambda: app.state.engine_state == "running", what="the new engine running")
            assert any(row.line == f"re-attached to the engine (pid {restarted})" for row in app.state.output)
            assert not [row.line for row in app.state.output if row.kind == "error"]
            # live again: a command from another process shows up, and the console's own keys act
            assert tinyo("inject", str(recipe), "echo_again").returncode == 0
            await until(pilot, lambda: any(row.line == "echo again" for row in app.state.output), what="live output")
            await pilot.press("i", *"echo_keyed", "enter")
            await until(pilot, lambda: any(row.line == "echo keyed" for row in app.state.output), what="a key's effect")
            await pilot.press("q")
            await pilot.pause(0.3)
        assert app.return_code == 0
    finally:
        engine.stop()
        if restarted:
            end_engine(recipe, restarted)
    assert engine.wait(5)  # detaching ends the re-attach thread


@sync
async def test_an_attached_console_re_attaches_to_tinyo_run_after_its_engine_was_killed(
        recipe: Path, tmp_path: Path, service: int) -> None:
    _, engine = _attach(recipe, None, False, False)
    app = build_app(engine, theme="dark")
    foreground: subprocess.Popen[bytes] | None = None
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            os.killpg(service, signal.SIGKILL)  # it dies: no goodbye on the socket, a stale socket file left
            await until(pilot, lambda: any(row.kind == "notice" and f"engine (pid {service}) stopped: waiting"
                                           in row.name for row in app.state.events), what="the waiting line")
            foreground = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe)], env=env(),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await until(pilot, lambda: app.attached_to == foreground.pid, timeout=30, what="the console to re-attach")
            await until(pilot, lambda: app.state.engine_state == "running", what="the new engine running")
            await pilot.press("i", *"echo_after", "enter")
            await until(pilot, lambda: any(row.line == "echo after" for row in app.state.output), what="a key's effect")
            await pilot.press("q")
            await pilot.pause(0.3)
        assert app.return_code == 0
        assert foreground.poll() is None  # detaching left it running
    finally:
        engine.stop()
        if foreground is not None:
            foreground.terminate()
            foreground.wait(timeout=30)


def _stopping(db: Path) -> bool:
    from tinyo.control.client import ControlClient, EngineStopping

    try:
        with ControlClient.connect(db, "test", timeout=5) as client:
            return client.welcome is not None and client.welcome.state == "stopping"
    except EngineStopping:
        return True
    except TinyoError:
        return False


@sync
async def test_tinyo_start_right_after_a_console_stopped_the_engine_waits_for_it_to_end_and_the_console_follows(
        recipe: Path, tmp_path: Path, service: int) -> None:
    """S while an op runs: the engine stops gracefully (its grace period), answering "stopping" meanwhile;
    a `tinyo start` then waits for it to end instead of failing, and the console re-attaches to the new one."""
    import asyncio

    _, engine = _attach(recipe, None, False, False)
    app = build_app(engine, theme="dark")
    restarted = 0
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            await pilot.press("i", *"slow_op", "enter")
            await until(pilot, lambda: app.state.running == 1, what="the slow op running")
            await pilot.press("S", "y")
            await until(pilot, lambda: _stopping(tmp_path / "state.db"), what="the engine stopping")
            result = await asyncio.to_thread(tinyo, "start", str(recipe))
            assert result.returncode == 0, result.stderr
            assert "engine started" in result.stdout  # a new one, not "already running": it waited
            restarted = int(result.stdout.split("(pid ")[1].split(")")[0])
            assert restarted != service
            await until(pilot, lambda: _gone(service), what="the old engine's process to end")
            await until(pilot, lambda: app.attached_to == restarted, what="the console to re-attach")
            await until(pilot, lambda: app.state.engine_state == "running", what="the new engine running")
            await pilot.press("q")
            await pilot.pause(0.3)
    finally:
        engine.stop()
        if restarted:
            end_engine(recipe, restarted)


@sync
async def test_an_attached_console_answers_keys_during_a_flood_and_ends_up_showing_what_the_engine_did(
        recipe: Path, tmp_path: Path, service: int) -> None:
    """Keys pressed while another client floods the engine switch panes (the facts do not hold them up), and
    once the flood ends the console shows every event of it (what it folded in, or asked again)."""
    import asyncio
    import threading

    from textual import events

    from tinyo.control.client import ControlClient

    _, engine = _attach(recipe, None, False, False)
    app = build_app(engine, theme="dark")
    stop = threading.Event()
    sent: list[int] = []

    def flood() -> None:
        with ControlClient.connect(tmp_path / "state.db", "flood") as client:
            n = 0
            while not stop.is_set():
                client.command("inject", event=f"echo_f{n}")
                n += 1
            sent.append(n)

    thread = threading.Thread(target=flood, daemon=True)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            thread.start()
            await until(pilot, lambda: any(row.name.startswith("echo_f") for row in app.state.events),
                        what="the flood reaching the console")
            with ControlClient.connect(tmp_path / "state.db", "look") as look:
                before = look.query("stats")["events_total"]
                for key, pane in [("2", "documents"), ("3", "workers"), ("5", "output"), ("4", "lanes"), ("1", "events")]:
                    app.post_message(events.Key(key, key))  # as the terminal driver hands a key over
                    for _ in range(600):
                        if app.screen.active_pane == pane:
                            break
                        await asyncio.sleep(0.01)
                    assert app.screen.active_pane == pane
                assert look.query("stats")["events_total"] > before  # the flood went on while the keys were served
            stop.set()
            thread.join(30)
            (total,) = sent
            await until(pilot, lambda: getattr(app.state.groups.get("done.echo_f*"), "count", 0) == total, timeout=60,
                        what="every event of the flood in the documents' group")
            await until(pilot, lambda: app.state.running == 0 and app.state.queued == 0, timeout=60,
                        what="the console to see the engine idle")
            await pilot.press("q")
            await pilot.pause(0.3)
    finally:
        stop.set()
        engine.stop()
