"""Provides JSON lines made from rows of values, as ``tinyo run --json`` prints facts: per row ``[kind, value,
...]`` the line ``{"type":kind,"key":value,...}``, each byte as ``json.dumps`` writes the row's keyed dict
(compact, ``ensure_ascii=False``, what JSON cannot carry shown by ``str``), without a dict per row or a key
encoded per value.

A batch's values are encoded by one call of the C encoder, as one flat list whose items are separated by
``\x00`` in place of the comma: no JSON text holds that character raw (a string's control characters are
escaped), so the list's text split at it gives each value's text when no value holds the separator itself,
and the batch's lines are its kinds' lines (the keys' text, made once per kind) filled in by one ``%``. A
list, a set or a dict of two or more items does hold the separator, and adds to the count of pieces (each
value gives one piece plus its own separators, so the count is right only when none does); then each
container of the batch is encoded alone, with the comma. Every step is a C call over the batch: no Python
frame per row or value. On a real burst's facts, about 1.8 us a fact against 2.6 for a dict a row (the C
encoder on the values alone takes 1.1: a float's shortest digits are its dearest part, hence the times
encoded once each, ``_stamps``).
"""

from __future__ import annotations

import json
from itertools import chain, compress, repeat
from json.encoder import c_encode_basestring, c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from operator import itemgetter, not_
from typing import Any

from ..names import json_escaped

SEPARATOR = "\x00"
CHUNK = 256
"""Rows made lines by one call: a burst's batch holds a thousand or more, and its values and texts made a chunk
at a time stay in the processor's cache (5% less CPU for the same bytes)."""


def _encoder(item_separator: str) -> Any:
    """The C encoder of ``json.dumps(ensure_ascii=False, separators=(item_separator, ":"), default=str)``; called
    as ``encoder(value, 0)``, it gives the text in pieces to join. None without the C encoder."""
    if c_make_encoder is None or c_encode_basestring is None:
        return None
    return c_make_encoder(None, str, c_encode_basestring, None, ":", item_separator, False, False, True)


_SPLIT = _encoder(SEPARATOR)
_WHOLE = _encoder(",")
_PLAIN = dict.fromkeys((str, int, float, bool, type(None)), False)
"""The types whose JSON text never holds a separator; any other value is taken for a container (at worst it
is encoded alone: the same text)."""
_KIND = itemgetter(0)
_STAMP = itemgetter(1)
_AFTER_STAMP = itemgetter(slice(2, None))
_FLOAT = {float}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False).encode
"""The encoder of a row alone: the C encoder's settings (a loop is a RecursionError, as in one call)."""


class Templates:
    """Per kind, the text of its line with ``%s`` in place of each value (``keys[kind]``: ``type`` and its fields,
    in the rows' order), and its rows' width. A kind whose keys repeat one (a dict keeps its last value) has
    width 0: no row fits it. ``alone``: the kinds whose rows hold many items in a value (a dict) every time,
    encoded a row at a time so they do not send their whole batch the slower way."""

    def __init__(self, keys: dict[str, tuple[str, ...]], alone: frozenset[str] = frozenset()) -> None:
        self.keys = keys
        self.alone = alone
        self.widths = {kind: len(names) if names and len(set(names)) == len(names) else 0
                       for kind, names in keys.items()}
        self.texts = {kind: "}\n{" + ",".join(encode_basestring(n).replace("%", "%%") + ":%s" for n in names)
                      for kind, names in keys.items()}
        self.stamped = {kind: "}\n{" + _twice(names[0]) + ":" + _twice(kind) + "," + _twice(names[1]) + ":%s"
                        + "".join("," + _twice(n) + ":%%s" for n in names[2:]) for kind, names in keys.items()
                        if len(names) >= 2}
        """The same with the kind written in and, for two ``%`` in turn, the time (the second value) a ``%s`` and
        the others a ``%%s`` (``_stamps``)."""


def _twice(name: str) -> str:
    return encode_basestring(name).replace("%", "%%%%")


def lines(batch: list[Any], templates: Templates) -> str:
    """The JSON lines of rows ``batch`` (each a list or a tuple, its kind first) keyed by ``templates``, with lone
    surrogates escaped (``json_escaped``). KeyError for a kind ``templates`` does not have; what the encoder
    refuses (a number past its digits, a loop) raises as ``json.dumps`` would. A row not as long as its kind's
    keys (or no C encoder) sends the batch the slow way: each row its dict, encoded alone. ``CHUNK`` rows at a time."""
    if len(batch) > CHUNK:
        return "".join([lines(batch[at:at + CHUNK], templates) for at in range(0, len(batch), CHUNK)])
    if not batch:
        return ""
    kinds = list(map(_KIND, batch))
    if _SPLIT is None or list(map(templates.widths.__getitem__, kinds)) != list(map(len, batch)):
        return _each_alone(batch, templates)
    if not templates.alone.isdisjoint(kinds):
        return _around_alone(batch, kinds, templates)
    stamps = _stamps(batch)
    if stamps is None:
        values = list(chain.from_iterable(batch))
        text = "".join(map(templates.texts.__getitem__, kinds))[2:] + "}\n"
    else:  # the kinds written in, the times in their places, and the other values' places left for the second %
        values = list(chain.from_iterable(map(_AFTER_STAMP, batch)))
        text = ("".join(map(templates.stamped.__getitem__, kinds))[2:] + "}\n") % tuple(stamps)
    pieces: Any = "".join(_SPLIT(values, 0))[1:-1].split(SEPARATOR)
    if len(pieces) != len(values):
        pieces = _containers_alone(values)
    return json_escaped(text % tuple(pieces))


def _stamps(batch: list[Any]) -> list[str] | None:
    """The text of each row's time (its second value), each distinct time encoded once: a float's shortest
    digits take the encoder longer than anything else in a row, and a burst's facts share their times (four
    or five rows a time). None unless every time is a float and at most half of them distinct (an int and a
    float, or 0.0 and -0.0, equal as keys and differ as text)."""
    try:
        stamps = list(map(_STAMP, batch))
        distinct = list(set(stamps))
    except (TypeError, IndexError):  # a time that is no key, a row of its kind alone
        return None
    if 2 * len(distinct) > len(stamps) or set(map(type, stamps)) != _FLOAT or 0.0 in distinct:
        return None
    texts = dict(zip(distinct, "".join(_SPLIT(distinct, 0))[1:-1].split(SEPARATOR)))
    return list(map(texts.__getitem__, stamps))


def _each_alone(batch: list[Any], templates: Templates) -> str:
    """Each row its dict (its keys zipped with its values), encoded alone."""
    return "".join([json_escaped(_dumps(dict(zip(templates.keys[row[0]], row)))) + "\n" for row in batch])


def _around_alone(batch: list[Any], kinds: list[str], templates: Templates) -> str:
    """The rows of the ``alone`` kinds each encoded alone, those between them by ``lines``."""
    texts = []
    start = 0
    for at in compress(range(len(batch)), map(templates.alone.__contains__, kinds)):
        texts += [lines(batch[start:at], templates), _each_alone(batch[at:at + 1], templates)]
        start = at + 1
    texts.append(lines(batch[start:], templates))
    return "".join(texts)


def _containers_alone(values: list[Any]) -> list[str]:
    """The text of each of ``values``: the plain ones (``_PLAIN``) by one call, split; the others each alone."""
    alone = list(map(_PLAIN.get, map(type, values), repeat(True)))
    plain = list(compress(values, map(not_, alone)))
    pieces = "".join(_SPLIT(plain, 0))[1:-1].split(SEPARATOR) if plain else []
    whole = map("".join, map(_WHOLE, compress(values, alone), repeat(0)))
    return list(map(next, map((iter(pieces), whole).__getitem__, alone)))
