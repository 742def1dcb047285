"""Provides the client side of the control channel: find the engine serving a state file and talk to it."""

from __future__ import annotations

import gc
import itertools
import os
import socket
from collections import deque
from collections.abc import Iterator
from typing import Any

from .factwire import FactReader
from .paths import ControlError, socket_path, state_key
from .protocol import (
    PROTOCOL, Bye, Command, Error, Fact, Facts, Hello, Incoming, Live, Message, Missed, ProtocolError, Query, Result,
    Subscribe, Welcome, encode,
)

JsonItem = bytes | Live | Missed | Bye
"""What ``subscribe_json`` yields lists of: the facts' JSON lines (``bytes``) and the other messages."""
REPLY_LINE_MAX = 256 << 20
"""The longest message read from an engine (the engine is the user's own; this only stops a runaway)."""


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
        self._incoming = Incoming(REPLY_LINE_MAX)
        self._pending: deque[Message] = deque()
        self._ids = itertools.count(1)
        self.welcome: Welcome | None = None
        self.pid = 0

    @classmethod
    def connect(cls, db_path: str | os.PathLike[str], client: str = "tinyo",
                timeout: float | None = 30.0) -> ControlClient:
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
        except ControlError:  # an answer that cannot be read
            sock.close()
            raise
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
                reader = subscribed_reader(reply.value)
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
        while True:
            # A read's rows and lines all die before the next read: the collector, which would run every 700
            # objects made and find nothing to free, waits until they are gone (~7% of a follower's CPU).
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._pending.extend(self._messages())  # what cannot be read raises here, after what came before it
                got = bool(self._pending)
                out, reader, ended = self._json_items(message.id, reader)
            finally:
                if collecting:
                    gc.enable()
            if not got:
                if not self._read(1 << 18):
                    return
                continue
            if out:
                yield out
            if ended:
                return

    def _json_items(self, sub_id: int, reader: FactReader) -> tuple[list[JsonItem], FactReader, bool]:
        """The messages received (``subscribe_json``): the facts' JSON lines and the other messages in their
        order, the reader for the facts that follow, and whether the engine said bye."""
        out: list[JsonItem] = []
        while self._pending:
            reply = self._pending.popleft()
            if isinstance(reply, Facts):
                out.append(reader.json_lines(reply.facts))
            elif isinstance(reply, (Live, Missed, Bye)):
                out.append(reply)
                if isinstance(reply, Bye):
                    return out, reader, True
            elif isinstance(reply, Result) and reply.id == sub_id:
                reader = subscribed_reader(reply.value)
            elif isinstance(reply, Error) and reply.id in (sub_id, None):
                raise ControlError(reply.message)
        return out, reader, False

    # ------------------------------------------------------------------ messages
    def _write(self, message: Message) -> None:
        try:
            self._sock.sendall(encode(message))
        except (BrokenPipeError, ConnectionResetError):
            raise EngineGone("the engine closed the connection") from None

    def receive(self) -> Message:
        """The next message from the engine; EngineGone at the end of the stream."""
        while not self._pending:
            self._pending = self._messages()
            if not self._pending and not self._read(1 << 16):
                raise EngineGone("the engine closed the connection")
        return self._pending.popleft()

    def _messages(self) -> deque[Message]:
        try:
            return self._incoming.messages()
        except ProtocolError as exc:
            raise ControlError(f"the engine sent what cannot be read: {exc}") from None

    def _read(self, size: int) -> bool:
        """Take what the socket has (up to ``size`` bytes, waiting for some); False at the end of the stream."""
        try:
            chunk = self._sock.recv(size)
        except ConnectionResetError:
            chunk = b""
        self._incoming.feed(chunk)
        return bool(chunk)


def subscribed_reader(value: Any) -> FactReader:
    """The reader of the facts that follow the engine's answer to a subscription (its schema, its fields sent
    as their JSON text)."""
    if not isinstance(value, dict):
        return FactReader()
    return FactReader(value.get("facts"), value.get("texts"))


def running_engine(db_path: str | os.PathLike[str], client: str = "tinyo") -> ControlClient | None:
    """A connection to the engine serving ``db_path``, or None if none runs there."""
    try:
        return ControlClient.connect(db_path, client)
    except NotRunning:
        return None
