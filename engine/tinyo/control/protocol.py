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
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from operator import attrgetter
from typing import Any

from .. import events as ev
from ..groups import GroupSummary
from ..names import json_escaped
from .paths import ControlError

PROTOCOL = 1
MAX_LINE = 1 << 20
"""The longest line the engine reads from a client (1 MiB); a longer one ends the connection."""
LIST_MAX = 5000
"""The most items a query may ask for (documents, names, ids): an answer stays a few MB at most."""


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

# A request's arguments: name -> (accepted types, default); no default means required.
_REQUIRED = object()
COMMANDS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "inject": {"event": ((str,), _REQUIRED)},
    "fire": {"timer": ((str,), _REQUIRED)},
    "rerun": {"target": ((str,), _REQUIRED), "downstream": ((bool,), False)},
    "pause": {},
    "resume": {},
    "cancel": {"run_id": ((int,), _REQUIRED)},
    "rescan": {},
    "stop": {"now": ((bool,), False)},
}
QUERIES: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "stats": {},
    "explain": {"name": ((str,), _REQUIRED)},
    "des_details": {"des_id": ((str,), _REQUIRED)},
    "documents": {"prefix": ((str, type(None)), None), "limit": ((int,), 1000)},
    "groups_summary": {},
    "group_members": {"pattern": ((str,), _REQUIRED), "offset": ((int,), 0), "limit": ((int,), 200)},
    "locate": {"name": ((str,), _REQUIRED)},
    "doc_infos": {"names": ((list,), _REQUIRED)},
    "des_infos": {"ids": ((list,), _REQUIRED)},
    "workers": {},
    "clients": {},
    "find_documents": {"pattern": ((str,), _REQUIRED), "regex": ((bool,), False), "limit": ((int,), 1)},
}


def check_args(kind: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments of command or query ``name``, checked and completed with defaults."""
    table = COMMANDS if kind == "command" else QUERIES
    spec = table.get(name)
    if spec is None:
        raise ProtocolError(f"unknown {kind} {name!r} (known: {', '.join(sorted(table))})")
    unknown = set(args) - set(spec)
    if unknown:
        raise ProtocolError(f"{kind} {name}: unknown argument(s) {', '.join(sorted(map(repr, unknown)))}")
    out = {}
    for arg, (types, default) in spec.items():
        if arg not in args:
            if default is _REQUIRED:
                raise ProtocolError(f"{kind} {name}: missing argument {arg!r}")
            out[arg] = default
            continue
        value = args[arg]
        if not _is(value, types):
            raise ProtocolError(f"{kind} {name}: argument {arg!r} must be {'/'.join(t.__name__ for t in types)}, "
                                f"got {type(value).__name__}")
        if isinstance(value, int) and not isinstance(value, bool) and arg in ("limit", "offset"):
            if not 0 <= value <= (LIST_MAX if arg == "limit" else 1 << 62):
                raise ProtocolError(f"{kind} {name}: {arg} must be 0..{LIST_MAX if arg == 'limit' else 'big'}, got {value}")
        if isinstance(value, list):
            if len(value) > LIST_MAX or not all(isinstance(v, str) for v in value):
                raise ProtocolError(f"{kind} {name}: {arg} must be a list of at most {LIST_MAX} strings")
        out[arg] = value
    return out


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
    cls = _FACTS.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return data
    values = {}
    try:
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, ann = data[f.name], str(f.type)
            if ann.startswith("frozenset"):
                value = frozenset(value)
            elif ann.startswith("tuple[GroupSummary"):
                value = tuple(GroupSummary(g["pattern"], g["count"], g["first"],
                                           tuple((s, n) for s, n in g["states"])) for g in value)
            elif ann.startswith("tuple"):
                value = tuple(value)
            values[f.name] = value
        return cls(**values)
    except (TypeError, KeyError, ValueError):
        return data
