"""Provides the control protocol: versioned, typed messages sent as JSON lines, facts as msgpack (never pickle).

A client opens with ``hello`` naming the protocol version; the engine answers ``welcome`` (its pid,
state file, recipe) or an ``error`` and closes. Then the client sends ``command``, ``query`` and
``subscribe`` requests, each with an id its ``result`` or ``error`` answer repeats. A subscriber's
answer is the engine's schema of facts (``factwire``); then it gets the engine's recent facts
(``history``), a ``live`` marker, then every fact as it is published, many to a ``facts`` frame: the
engine's one binary message, msgpack after a zero byte and its length (``factwire.facts_frames``), its
numbers exact and cheap to write; every other message, both ways, is a JSON line. When a subscriber reads
too slowly to keep up, the facts it could not take are counted and it is told so (``missed``) and should
ask its queries again. Every subscriber gets the same frames, encoded once for all of them: a console makes
events of the rows, ``tinyo events --json`` keys them and prints the lines ``tinyo run --json`` prints
(``FactReader.json_lines``), each in its own process. The engine reads JSON lines only, each capped at
``MAX_LINE`` bytes; a client reads what the engine sends with ``Incoming``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..arguments import ArgumentError, Spec, argument, check, field_spec, is_a
from . import factwire
from .paths import ControlError

PROTOCOL = 6
"""This protocol: facts as rows in msgpack frames (``factwire.facts_frames``), a field of any type
(``factwire.TEXTS``) as its JSON text, so a reader prints the JSON log's own lines from them. Since 6, an
``event_received`` row carries its document's new version, an ``op_finished`` its targets' and a
``des_registered`` the DES's first state (no ``document_updated`` or ``des_state`` beside them). A client naming
another version in its ``hello`` is refused in one ``error`` line."""
MAX_LINE = 1 << 20
"""The longest line the engine reads from a client (1 MiB); a longer one ends the connection."""


class ProtocolError(ControlError):
    """A message that is not valid in this protocol: not JSON, an unknown type, a wrong field."""


# ------------------------------------------------------------------------------------------ messages
@dataclass(frozen=True, slots=True)
class Hello:
    protocol: int
    client: str = ""


@dataclass(frozen=True, slots=True)
class Welcome:
    protocol: int
    pid: int
    db: str
    recipe: str
    state: str


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)


FORMS = ("rows",)
"""How a subscriber may get its facts: ``rows`` (``Facts`` frames), the one form every client reads (a console
makes events of them, ``tinyo events --json`` JSON lines), encoded once for all of them."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: int
    history: bool = True
    form: str = "rows"


@dataclass(frozen=True, slots=True)
class Result:
    id: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Error:
    message: str
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """Facts in the order the engine published them, as rows (``factwire``), in one msgpack frame: a hub
    pass's, or part of the history. ``seq``: the engine's number of the last of them (it numbers every fact
    it publishes)."""

    seq: int
    facts: list[Any]
    history: bool = False


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact of a ``Facts`` frame as a client yields it: the event (a dict for a kind not known here)."""

    fact: Any
    history: bool = False


@dataclass(frozen=True, slots=True)
class Live:
    """Every fact before this one was history; what follows is published as it happens."""


@dataclass(frozen=True, slots=True)
class Missed:
    """``count`` facts were not sent: the client read too slowly. Ask the queries again."""

    count: int


@dataclass(frozen=True, slots=True)
class Bye:
    """The engine is stopping (or stopped): the connection ends after this."""

    reason: str


Message = Hello | Welcome | Command | Query | Subscribe | Result | Error | Facts | Live | Missed | Bye

_TYPES: dict[str, type] = {
    "hello": Hello, "welcome": Welcome, "command": Command, "query": Query, "subscribe": Subscribe,
    "result": Result, "error": Error, "facts": Facts, "live": Live, "missed": Missed, "bye": Bye,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "str": (str,), "bool": (bool,), "dict[str, Any]": (dict,), "int | None": (int, type(None)),
    "list[Any]": (list,),
}

@functools.cache
def queries() -> dict[str, Spec]:
    """The queries a client may ask, derived from the engine's typed queries (``tinyo.queries``): their
    names, and their arguments (the fields) with their types, defaults and bounds."""
    from .. import queries as typed

    return typed.specs()


@functools.cache
def commands() -> dict[str, Spec]:
    """The commands a client may send, derived from the engine's typed requests (``messages.Request``) and
    their wire forms: the arguments are the fields (renamed or replaced as the form says), with their
    types and defaults. Worked out on first use: a client that only sends need not import them."""
    import typing

    from .. import messages

    table: dict[str, Spec] = {}
    for cls in typing.get_args(messages.Request):
        wire: messages.Wire = cls.wire
        renamed, replaced = dict(wire.renamed), {f: (a, t, d) for f, a, t, d in wire.replaced}
        spec: Spec = {}
        for name, arg in field_spec(cls).items():
            if name in replaced:
                new_name, kind, default = replaced[name]
                spec[new_name] = argument(kind, default)
            else:
                spec[renamed.get(name, name)] = arg
        if table.setdefault(wire.name, spec) != spec:  # two typed commands, one wire form: one set of arguments
            raise TypeError(f"{cls.__name__}: wire command {wire.name!r} has other arguments than another's")
    return table


def check_args(kind: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments of command or query ``name``, checked and completed with defaults; ProtocolError
    naming the request and the argument otherwise."""
    table = commands() if kind == "command" else queries()
    try:
        return check(kind, name, table.get(name), args, table)
    except ArgumentError as exc:
        raise ProtocolError(str(exc)) from None


# ------------------------------------------------------------------------------------------ encoding
def encode(message: Message) -> bytes:
    """One message as a JSON line; a ``Facts`` (of events or their rows) as its msgpack frame(s), as the hub
    sends them."""
    if isinstance(message, Facts):
        batch = [value if isinstance(value, list) else factwire.packed_rows([value])[0] for value in message.facts]
        return b"".join(frame for frame, _ in factwire.facts_frames(message.seq, batch, message.history))
    data: dict[str, Any] = {"type": _NAMES[type(message)]}
    for f in dataclasses.fields(message):
        data[f.name] = getattr(message, f.name)
    return factwire.utf8(factwire.dumps(data)) + b"\n"


def decode_reply(data: bytes) -> Message:
    """One message from the engine: a whole facts frame, or a JSON line (``decode``). A ``Facts`` keeps its rows
    as they came (``factwire.FactReader`` makes them events, by the schema its subscription was answered with)."""
    if data[:1] != _FRAME:
        return decode(data)
    if len(data) < _HEAD or factwire.FRAME_HEAD.unpack_from(data)[1] != len(data) - _HEAD:
        raise ProtocolError("a facts frame of the wrong length")
    return _facts(memoryview(data)[_HEAD:])


def _facts(payload: memoryview) -> Facts:
    """A facts frame's payload (after its head) as its message."""
    try:
        seq, history, rows = factwire.unpack_frame(payload)
    except ValueError as exc:
        raise ProtocolError(f"unreadable facts: {exc}") from None
    return Facts(seq, rows, history)


def decode(line: bytes) -> Message:
    """One JSON line (its newline optional) as a message; ProtocolError naming what is wrong otherwise. All
    the engine reads from a client (a facts frame is not JSON: refused here)."""
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # a line of "[": nested past the parser
        raise ProtocolError(f"not a JSON line ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None or cls is Facts:  # facts come in frames only
        raise ProtocolError(f"unknown message type {kind!r} (known: {', '.join(sorted(_TYPES))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{kind}: missing field {f.name!r}")
            continue
        value = data[f.name]
        types = _FIELD_TYPES.get(str(f.type))
        if types is not None and not is_a(value, types):
            raise ProtocolError(f"{kind}: field {f.name!r} must be {f.type}, got {type(value).__name__}")
        values[f.name] = value
    return cls(**values)


_FRAME = bytes([factwire.FRAME])
_HEAD = factwire.FRAME_HEAD.size


class Incoming:
    """Splits what an engine sends into its messages (JSON lines and facts frames), as it comes in. A JSON line
    longer than ``limit`` bytes, or a facts frame longer than ``frame_limit`` (``factwire.FRAME_MAX`` at most:
    a frame read makes many times its size in objects), ends the reading (ProtocolError) before it is held."""

    def __init__(self, limit: int, frame_limit: int = factwire.FRAME_MAX) -> None:
        self.limit = limit
        self.frame_limit = min(limit, frame_limit)
        self._buffer = bytearray()
        self._scanned = 0
        """How much of the buffer's start (a JSON line's, cut short) holds no newline: not searched again."""
        self._error: ProtocolError | None = None

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk

    def messages(self) -> deque[Message]:
        """The whole messages received so far, in order; what is left is the start of the next. What cannot be
        read raises ProtocolError, after the messages before it have been returned (at the next call)."""
        if self._error is not None:
            raise self._error
        buffer, out, start = self._buffer, deque(), 0
        try:
            while start < len(buffer):
                if buffer[start] == factwire.FRAME:
                    if len(buffer) - start < _HEAD:
                        break
                    end = start + _HEAD + factwire.FRAME_HEAD.unpack_from(buffer, start)[1]
                    if end - start > self.frame_limit:
                        raise ProtocolError("the engine sent a message too long to read")
                    if end > len(buffer):
                        break
                    # read in place, no copy: both views released before the buffer shrinks
                    with memoryview(buffer) as view, view[start + _HEAD:end] as payload:
                        out.append(_facts(payload))
                else:
                    end = buffer.find(b"\n", start + self._scanned)
                    if end < 0:
                        if len(buffer) - start > self.limit:
                            raise ProtocolError("the engine sent a message too long to read")
                        self._scanned = len(buffer) - start
                        break
                    self._scanned = 0
                    # json.loads reads a bytearray as it is
                    out.append(decode(buffer[start:end]))  # type: ignore[arg-type]
                    end += 1
                start = end
        except ProtocolError as exc:
            if not out:
                raise
            self._error = exc  # the stream cannot go on past it: said at the next call
        finally:
            del buffer[:start]
        return out
