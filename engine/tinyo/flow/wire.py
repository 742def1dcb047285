"""Provides how chunks of rows travel between the flow's process and its worker processes.

Unpickling a list of dicts rebuilds every dict key by key, which costs more than the work of many
steps. So a chunk whose rows all have the same fields in the same order (the usual case: rows of
one CSV or one query) travels *compactly*: the field names once, then one tuple of values per row,
marshalled (``marshal`` handles the plain types rows hold, with no per-object memo); the receiver
rebuilds the dicts with ``dict(zip(names, values))`` in C. Any other chunk (mixed fields, values
marshal cannot write such as dates or decimals) is pickled whole. Both ends are this process and its
own worker: nothing read here comes from outside.
"""

from __future__ import annotations

import marshal
import pickle
from typing import Any

_COMPACT = b"C"
_PICKLED = b"P"


def encode(rows: list[dict[str, Any]]) -> bytes:
    """One chunk as bytes: compact when every row has the first row's fields in its order."""
    if rows:
        names = tuple(rows[0])
        width = len(names)
        values = []
        append = values.append
        for row in rows:
            if len(row) != width or tuple(row) != names:
                break
            append(tuple(row.values()))
        else:
            try:
                return _COMPACT + marshal.dumps((names, values))
            except ValueError:
                pass  # a value marshal cannot write: pickle the chunk
    return _PICKLED + pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> list[dict[str, Any]]:
    """The chunk ``encode`` made."""
    body = memoryview(data)[1:]
    if data[:1] == _COMPACT:
        names, values = marshal.loads(body)
        return [dict(zip(names, row)) for row in values]
    return pickle.loads(body)  # noqa: S301 - written by this flow's own worker process
