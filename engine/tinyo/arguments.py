"""Provides the arguments of a typed request (a command or a query) worked out from its dataclass fields,
and the check of the arguments a caller gives: known, of the field's type, within the field's bounds.

One check serves the control socket (``control.protocol.check_args``, on JSON values) and the engine
in-process (``queries.checked``), so a bad request reads the same wherever it is asked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from .errors import TinyoError

REQUIRED: Any = object()
"""The default of an argument that must be given."""
MOST = "most"
"""Field metadata: the largest value of a count (from 0), or the most items of a list."""


class ArgumentError(TinyoError):
    """A request that is not valid: an unknown name, a missing, unknown or ill-typed argument, a count out of range."""


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument of a request: the types it may have, its default, and its bound (``MOST``)."""

    types: tuple[type, ...]
    default: Any = REQUIRED
    most: int | None = None
    items: type | None = None
    """For a list: the type of its items (a list crosses a socket as JSON, a tuple in-process)."""


Spec = dict[str, Argument]


def argument(hint: Any, default: Any = REQUIRED, most: int | None = None) -> Argument:
    """The argument a field of type ``hint`` makes (``str``, ``int``, ``str | None``, ``tuple[str, ...]``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = tuple(type(None) if a is type(None) else (typing.get_origin(a) or a) for a in typing.get_args(hint))
        return Argument(kinds, default, most)
    if origin in (tuple, list):
        item = typing.get_args(hint)[0] if typing.get_args(hint) else str
        return Argument((list, tuple), default, most, item)
    return Argument((origin or hint,), default, most)


def field_spec(cls: type) -> Spec:
    """The arguments of dataclass ``cls``: its fields, their types, defaults and bounds."""
    hints = typing.get_type_hints(cls)
    return {f.name: argument(hints[f.name], REQUIRED if f.default is dataclasses.MISSING else f.default,
                             f.metadata.get(MOST))
            for f in dataclasses.fields(cls)}


def check(kind: str, name: str, spec: Spec | None, args: dict[str, Any],
          known: typing.Iterable[str] = ()) -> dict[str, Any]:
    """The arguments of ``kind`` ``name`` (``spec``; None: no such one, ``known`` lists those there are),
    checked and completed with defaults; ArgumentError naming the request and the argument otherwise."""
    if spec is None:
        raise ArgumentError(f"unknown {kind} {name!r} (known: {', '.join(sorted(known))})")
    unknown = set(args) - set(spec)
    if unknown:
        raise ArgumentError(f"{kind} {name}: unknown argument(s) {', '.join(sorted(map(repr, unknown)))} "
                            f"(its arguments: {', '.join(spec) or 'none'})")
    out = {}
    for arg, want in spec.items():
        if arg not in args:
            if want.default is REQUIRED:
                raise ArgumentError(f"{kind} {name}: missing argument {arg!r}")
            out[arg] = want.default
            continue
        value = args[arg]
        if not is_a(value, want.types):
            names = "/".join("None" if t is type(None) else "list" if t is tuple else t.__name__
                             for t in want.types if not (t is tuple and list in want.types))
            raise ArgumentError(f"{kind} {name}: argument {arg!r} must be {names}, got {type(value).__name__}")
        if want.items is not None:
            if want.most is not None and len(value) > want.most:
                raise ArgumentError(f"{kind} {name}: argument {arg!r} must be a list of at most {want.most} "
                                    f"items, got {len(value)}")
            for item in value:
                if not is_a(item, (want.items,)):
                    raise ArgumentError(f"{kind} {name}: argument {arg!r} must be a list of {want.items.__name__}, "
                                        f"got an item {item!r:.50} ({type(item).__name__})")
            value = tuple(value)
        elif want.most is not None and isinstance(value, int) and not 0 <= value <= want.most:
            raise ArgumentError(f"{kind} {name}: argument {arg!r} must be 0..{want.most}, got {value}")
        out[arg] = value
    return out


def is_a(value: Any, kinds: tuple[type, ...]) -> bool:
    """``isinstance``, but a bool is no number here (JSON true is not 1)."""
    if isinstance(value, bool) and bool not in kinds:
        return False
    if isinstance(value, int) and not isinstance(value, bool) and float in kinds:
        return True
    return isinstance(value, kinds)
