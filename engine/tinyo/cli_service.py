"""Provides the CLI commands of the engine as a service: ``tinyo start``, ``stop`` and ``events``, and the
live paths of ``status``, ``why`` and the request commands (through the control channel)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_options import Command, DbOpt, RecipeArg
from .cli_support import EXIT_OK, fail
from .control.paths import ControlError, log_path, state_key
from .errors import TinyoError

_ENDING = ("stopping", "stopped")
"""An engine in these states still answers on its socket for a moment, but is going: start waits for it."""


def _db_for(recipe: Path, db: str | None) -> str:
    if db:
        return state_key(db)
    from .recipe import load_recipe

    return state_key(load_recipe(recipe).config.sql_conn)


# ------------------------------------------------------------------------------------------ helpers for cli.py
_REQUESTS = {  # a request kind of the state file's requests table -> (command, argument name)
    "rerun": ("rerun", "target"), "rerun_down": ("rerun", "target"), "inject": ("inject", "event"),
    "fire": ("fire", "timer"), "pause": ("pause", ""), "resume": ("resume", ""), "cancel": ("cancel", "run_id"),
}


def send_command(db_path: str, kind: str, arg: str) -> bool:
    """Hand a request to the engine serving ``db_path`` through its control channel: True once it took it,
    False when no engine answers there; ControlError with the engine's reason when it refused."""
    from .control.client import running_engine

    client = running_engine(db_path)
    if client is None:
        return False
    name, arg_name = _REQUESTS[kind]
    args: dict[str, Any] = {}
    if arg_name:
        args[arg_name] = int(arg) if arg_name == "run_id" else arg
    if name == "rerun":
        args["downstream"] = kind == "rerun_down"
    with client:
        client.command(name, **args)
    return True


def live_query(db_path: str, query: Any) -> tuple[int, Any] | None:
    """(pid, the answer to the typed query ``query``) from the engine serving ``db_path``; None when none runs there."""
    from .control.client import running_engine

    client = running_engine(db_path)
    if client is None:
        return None
    with client:
        return client.pid, client.ask(query)


# ------------------------------------------------------------------------------------------ start
def start(
    recipe: RecipeArg,
    db: DbOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS",
                                           help="How long to wait for the engine to be running.")] = 120.0,
    log_max_mb: Annotated[float, typer.Option("--log-max-mb", metavar="MB", min=0.001,
                                              help="Rotate the log past this size (keeping 2 old ones).")] = 10.0,
) -> None:
    """Start the engine in the background (its own session; it outlives the terminal), log beside the state file."""
    from .control.client import ControlClient, EngineStopping, running_engine
    from .control.logfile import rotate_if_full

    deadline = time.monotonic() + timeout
    while True:
        try:
            path = _db_for(recipe, db)
            client = running_engine(path)
            if client is None or client.welcome is None or client.welcome.state not in _ENDING:
                break
            client.close()
            raise EngineStopping(f"the engine on {path} (pid {client.pid}) is stopping")
        except EngineStopping as exc:  # one is stopping (a console's S, `tinyo stop`): start once it has ended
            if time.monotonic() > deadline:
                fail(f"{exc}, and has not ended within {timeout:g}s")
            time.sleep(0.1)
        except TinyoError as exc:
            fail(str(exc))
    if client is not None:
        client.close()
        typer.echo(f"tinyo: an engine is already running on {path} (pid {client.pid})")
        raise typer.Exit(EXIT_OK)
    log = log_path(path)
    log_max = max(1, int(log_max_mb * (1 << 20)))
    try:
        # the state file's folder may not exist yet (the engine creates it, with the recipe's folders)
        os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
        rotate_if_full(log, log_max)  # the engine's first lines (and _reason's offset) go to a log with room
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        fail(f"cannot write the engine's log {log}: {exc.strerror or exc}")
    offset = os.lseek(fd, 0, os.SEEK_END)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tinyo.control.daemon", str(recipe.resolve()), "--db", path,
                                 "--log", str(log), "--log-max", str(log_max)],
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, env=env)
    finally:
        os.close(fd)
    while True:
        if proc.poll() is not None:
            fail(f"the engine did not start: {_reason(log, offset)} (log: {log})")
        try:
            with ControlClient.connect(path, "tinyo start", timeout=max(1.0, deadline - time.monotonic())) as client:
                pid = client.pid
                state = client.welcome.state if client.welcome is not None else ""
            if pid == proc.pid or state not in _ENDING:
                break  # this one, or another that started meanwhile (not the one ending, which is still serving)
        except TinyoError:
            pass  # not listening yet
        reason = _reason(log, offset, only_warning="no control channel")
        if reason:
            _end(proc)
            fail(f"the engine started without its control channel, so it was stopped: {reason} (log: {log})")
        if time.monotonic() > deadline:
            _end(proc)
            fail(f"the engine did not answer within {timeout:g}s; it was stopped (log: {log})")
        time.sleep(0.05)
    if pid != proc.pid:
        typer.echo(f"tinyo: an engine is already running on {path} (pid {pid})")
        raise typer.Exit(EXIT_OK)
    typer.echo(f"tinyo: engine started on {path} (pid {pid}); log: {log}")


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop an engine this command started (gracefully: it commits what it took in), and wait for it."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _reason(log: Path, offset: int, only_warning: str | None = None) -> str:
    """The engine's own words from the log written since ``offset``: its error line, else its last line."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = [ln.strip() for ln in f.read(1 << 20).decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if only_warning is not None:
        return next((ln.removeprefix("tinyo: warning: ") for ln in lines if only_warning in ln), "")
    errors = [ln.removeprefix("tinyo: error: ") for ln in lines if ln.startswith("tinyo: error:")]
    return errors[-1] if errors else (lines[-1] if lines else "it exited without a word")


# ------------------------------------------------------------------------------------------ stop
def stop(
    recipe: RecipeArg,
    db: DbOpt = None,
    now: Annotated[bool, typer.Option("--now", help="Stop running ops now (they run again at the next start).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS",
                                           help="How long to wait for the engine to end.")] = 120.0,
) -> None:
    """Stop the engine running on the recipe's state file gracefully, and wait until it has ended."""
    from .control.client import running_engine
    from .control.protocol import Bye

    try:
        path = _db_for(recipe, db)
        client = running_engine(path)
        if client is None:
            typer.echo(f"tinyo: no engine is running on {path}: nothing to stop")
            raise typer.Exit(EXIT_OK)
        with client:
            client.command("stop", now=now)
            for message in client.subscribe(history=False):  # the stream ends when the engine has stopped
                if isinstance(message, Bye):
                    break
    except ControlError as exc:
        fail(str(exc))
    deadline = time.monotonic() + timeout
    while _alive(client.pid):
        if time.monotonic() > deadline:
            fail(f"the engine (pid {client.pid}) stopped serving but its process has not ended after {timeout:g}s")
        if not _locked(path) and _is_console(client.pid):
            break  # an engine embedded in a console stopped; the console itself goes on
        time.sleep(0.05)
    typer.echo(f"tinyo: engine on {path} (pid {client.pid}) stopped")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def _is_console(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"tinyo-tui" in cmdline or b"tinyo_tui" in cmdline


def _locked(db_path: str) -> bool:
    try:
        fd = os.open(db_path + ".lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


# ------------------------------------------------------------------------------------------ events
def events(
    recipe: RecipeArg,
    db: DbOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="After the history, print facts as they happen.")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per fact, like `tinyo run --json`.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print state changes.")] = False,
) -> None:
    """Print the running engine's recent facts (events, runs, output), then with --follow the live stream."""
    from . import events as ev
    from .control.client import running_engine
    from .control.protocol import Bye, Fact, Live, Missed
    from .report import TextReporter

    try:
        path = _db_for(recipe, db)
        client = running_engine(path, "tinyo events")
    except TinyoError as exc:
        fail(str(exc))
    if client is None:
        fail(f"no tinyo engine is running on {path} (start one with `tinyo start {recipe}`)")
    if json_lines:
        try:
            with client:
                _print_json_lines(client, follow)
        except KeyboardInterrupt:
            pass
        except ControlError as exc:
            fail(str(exc))
        return
    text = TextReporter(verbose=verbose)
    try:
        with client:
            for message in client.subscribe(history=True):
                if isinstance(message, Fact):
                    if isinstance(message.fact, ev.BusEvent):
                        text(message.fact)
                elif isinstance(message, Live) and not follow:
                    break
                elif isinstance(message, Missed):
                    text(ev.EngineNotice(time.time(), "warning",
                                         f"this client read too slowly: {message.count} fact(s) were not sent to it"))
                elif isinstance(message, Bye):
                    typer.echo(f"tinyo: the engine stopped: {message.reason}", err=True)
    except KeyboardInterrupt:
        pass
    except ControlError as exc:
        fail(str(exc))
    finally:
        text.close()


def _print_json_lines(client: Any, follow: bool) -> None:
    """``tinyo events --json``: each fact as ``tinyo run --json`` prints it, one JSON object per line, made here
    from the rows the engine sends every subscriber (the engine encodes a fact once, whoever reads it; each
    printer keys and encodes its own lines in its own process), what one read from the socket brought in one
    write."""
    from .control.protocol import Bye, Live, Missed, encode

    out = sys.stdout.buffer
    for items in client.subscribe_json(history=True):
        batch: list[bytes] = []
        for item in items:
            if type(item) is bytes:
                batch.append(item)
            elif isinstance(item, Missed):
                batch.append(encode(item))  # its own JSON line, as the engine sent it
            elif isinstance(item, Live) and not follow:
                out.write(b"".join(batch))
                out.flush()
                return
            elif isinstance(item, Bye):
                out.write(b"".join(batch))
                out.flush()
                typer.echo(f"tinyo: the engine stopped: {item.reason}", err=True)
                return
        out.write(b"".join(batch))
        out.flush()  # a follower sees each batch as it comes


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``tinyo`` command line."""
    app.command(cls=Command, epilog="Example: tinyo start pipeline.py")(start)
    app.command(cls=Command, epilog="Example: tinyo stop pipeline.py --now")(stop)
    app.command(cls=Command, epilog="Example: tinyo events pipeline.py --follow --json")(events)
