"""Provides the ``tinyo`` entry point: a request command (rerun, inject, fire, pause, resume, cancel) for a
running engine goes straight to its control socket, with the standard library alone.

Starting the full command line (typer, rich) and running the recipe to learn its state file costs more
than the command itself, so the engine records which recipe it serves (``control.index``) and this
module reads that, sends the command and prints what ``tinyo.cli`` prints. Anything else (another
command, an option it does not know, ``--help``, no engine answering, an engine that refuses the
command, a recipe edited since the engine loaded it) runs the full command line instead, which does
exactly what it always did. Once the command is sent it is never sent again.

``tinyo run`` goes without the full command line too, when :mod:`tinyo.cli_run_direct` reads its
arguments as the full one would: typer's import and set-up were a quarter of a one-task run's start-up.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from typing import Any

from .request_words import describe, took

PROTOCOL = 6
"""The control protocol spoken here (``control.protocol.PROTOCOL``, which a test checks it equals; an
engine speaking another answers an error, and the full command line takes over)."""
CONNECT_TIMEOUT = 30.0
"""Seconds to connect and be welcomed (the full command line's own bound)."""
EXIT_OK, EXIT_USAGE = 0, 2

_ARITY = {"inject": 1, "rerun": 1, "fire": 1, "pause": 0, "resume": 0, "cancel": 1}
"""Each command this module sends, and how many arguments follow its RECIPE."""
_ARG = {"inject": "event", "rerun": "target", "fire": "timer", "cancel": "run_id"}
_CRED = struct.Struct("3i")


class _Declined(Exception):
    """The full command line handles this one (nothing was sent to the engine)."""


class Request:
    """A request command as typed: its name, RECIPE, argument (if any) and options. (A plain class: the
    dataclasses module alone would add a tenth to this command's time.)"""

    __slots__ = ("name", "recipe", "arg", "db", "downstream")

    def __init__(self, name: str, recipe: str, arg: str | None, db: str | None, downstream: bool) -> None:
        self.name, self.recipe, self.arg, self.db, self.downstream = name, recipe, arg, db, downstream

    def args(self) -> dict[str, Any]:
        """The command's arguments on the wire."""
        if self.arg is None:
            return {}
        out: dict[str, Any] = {_ARG[self.name]: int(self.arg) if self.name == "cancel" else self.arg}
        if self.name == "rerun":
            out["downstream"] = self.downstream
        return out

    def what(self) -> str:
        return describe(self.name, self.arg)



def parse(argv: list[str]) -> Request | None:
    """The request command ``argv`` types, or None when it is something else or uses what this module does
    not know (then the full command line reads it, and says what is wrong with it)."""
    if not argv or argv[0] not in _ARITY:
        return None
    name, positional, db, downstream = argv[0], [], None, False
    tokens = iter(argv[1:])
    for token in tokens:
        if token == "--db":
            db = next(tokens, None)
            if db is None:
                return None
        elif token.startswith("--db="):
            db = token[len("--db="):]
        elif name == "rerun" and token in ("--downstream", "-R"):
            downstream = True
        elif token.startswith("-"):
            return None  # --help, --debug, "--", an unknown option, or an argument the parser reads as one
        else:
            positional.append(token)
    if len(positional) != 1 + _ARITY[name] or db == "":
        return None
    arg = positional[1] if len(positional) > 1 else None
    if name == "cancel" and not (arg and arg.isascii() and arg.isdigit()):
        return None
    return Request(name, positional[0], arg, db, downstream)


def direct(argv: list[str]) -> int | None:
    """Send the request command in ``argv`` to the running engine: its exit status, or None when the full
    command line must handle it (nothing was sent)."""
    request = parse(argv)
    if request is None:
        return None
    line = took(request.what()) + "\n"
    try:
        line.encode(sys.stdout.encoding or "utf-8")  # a name the terminal cannot show: the full CLI's way
        sock, reader = _connect(request)
    except Exception:  # noqa: BLE001 - nothing was sent: the full command line does it, and says what failed
        return None
    with sock:
        try:
            sock.sendall(_line({"type": "command", "id": 1, "name": request.name, "args": request.args()}))
            reply = _reply(reader)
        except (OSError, ValueError):
            reply = {"type": "bye"}
    kind = reply.get("type")
    if kind == "result":
        sys.stdout.write(line)
        sys.stdout.flush()
        return EXIT_OK
    if kind == "error":
        return None  # refused, nothing done: the full command line asks again and words the refusal its way
    reason = reply.get("reason")
    sys.stderr.write("tinyo: error: the engine closed the connection" + (f": {reason}" if reason else "") + "\n")
    return EXIT_USAGE


def _connect(request: Request) -> tuple[socket.socket, _Reader]:
    """A connection to the engine the full command line would send ``request`` to, welcomed; _Declined
    when there is none, or it is not that engine."""
    from .control import index
    from .control.paths import socket_path, state_key

    db = request.db
    if db is None or request.name == "fire":  # fire checks the timer against the recipe: it must be the engine's
        entry = index.lookup(os.path.realpath(os.path.expanduser(request.recipe)))
        if entry is None or (db is not None and state_key(db) != entry["db"]):
            raise _Declined
        db = entry["db"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(str(socket_path(db)))
        _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        if uid != os.getuid():
            raise _Declined
        sock.sendall(_line({"type": "hello", "protocol": PROTOCOL, "client": "tinyo"}))
        reader = _Reader(sock)
        welcome = reader.message()
        if welcome.get("type") != "welcome" or state_key(str(welcome.get("db"))) != state_key(db):
            raise _Declined
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock, reader


def _line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()  # ASCII: every name \u-escaped


class _Reader:
    """The engine's JSON lines, one message at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def message(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionResetError("the engine closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a message")
        return message


def _reply(reader: _Reader) -> dict[str, Any]:
    """The engine's answer to the command (id 1): a result, an error, or a bye."""
    while True:
        message = reader.message()
        kind = message.get("type")
        if kind in ("result", "error") and message.get("id") in (1, None) or kind == "bye":
            return message


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    code = direct(argv)
    if code is not None:
        sys.exit(code)
    from .cli_run_direct import parse_run

    run = parse_run(argv)
    if run is not None:
        _run(run)
    from .cli import main as full_command_line

    full_command_line()


def _run(arguments: dict[str, Any]) -> None:
    """``tinyo run`` without the full command line: what it would do, exit status and all."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # ops' output reaches the log as it is written
    from .children import exit_now
    from .headless import run_headless

    try:
        code = run_headless(**arguments)
    except KeyboardInterrupt:  # before the engine took Ctrl-C over (loading the recipe): as the full one says it
        sys.stderr.write("\nAborted!\n")
        code = 1
    exit_now(code)


if __name__ == "__main__":
    main()
