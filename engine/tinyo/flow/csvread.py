"""Provides how CSV Input reads a file: missing values, typed fields, type inference and split reading.

Records come out as lists of text values, with a function giving the file line the last record
ended on (1-based, the header is line 1). ``Converter`` turns the values into rows: a value listed in ``na_values``
becomes None in every field, typed fields are converted, and a value that does not convert raises
``ValueError`` naming the field, the line and the text.

Several instances of one CSV Input (with no incoming hop) read disjoint parts of the file:

- ``split="bytes"`` (default): the data after the header is cut into equal byte ranges; an instance
  reads the lines that *start* in its range, so each line is read by exactly one instance and no
  instance reads the whole file. A quoted field holding a line break cannot be cut this way: a
  line with an unbalanced quote character stops the run with a message pointing to
  ``split="rows"``.
- ``split="rows"``: every instance parses the whole file and keeps the records whose number
  modulo the instance count is its index (correct for any CSV, less parallel).
"""

from __future__ import annotations

import csv
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import FlowDefinitionError

INFER_ROWS = 1000
"""Rows ``infer_types=True`` looks at."""


def typename(fn: Any) -> str:
    """``int`` for int, the function's name otherwise, for messages."""
    return getattr(fn, "__name__", repr(fn))


class Converter:
    """Text values of records -> chunks of row dicts, with ``na_values`` and ``types`` applied."""

    def __init__(self, names: list[str], types: Mapping[str, Callable[[str], Any]], na_values: Iterable[str],
                 picks: list[int] | None = None) -> None:
        self.names = names
        """The row's field names (with ``picks``: the kept columns)."""
        self.na = tuple(dict.fromkeys(na_values))
        self.typed = [(i, name, types[name]) for i, name in enumerate(names) if name in types]
        self.picks = picks
        """Positions in the record of the kept columns, or None to keep every field."""

    def chunks(self, records: Iterable[list[Any]], line_of: Callable[[], int], size: int,
               failed: Callable[[dict[str, Any], Exception], None]) -> Iterator[list[dict[str, Any]]]:
        """Rows in chunks of ``size``; a record whose value does not convert goes to ``failed``.

        One loop without a call per row: this is the hot path of every CSV flow.
        """
        names, na, typed, picks = self.names, self.na, self.typed, self.picks
        pick = None
        if picks is not None:
            pick = operator.itemgetter(*picks) if len(picks) > 1 else lambda values: (values[picks[0]],)
        chunk: list[dict[str, Any]] = []
        append = chunk.append
        for values in records:
            if not values:
                continue
            if pick is not None:
                try:
                    values = list(pick(values))
                except IndexError:  # a short record: its absent columns are missing
                    values = [values[i] if i < len(values) else None for i in picks]  # type: ignore[union-attr]
            # ``text in values`` compares in C without hashing every value: cheaper than a set
            # test when, as usual, there are one or two missing-value texts
            for text in na:
                while text in values:
                    values[values.index(text)] = None
            if typed:
                try:
                    for i, name, fn in typed:
                        if i < len(values) and values[i] is not None:
                            values[i] = fn(values[i])
                except (ValueError, TypeError, ArithmeticError) as exc:
                    line = line_of()
                    text = values[i]
                    failed({"line": line, **dict(zip(names, values))}, ValueError(
                        f"line {line}, field {name!r}: cannot read {text!r} as {typename(fn)} ({exc})"))
                    continue
            append(dict(zip(names, values)))
            if len(chunk) >= size:
                yield chunk
                chunk = []
                append = chunk.append
        if chunk:
            yield chunk


def _int_kind(text: str) -> bool | None:
    """True: a plain integer; False: an integer with leading zeros or a sign (``007``: text); None: no integer."""
    try:
        return str(int(text)) == text.strip()
    except ValueError:
        return None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def infer(names: list[str], records: Iterable[list[str]], na: frozenset[str]) -> dict[str, Callable[[str], Any]]:
    """``int`` for a column whose present values are all integers written plainly (a column with
    ``007`` stays text, zeros and all), ``float`` for one whose values all parse as numbers; other columns (and columns with no
    value) stay text."""
    candidates: list[set[Any]] = [{int, float} for _ in names]
    seen = [False] * len(names)
    for values in records:
        for i, text in enumerate(values[: len(names)]):
            if text in na:
                continue
            seen[i] = True
            kinds = candidates[i]
            if int in kinds:
                plain = _int_kind(text)
                if plain is False:
                    kinds.clear()
                    continue
                if plain is None:
                    kinds.discard(int)
            if float in kinds and not _is_float(text):
                kinds.discard(float)
    out: dict[str, Callable[[str], Any]] = {}
    for name, kinds, any_value in zip(names, candidates, seen):
        if any_value and kinds:
            out[name] = int if int in kinds else float
    return out


Opened = tuple[list[str] | None, Iterator[list[str]], Callable[[], int]]
"""The header (if asked for), the records, and a function giving the line the last record ended on."""


def read_whole(fh: Any, delimiter: str, skip_header: bool) -> Opened:
    """Every record of an open text file."""
    reader = csv.reader(fh, delimiter=delimiter)
    header = next(reader, None) if skip_header else None
    return header, reader, lambda: reader.line_num


def modulo(records: Iterator[list[str]], index: int, count: int) -> Iterator[list[str]]:
    """The records whose number (0-based, header excluded) modulo ``count`` is ``index``."""
    k = -1
    for values in records:
        if values:
            k += 1
            if k % count == index:
                yield values


def read_range(path: str, encoding: str, delimiter: str, skip_header: bool, index: int, count: int) -> Opened:
    """The records of the lines starting in byte range ``index`` of ``count``."""
    if "\n".encode(encoding) != b"\n" or '"'.encode(encoding) != b'"':
        raise FlowDefinitionError(
            f"CsvInput cannot split {path!r} by bytes in encoding {encoding!r}; use split='rows'"
        )
    fh = open(path, "rb")
    try:
        header: list[str] | None = None
        data_start = 0
        if skip_header:
            first = fh.readline()
            data_start = fh.tell()
            parsed = next(csv.reader([first.decode(encoding)], delimiter=delimiter), None) if first else None
            header = parsed
        fh.seek(0, 2)
        size = fh.tell()
        span = size - data_start
        start = data_start + span * index // count
        end = data_start + span * (index + 1) // count
        fh.seek(start - 1 if start > data_start else start)
        if start > data_start:
            fh.readline()  # to the first line that starts at or after ``start``
        pos = fh.tell()
        first_line = _line_number(fh, pos) if pos > 0 else 1
        fh.seek(pos)
    except BaseException:
        fh.close()
        raise
    state = [first_line - 1]
    return header, _range_records(fh, path, encoding, delimiter, pos, end, state), lambda: state[0]


def _line_number(fh: Any, pos: int) -> int:
    """The 1-based number of the line starting at byte ``pos`` (newlines before it, plus one)."""
    fh.seek(0)
    seen = 0
    left = pos
    while left > 0:
        block = fh.read(min(left, 1 << 20))
        if not block:
            break
        seen += block.count(b"\n")
        left -= len(block)
    return seen + 1


def _range_records(fh: Any, path: str, encoding: str, delimiter: str, pos: int, end: int, line: list[int]) -> Iterator[list[str]]:
    with fh:

        def lines() -> Iterator[str]:
            nonlocal pos
            for raw in fh:
                if pos >= end:
                    return
                pos += len(raw)
                line[0] += 1
                if raw.count(b'"') & 1:
                    raise FlowDefinitionError(
                        f"CsvInput {path!r} line {line[0]} has an unbalanced quote (a quoted field holding a line "
                        "break?): such a file cannot be split by bytes; use split='rows'"
                    )
                yield raw.decode(encoding)

        yield from csv.reader(lines(), delimiter=delimiter)
