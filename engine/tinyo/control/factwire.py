"""Provides the wire form of bus facts: each fact a row of its values, many rows in one msgpack frame.

A subscriber is told the engine's schema once (its ``subscribe`` answer): per fact kind, the field
names in order. Each fact then travels as a row ``[kind, value, ...]`` in that order, and the facts of
one hub pass go out in one ``facts`` frame made by one call of msgpack's C packer: no key is written or
read per fact, no float is formatted (a double travels as its 8 bytes, read back exactly), and a reader
builds each event from its values by position (``cls(*values)``). A reader whose own fields differ
(another tinyo speaking the same protocol) matches them by name; a kind it does not know stays a dict.
Values are what ``BusEvent.to_json`` gives: a set as a sorted list, a group summary as a dict, and a field
of any type (``TEXTS``: an op's result) as its JSON text, made as ``tinyo run --json`` makes it (a value
JSON cannot carry shown, ``str``): a reader keys a frame's rows and prints exactly the JSON log's lines
(``FactReader.json_lines``), so the engine encodes each fact once, in one form, for consoles and printers
alike. The JSON log puts the values of ``own_rows`` (its facts' own values) in its kinds' lines the same way
(``rows_json_text``, ``jsonrows``).
"""

from __future__ import annotations

import dataclasses
import json
import struct
import threading
from collections.abc import Callable
from itertools import compress
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from operator import attrgetter, call, itemgetter
from typing import Any

import msgpack

from .. import events as ev
from ..groups import GroupSummary
from ..names import json_escaped
from . import jsonrows

Row = list[Any]
FRAME_BYTES = 1 << 19
"""A facts frame longer than this (a batch of long tracebacks or output lines) is cut in two: what one
client's buffer takes at a time stays small beside its limit."""
FRAME_MAX = 32 << 20
"""The longest facts frame a client reads (``protocol.Incoming``): a fact alone longer than this is not sent
(the hub sends a notice in its place). Reading msgpack makes up to ~70 bytes of objects per byte (an empty
array is one byte), so this bounds what a client may be made to hold; the longest fact the engine makes
itself, an output line cut at a million characters, is at most 4 MiB."""


def default(value: Any) -> Any:
    """What JSON cannot carry as it is: a set as a sorted list, a dataclass as a dict, anything else shown
    (``repr``), never evaluated."""
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return repr(value)


def _make_dumps(fallback: Callable[[Any], Any]) -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=fallback)`` by one C encoder
    made once: ``JSONEncoder.encode`` makes a new one per call."""
    if c_make_encoder is None or c_encode_basestring is None:
        return json.JSONEncoder(default=fallback, ensure_ascii=False, separators=(",", ":")).encode
    encoder = c_make_encoder(None, fallback, c_encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


dumps = _make_dumps(default)
_dumps_shown = _make_dumps(str)
"""The facts' encoder (rows and JSON lines alike): what JSON cannot carry is shown (``str``), never evaluated
and never a failure; one encoder for both, so a row read back and keyed is encoded to the JSON log's very
bytes."""


def utf8(text: str) -> bytes:
    """JSON text as UTF-8; a file name's undecodable bytes (lone surrogates) as ``\\udcNN`` escapes."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json_escaped(text).encode()


def _fact_types() -> dict[str, type[ev.BusEvent]]:
    # from the module, not BusEvent.__subclasses__(): a slots dataclass replaces its class, and the
    # replaced one may still be listed there
    return {obj.kind: obj for obj in vars(ev).values()
            if isinstance(obj, type) and issubclass(obj, ev.BusEvent) and obj is not ev.BusEvent}


FACTS = _fact_types()
SCHEMA: dict[str, list[str]] = {kind: [f.name for f in dataclasses.fields(cls)] for kind, cls in FACTS.items()}
"""Per fact kind, its field names in the order of its rows (what a subscriber is told)."""


# ------------------------------------------------------------------------------------------ writing
def _groups_out(groups: tuple[GroupSummary, ...]) -> list[dict[str, Any]]:
    return [{"pattern": g.pattern, "count": g.count, "first": g.first, "states": g.states} for g in groups]


def _to_wire(annotation: str) -> Callable[[Any], Any] | None:
    if annotation.startswith("frozenset"):
        return sorted
    if annotation.startswith("tuple[GroupSummary"):
        return _groups_out
    return None


def _writer(cls: type[ev.BusEvent]) -> Callable[[ev.BusEvent], Any]:
    """The function making a fact of ``cls`` its row. For most kinds it is one ``attrgetter`` of the kind (a
    class attribute) and the fields: a row made in C, no Python frame per fact. The sets are sorted here, not
    in the encoder's fallback (a call back into Python per set)."""
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    special = [(i + 1, conv) for i, f in enumerate(fields) if (conv := _to_wire(str(f.type))) is not None]
    if not special and "kind" not in names:
        return attrgetter("kind", *names)
    getter = attrgetter(*names)
    kind = cls.kind
    if len(fields) == 1:
        one = getter
        getter = lambda event: (one(event),)  # noqa: E731
    if not special:
        head = (kind,)
        return lambda event: head + getter(event)

    def row(event: ev.BusEvent) -> Row:
        values = [kind, *getter(event)]
        for i, conv in special:
            values[i] = conv(values[i])
        return values

    return row


_WRITERS: dict[type, Callable[[ev.BusEvent], Any]] = {cls: _writer(cls) for cls in FACTS.values()}


def _row(event: ev.BusEvent) -> Any:
    """``event`` (of a class of fact defined elsewhere) as its row: ``(kind, value, ...)`` in its fields' order."""
    write = _WRITERS.get(type(event))
    if write is None:
        write = _WRITERS[type(event)] = _writer(type(event))
    return write(event)


# ------------------------------------------------------------------------------------------ frames
TEXTS: dict[str, list[str]] = {kind: [f.name for f in dataclasses.fields(cls) if str(f.type) == "Any"]
                               for kind, cls in FACTS.items()}
TEXTS = {kind: names for kind, names in TEXTS.items() if names}
"""Per fact kind, its fields of any type (an op's result), which travel as their JSON text (None as it is):
what msgpack and JSON show differently (bytes, a number past 64 bits, a key that is not a string, a set
inside) stays as ``tinyo run --json`` shows it, and a reader reads it as the JSON log's reader would."""


def _text(value: Any) -> str | None:
    return None if value is None else _dumps_shown(value)


def _packed_writer(cls: type[ev.BusEvent]) -> Callable[[ev.BusEvent], Any]:
    """The function making a fact of ``cls`` its row to pack: ``_writer``'s, but a set is left to the packer
    (which sorts it from C, ``pack``) and a field of any type is its JSON text (``TEXTS``). For most kinds
    (sets included) one ``attrgetter``: no Python frame per fact."""
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    texts = [i + 1 for i, f in enumerate(fields) if str(f.type) == "Any"]
    if texts:
        plain = _writer(cls)

        def row_with_texts(event: ev.BusEvent) -> Row:
            values = list(plain(event))
            for i in texts:
                values[i] = _text(values[i])
            return values

        return row_with_texts
    groups = any(str(f.type).startswith("tuple[GroupSummary") for f in fields)
    if groups or "kind" in names or len(names) == 1:
        return _writer(cls)  # the rare kinds: their row made in Python, their sets sorted there
    return attrgetter("kind", *names)


_PACKED_WRITERS: dict[type, Callable[[ev.BusEvent], Any]] = {cls: _packed_writer(cls) for cls in FACTS.values()}


def packed_rows(events: list[ev.BusEvent]) -> list[Any]:
    """Each of ``events`` as its row to pack (``facts_frames``), each fact's writer looked up and called from C."""
    try:
        return list(map(call, map(_PACKED_WRITERS.__getitem__, map(type, events)), events))
    except KeyError:  # a class of fact defined elsewhere: its sets sorted, its values as the JSON log shows them
        return [_PACKED_WRITERS[type(event)](event) if type(event) in _PACKED_WRITERS else _row(event)
                for event in events]


FRAME = 0
"""The first byte of a facts frame (a JSON line's is ``{``): then the frame's length (4 bytes, big-endian)
and the msgpack of ``[seq, history, rows]``."""
FRAME_HEAD = struct.Struct(">BI")
_PACKERS = threading.local()


def _shown(value: Any) -> Any:
    """What msgpack cannot carry: a set (a row's own) as a sorted list (shown if its items do not sort),
    anything else shown (``str``), as the JSON log shows it."""
    if isinstance(value, (frozenset, set)):
        try:
            return sorted(value)
        except TypeError:
            pass
    return str(value)


def pack(value: Any) -> bytes:
    """``value`` as msgpack. A row's sets (the only values of this engine's facts msgpack does not carry) are
    sorted by the packer's fallback, ``sorted`` itself (no Python frame); anything else it meets (a value of
    the wrong type in a field) or a string with lone surrogates (a file name's undecodable bytes, kept as
    they are: packing every string that way costs a third more) sends the whole the slow way, shown as the
    JSON log shows it. One packer per thread, reused."""
    packers = getattr(_PACKERS, "pair", None)
    if packers is None:
        packers = _PACKERS.pair = (msgpack.Packer(default=sorted),
                                   msgpack.Packer(default=_shown, unicode_errors="surrogatepass"))
    try:
        return packers[0].pack(value)
    except (TypeError, ValueError):  # UnicodeEncodeError included
        return packers[1].pack(value)


def facts_frames(seq: int, batch: list[Any], history: bool = False) -> list[tuple[bytes, int]]:
    """Rows ``batch`` (``packed_rows``) as one ``facts`` frame (more when it is long), each with how many facts
    it carries. ``seq``: the number of the last fact (the engine numbers them as it publishes)."""
    payload = pack([seq, history, batch])
    if len(payload) > FRAME_BYTES and len(batch) > 1:
        half = len(batch) // 2
        return facts_frames(seq - (len(batch) - half), batch[:half], history) + facts_frames(seq, batch[half:], history)
    if len(payload) > FRAME_MAX:
        raise ValueError(f"a fact of {len(payload)} bytes, past the {FRAME_MAX} a client reads")
    return [(FRAME_HEAD.pack(FRAME, len(payload)) + payload, len(batch))]


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"an extension type ({code}) where only plain values may be")


_JSON_KEYS = frozenset({int, float, bool, type(None)})
"""The map keys other than strings that JSON writes as a string: ``json.dumps({1: 2})`` is ``{"1":2}``."""


def _map(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """A map read: its keys strings, as the JSON log prints them (a number, a bool, None as ``json.dumps``
    writes it as a key); any other key (bytes, an array) is not a fact's: ValueError."""
    out = dict(pairs)
    if _STR.issuperset(map(type, out)):
        return out
    out = {}
    for key, value in pairs:
        if type(key) is not str:
            if type(key) not in _JSON_KEYS:
                raise ValueError(f"a map key of type {type(key).__name__}")
            key = json.dumps(key)
        out[key] = value
    return out


_STR = frozenset({str})


def unpack_frame(payload: bytes | memoryview) -> tuple[int, bool, list[Any]]:
    """A facts frame's payload (after its head) as (seq, history, rows); ValueError naming what is wrong. Only
    plain values are read: no extension type (not even msgpack's timestamp), map keys strings (a number's
    as the JSON log writes it, ``_map``), no string or array longer than the payload itself (msgpack's
    limits follow its length, which the reader bounds)."""
    try:
        data = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=False, object_pairs_hook=_map,
                               ext_hook=_no_ext, max_ext_len=0, unicode_errors="surrogatepass",
                               max_array_len=len(payload), max_map_len=len(payload) // 2)
    except Exception as exc:  # msgpack's errors have no common base: ValueError, TypeError, its own, ...
        raise ValueError(f"not a msgpack frame ({type(exc).__name__}: {exc})") from None
    if not (type(data) is list and len(data) == 3 and type(data[0]) is int and type(data[1]) is bool
            and type(data[2]) is list):
        raise ValueError("a facts frame must be [seq, history, rows]")
    return data[0], data[1], data[2]


# ------------------------------------------------------------------------------------------ JSON lines
_BETWEEN = '},{"type":"'
_NEWLINE = '}\n{"type":"'


def json_text(objects: list[dict[str, Any]]) -> str:
    """``objects`` (each with ``type`` as its first key) as JSON lines, one compact object a line, made by
    one call of the C encoder: the list's JSON with the comma between each two objects made a newline.
    That comma is followed by ``{"type":"``, which no JSON string holds (its quotes are escaped); a value
    that itself holds such objects in a list shows up in the count, and then each object is encoded alone."""
    if not objects:
        return ""
    text = _dumps_shown(objects)
    if text.count(_BETWEEN) == len(objects) - 1:
        text = text[1:-1].replace(_BETWEEN, _NEWLINE)
    else:
        text = "\n".join(map(_dumps_shown, objects))
    return json_escaped(text) + "\n"


KEYS: dict[str, tuple[str, ...]] = {kind: ("type", *names) for kind, names in SCHEMA.items()}
"""Per fact kind, the keys of the object ``tinyo run --json`` prints for it: ``type``, then its fields."""


ALONE = frozenset(kind for kind, cls in FACTS.items()
                  if any(str(f.type).startswith(("dict", "tuple[GroupSummary")) for f in dataclasses.fields(cls)))
"""The kinds whose rows hold a dict in a value every time (``jsonrows.Templates``): their lines made a row at a time."""
_TEMPLATES = jsonrows.Templates(KEYS, ALONE)


def rows_json_text(batch: list[Any]) -> str:
    """Rows of this engine's facts (``own_rows``) as the JSON lines ``tinyo run --json`` prints for them; KeyError
    for a row of a kind it does not have. The values are encoded by one C call and put in their kinds' lines
    (``jsonrows``)."""
    return jsonrows.lines(batch, _TEMPLATES)


_KIND = itemgetter(0)


def own_rows(events: list[ev.BusEvent]) -> list[Any]:
    """Each of ``events`` as its row; KeyError for an event of a class not in ``tinyo.events``. Each fact's
    writer is looked up and called from C: no Python frame per fact on the thread that hands a batch over."""
    return list(map(call, map(_WRITERS.__getitem__, map(type, events)), events))


def json_lines(events: list[ev.BusEvent]) -> str:
    """Each of ``events`` as the JSON line ``tinyo run --json`` prints for it (its ``to_json``, compact),
    the whole batch encoded by one C call."""
    try:
        return rows_json_text(own_rows(events))
    except KeyError:  # a class of fact defined elsewhere: its own to_json
        return json_text([event.to_json() for event in events])


# ------------------------------------------------------------------------------------------ reading
def _groups_in(value: Any) -> tuple[GroupSummary, ...]:
    return tuple(GroupSummary(g["pattern"], g["count"], g["first"], tuple((s, n) for s, n in g["states"]))
                 for g in value)


def _from_wire(annotation: str) -> Callable[[Any], Any] | None:
    """How a field's JSON value becomes its Python value (None: as it is)."""
    if annotation.startswith("frozenset"):
        return frozenset
    if annotation.startswith("tuple[GroupSummary"):
        return _groups_in
    if annotation.startswith("tuple"):
        return tuple
    return None


def _maker(cls: type[ev.BusEvent], names: tuple[str, ...]) -> Callable[[Row], ev.BusEvent]:
    """The function making a row of ``names`` (the engine's fields) an event of ``cls``."""
    fields = dataclasses.fields(cls)
    if tuple(f.name for f in fields) == names:  # the same fields: by position
        special = [(i, conv) for i, f in enumerate(fields) if (conv := _from_wire(str(f.type))) is not None]
        if not special:
            return lambda values: cls(*values[1:])

        def make(values: Row) -> ev.BusEvent:
            args = values[1:]
            for i, conv in special:
                args[i] = conv(args[i])
            return cls(*args)

        return make
    local = {f.name: _from_wire(str(f.type)) for f in fields}  # another version's fields: by name
    width = len(names) + 1

    def by_name(values: Row) -> ev.BusEvent:
        if len(values) != width:
            raise TypeError("a row of another width")
        args = {}
        for name, value in zip(names, values[1:]):
            if name in local:
                conv = local[name]
                args[name] = value if conv is None else conv(value)
        return cls(**args)

    return by_name


class FactReader:
    """Makes rows events again, by the schema the engine sent (its kinds and their fields in order)."""

    def __init__(self, schema: Any = None, texts: Any = None) -> None:
        schema = SCHEMA if schema is None else schema
        texts = TEXTS if texts is None else texts
        self._keys: dict[str, tuple[str, ...]] = {}
        self._makers: dict[str, Callable[[Row], Any]] = {}
        self._texts: dict[str, list[int]] = {}
        """Per kind, where in its rows a value comes as its JSON text (``TEXTS``)."""
        for kind, names in schema.items() if isinstance(schema, dict) else ():
            if not (isinstance(kind, str) and isinstance(names, list) and all(isinstance(n, str) for n in names)):
                continue  # a schema entry this side cannot read: its facts stay dicts
            self._keys[kind] = ("type", *names)
            cls = FACTS.get(kind)
            if cls is not None:
                self._makers[kind] = _maker(cls, tuple(names))
            text = texts.get(kind) if isinstance(texts, dict) else None
            if isinstance(text, list):
                self._texts[kind] = [names.index(n) + 1 for n in text if isinstance(n, str) and n in names]
        self._templates = jsonrows.Templates(self._keys, ALONE)
        """Per kind, the text of its lines, to put its rows' values in (``json_lines``; which kinds are made a row at
        a time is this engine's guess, right for any rows)."""

    def _read_texts(self, batch: list[Any]) -> list[Any]:
        """``batch`` with the values that came as their JSON text (``TEXTS``) read: the rows of such kinds with
        such a value copied (``batch`` itself when none has one, as in most batches: the rows of those kinds
        are found from C, and only they are looked at); a text that is not JSON stays as it came."""
        texts = self._texts
        try:
            picked: Any = list(compress(range(len(batch)), map(texts.__contains__, map(_KIND, batch))))
        except (KeyError, TypeError, IndexError):
            picked = range(len(batch))  # a row that is not a row: each looked at
        out = None
        for at in picked:
            values = batch[at]
            if not (type(values) is list and values and type(values[0]) is str and values[0] in texts):
                continue
            for i in texts[values[0]]:
                if i < len(values) and type(values[i]) is str:
                    if out is None:
                        out = list(batch)
                    if out[at] is values:
                        out[at] = values = list(values)
                    try:
                        values[i] = json.loads(values[i])
                    except (ValueError, RecursionError):  # nested past what the parser takes: kept as text
                        pass
        return batch if out is None else out

    def events(self, batch: list[Any]) -> list[ev.BusEvent | dict[str, Any]]:
        """Each row as its event; a row of a kind not known here, or that does
        not fit, as a dict."""
        batch = self._read_texts(batch)
        makers = self._makers
        out: list[ev.BusEvent | dict[str, Any]] = []
        append = out.append
        for values in batch:
            try:
                append(makers[values[0]](values))
            except (KeyError, TypeError, IndexError, ValueError, AttributeError):
                append(self.as_dict(values))
        return out

    def as_dict(self, values: Any) -> dict[str, Any]:
        """A row as the JSON object ``tinyo run --json`` prints for its fact (keys in field order)."""
        if not isinstance(values, list) or not values or not isinstance(values[0], str):
            return {"type": "unreadable", "row": values}
        keys = self._keys.get(values[0])
        if keys is None or len(keys) != len(values):
            return {"type": values[0], "values": values[1:]}
        return dict(zip(keys, values))

    def json_lines(self, batch: list[Any]) -> bytes:
        """Each row as a JSON line, as ``tinyo run --json`` prints its fact:
        the rows keyed by the engine's schema from C (no Python frame per fact) and encoded by one C call; a
        row that does not fit its kind's keys sends the batch the slow way, row by row (``as_dict``)."""
        batch = self._read_texts(batch)
        try:
            keys = list(map(self._keys.__getitem__, map(_KIND, batch)))
            fits = list(map(len, keys)) == list(map(len, batch)) and set(map(type, batch)) <= {list}
        except (KeyError, TypeError, IndexError):
            fits = False
        if fits:
            return jsonrows.lines(batch, self._templates).encode()
        return json_text([self.as_dict(values) for values in batch]).encode()
