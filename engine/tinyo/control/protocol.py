"""Provides the control protocol: versioned, typed messages sent as JSON lines (never pickle).

A client opens with ``hello`` naming the protocol version; the engine answers ``welcome`` (its pid,
state file, recipe) or an ``error`` and closes. Then the client sends ``command``, ``query`` and
``subscribe`` requests, each with an id its ``result`` or ``error`` answer repeats. A subscriber gets
the engine's recent facts (``history``), a ``live`` marker, then every fact as it is published; when
it reads too slowly to keep up, the facts it could not take are counted and it is told so
(``missed``) and should ask its queries again. Lines are capped at ``MAX_LINE`` bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from operator import attrgetter
from typing import Any

from .. import events as ev
from ..arguments import ArgumentError, Spec, argument, check, field_spec
from ..groups import GroupSummary
from ..names import json_escaped
from .paths import ControlError

PROTOCOL = 1
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


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: int
    history: bool = True


@dataclass(frozen=True, slots=True)
class Result:
    id: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Error:
    message: str
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    seq: int
    fact: Any
    """A bus event (a dict on the wire; ``decode`` makes it the event again, or keeps an unknown one a dict)."""
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


Message = Hello | Welcome | Command | Query | Subscribe | Result | Error | Fact | Live | Missed | Bye

_TYPES: dict[str, type] = {
    "hello": Hello, "welcome": Welcome, "command": Command, "query": Query, "subscribe": Subscribe,
    "result": Result, "error": Error, "fact": Fact, "live": Live, "missed": Missed, "bye": Bye,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "str": (str,), "bool": (bool,), "dict[str, Any]": (dict,), "int | None": (int, type(None)),
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


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number here
    return isinstance(value, types)


# ------------------------------------------------------------------------------------------ encoding
def _default(value: Any) -> Any:
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return repr(value)  # an op's result or a value JSON cannot carry: shown, never evaluated


def encode(message: Message) -> bytes:
    """One message as a JSON line."""
    data: dict[str, Any] = {"type": _NAMES[type(message)]}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, ev.BusEvent):
            value = value.to_json()
        data[f.name] = value
    return _utf8(json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":")) + "\n")


_FACT_HEAD = b'{"type":"fact","seq":'
_FACT_KEY = b',"fact":'
_FACTS_SHAPE: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]], str]] = {}


def _fact_dumps() -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, as ``tinyo run --json`` prints a
    fact (so ``tinyo events --json`` prints it as it came: ``fact_json``), by one C encoder made once:
    ``JSONEncoder.encode`` makes a new one per call, a third of the cost of a small fact."""
    if c_make_encoder is None or c_encode_basestring is None:
        return json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":")).encode
    encoder = c_make_encoder(None, _default, c_encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


_dumps = _fact_dumps()


def encode_fact(seq: int, event: ev.BusEvent, history: bool = False) -> bytes:
    """``encode(Fact(seq, event, history))`` without the generic walk: the hub encodes every fact."""
    cls = type(event)
    shape = _FACTS_SHAPE.get(cls)
    if shape is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        getter = attrgetter(*names) if len(names) > 1 else (lambda e, n=names[0]: (getattr(e, n),))
        shape = _FACTS_SHAPE[cls] = (("type", *names), getter, cls.kind)
    keys, values, kind = shape
    fact = _dumps(dict(zip(keys, (kind, *values(event)))))
    try:
        payload = fact.encode()
    except UnicodeEncodeError:  # a file name's undecodable bytes: JSON escapes \udcNN (see tinyo.names)
        payload = json_escaped(fact).encode()
    return b'%s%d,"history":%s%s%s}\n' % (_FACT_HEAD, seq, b"true" if history else b"false", _FACT_KEY, payload)


def fact_json(line: bytes) -> bytes | None:
    """The fact's JSON in a fact line that ``encode_fact`` wrote (without its newline), untouched; None
    for any other line. A follower printing facts as JSON needs no decoding and encoding again."""
    if not line.startswith(_FACT_HEAD) or not line.endswith(b"}"):
        return None
    start = line.find(_FACT_KEY, len(_FACT_HEAD))  # seq and history come first: the first one is it
    return line[start + len(_FACT_KEY):-1] if start > 0 else None


def _utf8(line: str) -> bytes:
    try:
        return line.encode()
    except UnicodeEncodeError:  # a file name's undecodable bytes: JSON escapes \udcNN (see tinyo.names)
        return json_escaped(line).encode()


def decode(line: bytes) -> Message:
    """One JSON line as a message; ProtocolError naming what is wrong otherwise."""
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not a JSON line ({exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "fact":  # most of what a subscriber reads: checked without the generic walk
        seq, fact, history = data.get("seq"), data.get("fact"), data.get("history", False)
        if type(seq) is int and type(history) is bool and "fact" in data:
            return Fact(seq, fact_from_json(fact) if isinstance(fact, dict) else fact, history)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r} (known: {', '.join(sorted(_TYPES))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{kind}: missing field {f.name!r}")
            continue
        value = data[f.name]
        types = _FIELD_TYPES.get(str(f.type))
        if types is not None and not _is(value, types):
            raise ProtocolError(f"{kind}: field {f.name!r} must be {f.type}, got {type(value).__name__}")
        values[f.name] = value
    if cls is Fact and isinstance(values.get("fact"), dict):
        values["fact"] = fact_from_json(values["fact"])
    return cls(**values)


# ------------------------------------------------------------------------------------------ facts
def _fact_types() -> dict[str, type[ev.BusEvent]]:
    # from the module, not BusEvent.__subclasses__(): a slots dataclass replaces its class, and the
    # replaced one may still be listed there
    return {obj.kind: obj for obj in vars(ev).values()
            if isinstance(obj, type) and issubclass(obj, ev.BusEvent) and obj is not ev.BusEvent}


_FACTS = _fact_types()


def fact_from_json(data: dict[str, Any]) -> ev.BusEvent | dict[str, Any]:
    """A bus event back from its JSON form; a fact this version does not know stays a dict."""
    fields = _FACT_READERS.get(data.get("type"))  # type: ignore[arg-type]
    if fields is None:
        return data
    cls, readers = fields
    values = {}
    try:
        for name, read in readers:
            if name in data:
                value = data[name]
                values[name] = value if read is None else read(value)
        return cls(**values)
    except (TypeError, KeyError, ValueError):
        return data


def _groups(value: Any) -> tuple[GroupSummary, ...]:
    return tuple(GroupSummary(g["pattern"], g["count"], g["first"], tuple((s, n) for s, n in g["states"]))
                 for g in value)


def _reader(annotation: str) -> Callable[[Any], Any] | None:
    """How a field's JSON value becomes its Python value (None: as it is)."""
    if annotation.startswith("frozenset"):
        return frozenset
    if annotation.startswith("tuple[GroupSummary"):
        return _groups
    if annotation.startswith("tuple"):
        return tuple
    return None


_FACT_READERS: dict[str, tuple[type[ev.BusEvent], tuple[tuple[str, Callable[[Any], Any] | None], ...]]] = {
    kind: (cls, tuple((f.name, _reader(str(f.type))) for f in dataclasses.fields(cls)))
    for kind, cls in _FACTS.items()
}
"""Per fact kind: its class and, per field, how its JSON value is read (worked out once, not per fact)."""
