"""Provides the client side of the control channel: find the engine serving a state file and talk to it."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from typing import Any

from .factwire import FactReader
from .paths import ControlError, socket_path, state_key
from .protocol import (
    PROTOCOL, Bye, Command, Error, Fact, Facts, Hello, Live, Message, Missed, Query, Result, Subscribe, Welcome,
    decode, encode,
)

REPLY_LINE_MAX = 256 << 20
"""The longest line read from an engine (the engine is the user's own; this only stops a runaway)."""


class NotRunning(ControlError):
    """No engine answers on the state file's control socket."""


class EngineStopping(ControlError):
    """The engine answered, but it is stopping: it takes no new client (its process ends soon)."""


class EngineGone(ControlError):
    """The engine closed the connection (it stopped, or refused this client)."""


class ControlClient:
    """A connection to the engine serving one state file. Not thread-safe: one thread uses it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self.welcome: Welcome | None = None
        self.pid = 0

    @classmethod
    def connect(cls, db_path: str | os.PathLike[str], client: str = "tinyo", timeout: float | None = 30.0) -> ControlClient:
        """Connect and say hello; NotRunning when nothing listens there (no socket, or a stale one)."""
        path = socket_path(db_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise NotRunning(f"no tinyo engine is running on {state_key(db_path)}") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"{path}: cannot connect to the engine ({exc.strerror or exc})") from exc
        self = cls(sock)
        try:
            self._write(Hello(PROTOCOL, client))
            reply = self.receive()
        except (OSError, EngineGone) as exc:
            sock.close()
            raise NotRunning(f"the engine on {state_key(db_path)} did not answer ({exc})") from None
        if isinstance(reply, Bye):
            sock.close()
            raise EngineStopping(f"the engine on {state_key(db_path)} is stopping")
        if isinstance(reply, Error):
            sock.close()
            raise ControlError(f"the engine on {state_key(db_path)} refused: {reply.message}")
        if not isinstance(reply, Welcome):
            sock.close()
            raise ControlError(f"the engine on {state_key(db_path)} answered {type(reply).__name__} to hello")
        sock.settimeout(None)
        self.welcome, self.pid = reply, reply.pid
        return self

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading this connection
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def command(self, name: str, /, **args: Any) -> None:
        """Send a command; ControlError with the engine's message if it refused it."""
        self._request(Command(next(self._ids), name, args))

    def query(self, name: str, /, **args: Any) -> Any:
        """Ask a query; its answer as plain JSON data (dicts, lists)."""
        return self._request(Query(next(self._ids), name, args))

    def ask(self, query: Any) -> Any:
        """Ask a typed query (``tinyo.queries``); its answer in the engine's own types."""
        from ..queries import arguments

        return query.decode(self.query(query.wire, **arguments(query)))

    def _request(self, message: Command | Query) -> Any:
        self._write(message)
        while True:
            reply = self.receive()
            if isinstance(reply, Result) and reply.id == message.id:
                return reply.value
            if isinstance(reply, Error) and reply.id in (message.id, None):
                raise ControlError(reply.message)
            if isinstance(reply, Bye):
                raise EngineGone(f"the engine closed the connection: {reply.reason}")

    def subscribe(self, history: bool = True) -> Iterator[Fact | Live | Missed | Bye]:
        """The engine's recent facts (``history``), a Live marker, then facts as they come, one at a time;
        ends after a Bye or when the connection closes."""
        for message in self.subscribe_batches(history):
            if isinstance(message, Facts):
                for fact in message.facts:
                    yield Fact(fact, message.history)
            else:
                yield message

    def subscribe_batches(self, history: bool = True) -> Iterator[Facts | Live | Missed | Bye]:
        """``subscribe``'s stream with the facts in the batches they came in: each ``Facts`` carries events
        (a dict for a kind not known here), made by the schema the engine answered the subscription with."""
        message = Subscribe(next(self._ids), history)
        self._write(message)
        reader = FactReader()
        while True:
            try:
                reply = self.receive()
            except EngineGone:
                return
            if isinstance(reply, Facts):
                yield Facts(reply.seq, reader.events(reply.facts), reply.history)
            elif isinstance(reply, (Live, Missed)):
                yield reply
            elif isinstance(reply, Bye):
                yield reply
                return
            elif isinstance(reply, Result) and reply.id == message.id:
                reader = FactReader(subscribed_schema(reply.value))
            elif isinstance(reply, Error) and reply.id in (message.id, None):
                raise ControlError(reply.message)

    def subscribe_json(self, history: bool = True) -> Iterator[list[bytes | Live | Missed | Bye]]:
        """``subscribe``'s stream for a printer, as it comes in: per read from the socket, a list of the facts'
        JSON lines (``bytes``, what ``tinyo run --json`` prints for them, made here from their rows by the schema
        the engine answered with: ``FactReader.json_lines``) and the other messages (``Live``, ``Missed``,
        ``Bye``), in their order; ends after a Bye or when the connection closes."""
        message = Subscribe(next(self._ids), history)
        self._write(message)
        reader = FactReader()
        buffer = self._buffer
        while True:
            out: list[bytes | Live | Missed | Bye] = []
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                reply = decode(buffer[start:end])  # type: ignore[arg-type]  # json.loads reads a bytearray as it is
                start = end + 1
                if isinstance(reply, Facts):
                    out.append(reader.json_lines(reply.facts))
                elif isinstance(reply, (Live, Missed, Bye)):
                    out.append(reply)
                    if isinstance(reply, Bye):
                        del buffer[:start]
                        yield out
                        return
                elif isinstance(reply, Result) and reply.id == message.id:
                    reader = FactReader(subscribed_schema(reply.value))
                elif isinstance(reply, Error) and reply.id in (message.id, None):
                    raise ControlError(reply.message)
            del buffer[:start]
            if out:
                yield out
            if len(buffer) > REPLY_LINE_MAX:
                raise ControlError("the engine sent a line too long to read")
            try:
                chunk = self._sock.recv(1 << 18)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return
            buffer += chunk

    # ------------------------------------------------------------------ lines
    def _write(self, message: Message) -> None:
        try:
            self._sock.sendall(encode(message))
        except (BrokenPipeError, ConnectionResetError):
            raise EngineGone("the engine closed the connection") from None

    def receive(self) -> Message:
        """The next message from the engine; EngineGone at the end of the stream."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return decode(line)
            if len(self._buffer) > REPLY_LINE_MAX:
                raise ControlError("the engine sent a line too long to read")
            try:
                chunk = self._sock.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EngineGone("the engine closed the connection")
            self._buffer += chunk


def subscribed_schema(value: Any) -> Any:
    """The schema of facts in the engine's answer to a subscription (None: this side's own)."""
    return value.get("facts") if isinstance(value, dict) else None


def running_engine(db_path: str | os.PathLike[str], client: str = "tinyo") -> ControlClient | None:
    """A connection to the engine serving ``db_path``, or None if none runs there."""
    try:
        return ControlClient.connect(db_path, client)
    except NotRunning:
        return None
