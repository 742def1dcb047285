"""Provides the store's records (a DES and a run as read back) and the encodings of its columns
(JSON lists, sets and traces written without the encoder's per-call set-up; ops pickled)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from .names import clean


@dataclass(frozen=True)
class StoredDES:
    """A DES row as loaded from the store."""

    id: str
    deps: frozenset[str]
    targs: frozenset[str]
    ops_desc: tuple[str, ...]
    ops_blob: bytes | None
    generator: str
    event: str
    state: str
    trace: dict[str, int] | None
    failed_trace: dict[str, int] | None
    forced: bool
    attempt: int = 1


@dataclass(frozen=True)
class RunRow:
    """A run as recorded."""

    id: int
    des_id: str
    attempt: int
    worker: str | None
    start: float | None
    end: float | None
    status: str
    error: str | None
    traceback: str | None
    output: str | None
    result: str | None = None


def stored_des(row: tuple[Any, ...]) -> StoredDES:
    return StoredDES(
        row[0], frozenset(json.loads(row[1])), frozenset(json.loads(row[2])), tuple(json.loads(row[3])),
        row[4], row[5] or "", row[6] or "", row[7], umap(row[8]), umap(row[9]), bool(row[10]), row[11],
    )


def jlist(values: Iterable[str]) -> str:
    """``json.dumps(list(values))`` for strings, without the encoder's per-call set-up (it runs per DES)."""
    return "[" + ", ".join(map(_jstr, values)) + "]"


def _jstr(name: str) -> str:
    """A name as a JSON string. ASCII escapes, except for a file name's undecodable bytes: they stay in it
    as themselves (stored as those bytes, see :mod:`tinyo.names`), so SQLite's json_each gives the same
    text as the name's own column (a ``\\udcff`` escape would come out as other bytes)."""
    if name.isascii() or clean(name):
        return encode_basestring_ascii(name)
    return json.dumps(name, ensure_ascii=False)


def jset(values: frozenset[str] | tuple[str, ...]) -> str:
    if len(values) == 1:  # most DES read one document and write one: no sort, no join
        for name in values:
            return "[" + _jstr(name) + "]"
    return jlist(sorted(values))


def jmap(value: dict[str, int] | None) -> str | None:
    """``json.dumps(value, sort_keys=True)`` for a trace (document -> int version)."""
    if value is None:
        return None
    if len(value) == 1:  # a DES with one dep (most): no sort, no join
        for k, v in value.items():
            if type(v) is int:
                return "{" + _jstr(k) + ": " + str(v) + "}"
    if all(type(v) is int for v in value.values()):
        return "{" + ", ".join(f"{_jstr(k)}: {v}" for k, v in sorted(value.items())) + "}"
    return json.dumps(value, sort_keys=True)


def umap(text: str | None) -> dict[str, int] | None:
    return None if text is None else json.loads(text)


def dump_ops(ops: list[tuple[str, Any]]) -> bytes:
    """Serialise a DES's (op ref, Config) pairs for re-dispatch after a restart."""
    return pickle.dumps(ops, protocol=pickle.HIGHEST_PROTOCOL)


def load_ops(blob: bytes) -> list[tuple[str, Any]]:
    return pickle.loads(blob)
