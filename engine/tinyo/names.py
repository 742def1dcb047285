"""Provides the one representation of names (file paths, document names, events): a ``str`` as
``os.fsdecode`` gives it, and how such a name is stored without loss.

Linux file names are bytes. A name that is not valid UTF-8 decodes with ``surrogateescape``: each
undecodable byte 0xNN becomes the lone surrogate U+DCNN (``b"bad\\xff"`` is ``"bad\\udcff"``), and
``os.fsencode`` gives the bytes back. That ``str`` is what the watcher reports, what generators receive and
emit, what ops open, and what the bus carries; it is shown with each such byte escaped as ``\\xNN``
(:func:`tinyo.text.printable`) and written to JSON as the escape ``\\udcNN``.

SQLite cannot take such a ``str`` as text (it is not UTF-8), so the store binds its bytes instead,
inside ``CAST(? AS TEXT)``: the column holds exactly the file name's bytes as TEXT (it compares and sorts
like any name, byte by byte), and reads back, through the connection's :func:`from_sql`, as the same
``str``. Names that are valid UTF-8 (all of them, almost always) are bound as they are.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def to_sql(text: str) -> str | bytes:
    """``text`` as bound to SQLite (in a ``CAST(? AS TEXT)``): itself when it is valid UTF-8, else its bytes.

    A name from the file system gives back its bytes exactly; any other text that holds lone
    surrogates (an op printing one) is stored with them as ``\\udXXX`` escapes rather than failing."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace")
    return text


def from_sql(raw: bytes) -> str:
    """A TEXT value read from the store (the connection's text factory): undecodable bytes come back
    as the surrogate escapes they were stored from."""
    return raw.decode("utf-8", "surrogateescape")


def clean(text: str) -> bool:
    """True when ``text`` is valid UTF-8 as it is (nothing to convert for SQLite)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a document name or event (None: it can). A name may hold any character and
    any undecodable byte as ``os.fsdecode`` escapes it (U+DC80-U+DCFF); other lone surrogates, or escapes
    of bytes that would decode as UTF-8, name no file and could not be stored as themselves."""
    if clean(name):
        return None
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate ({name[exc.start]!r}) that is not an escaped byte"
    if raw.decode("utf-8", "surrogateescape") != name:
        return "holds escaped bytes that decode as UTF-8 (os.fsdecode would have decoded them)"
    return None


def digest_bytes(text: str) -> bytes:
    """``text`` as bytes for hashing an identity (a DES id): UTF-8, escaped bytes as themselves."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def unbindable_from(rows: list[Any]) -> int | None:
    """The index of the first row that SQLite cannot take as it is (text in it that is not valid UTF-8), or None.
    ``executemany`` binds rows in order and stops at that one, so the rows before it were written."""
    for index, row in enumerate(rows):
        for value in row:
            if value.__class__ is str and not value.isascii() and not clean(value):
                return index
    return None


def bindable(row: Any, columns: tuple[int, ...]) -> tuple[Any, ...]:
    """``row`` with the text in ``columns`` made bindable by :func:`to_sql`."""
    out = list(row)
    for col in columns:
        if out[col].__class__ is str:
            out[col] = to_sql(out[col])
    return tuple(out)


def json_escaped(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with lone surrogates written as ``\\udcNN``
    escapes, so it can be written as UTF-8; ``json.loads`` gives the same name back (and ``os.fsencode`` its
    bytes). Surrogates only occur inside JSON strings, where the escape means the same character."""
    if text.isascii() or clean(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
