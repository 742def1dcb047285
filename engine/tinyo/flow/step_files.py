"""Provides the CSV steps: CSV Input (rows from a file, in chunks) and CSV Output (rows to a file)."""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .base import Output, Step
from .context import Row, interpolate
from .csvread import INFER_ROWS, Converter, infer, modulo, read_range, read_whole
from .errors import FlowDefinitionError, RowFailure, Stopped


def convert(types: Mapping[str, Callable[[str], Any]], row: dict[str, Any]) -> dict[str, Any]:
    """Apply ``types`` (field -> converter) to a row read from text; empty strings become None."""
    for name, fn in types.items():
        value = row.get(name)
        if value is not None:
            row[name] = fn(value) if value != "" else None
    return row


class CsvInput(Step):
    """CSV Input: read ``path`` (``${...}`` allowed) and send its rows in chunks.

    The header gives field names unless ``fields`` are given (then every line is data, or set
    ``header=True`` to skip it). A value listed in ``na_values`` (default: the empty field) is
    missing (None) in every field. ``types`` converts fields (``{"id": int}``); with
    ``infer_types=True`` (or a number of rows) the other fields are typed from the first rows of
    the file (``int``, ``float``, else text). A value that does not convert goes to the error gate
    naming the field, line and text. The file is read once per input row (once, for the kickstart
    row); several instances of a CsvInput with no incoming hop read disjoint parts of it (``split``,
    see ``tinyo.flow.csvread``), unless its path names ``${instance.index}``. ``columns`` keeps only
    those fields in each row (the others are parsed but never become row fields: a cheaper read).
    """

    settings = ("path", "delimiter", "encoding")

    def __init__(
        self,
        path: str,
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        fields: Iterable[str] | None = None,
        header: bool | None = None,
        types: Mapping[str, Callable[[str], Any]] | None = None,
        na_values: Iterable[str] = ("",),
        infer_types: bool | int = False,
        split: str | None = "bytes",
        columns: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(path, str) or not path:
            raise FlowDefinitionError(f"CsvInput needs a path, got {path!r}")
        if split not in ("bytes", "rows", None):
            raise FlowDefinitionError(f"CsvInput split must be 'bytes', 'rows' or None, got {split!r}")
        if isinstance(na_values, str):
            raise FlowDefinitionError(f"CsvInput na_values must be a list of texts, got the text {na_values!r}")
        for name, fn in (types or {}).items():
            if not callable(fn):
                raise FlowDefinitionError(f"CsvInput types[{name!r}] must be a function of the text, got {fn!r}")
        self.path = path
        self.delimiter = delimiter
        self.encoding = encoding
        self.fields = list(fields) if fields is not None else None
        self.header = header if header is not None else self.fields is None
        self.types = dict(types or {})
        self.na_values = tuple(na_values)
        self.infer_rows = (INFER_ROWS if infer_types is True else int(infer_types)) if infer_types else 0
        self.split = split
        self.columns = list(columns) if columns is not None else None
        if self.columns is not None and (not self.columns or len(set(self.columns)) != len(self.columns)):
            raise FlowDefinitionError(f"CsvInput columns must name distinct fields, got {self.columns!r}")

    def describe(self) -> str:
        return f"CsvInput({self.path!r})"

    def process(self, rows: list[Row]) -> Output:
        return self._read(len(rows))

    def _part(self) -> tuple[int, int]:
        """(index, count) of the part of the file this instance reads; (0, 1) for all of it."""
        ctx = self.ctx
        raw = self.raw_settings.get("path")
        if (self.split is None or ctx.instance.count == 1 or ctx.has_input
                or isinstance(raw, str) and "instance." in raw):
            return 0, 1
        return ctx.instance.index, ctx.instance.count

    def _types(self, names: list[str]) -> dict[str, Callable[[str], Any]]:
        if not self.infer_rows:
            return self.types
        with open(self.path, newline="", encoding=self.encoding) as fh:
            _, records, _ = read_whole(fh, self.delimiter, self.header)
            head = [values for values in itertools.islice(records, self.infer_rows) if values]
        untyped = [(i, n) for i, n in enumerate(names) if n not in self.types]
        columns = ([v[i] if i < len(v) else "" for i, _n in untyped] for v in head)
        return {**infer([n for _i, n in untyped], columns, frozenset(self.na_values)), **self.types}

    def _read(self, times: int) -> Iterator[list[Row]]:
        size = self.ctx.chunk_size
        index, count = self._part()
        for _ in range(times):
            if count > 1 and self.split == "bytes":
                yield from self._rows(*read_range(self.path, self.encoding, self.delimiter, self.header, index, count),
                                      size)
                continue
            with open(self.path, newline="", encoding=self.encoding) as fh:
                header, records, line_of = read_whole(fh, self.delimiter, self.header)
                if count > 1:
                    records = modulo(records, index, count)
                yield from self._rows(header, records, line_of, size)

    def _rows(self, header: list[str] | None, records: Iterator[list[str]], line_of: Callable[[], int],
              size: int) -> Iterator[list[Row]]:
        names = self.fields or header
        if names is None:
            return
        types = self._types(names)
        picks = None
        if self.columns is not None:
            unknown = [c for c in self.columns if c not in names]
            if unknown:
                raise FlowDefinitionError(
                    f"{self.ctx.where}: columns {unknown} are not fields of {self.path!r} (it has: {', '.join(names)})"
                )
            picks = [names.index(c) for c in self.columns]
            names = self.columns
        converter = Converter(names, types, self.na_values, picks)
        yield from converter.chunks(records, line_of, size, self.ctx.row_failed)


class CsvOutput(Step):
    """CSV Output: write rows to ``path`` (put ``${instance.index}`` in it when several instances write).

    ``fields`` default to the first row's keys; a row lacking one writes an empty value, a row with
    other keys is an error for that row (or set ``extra="ignore"``). Rows pass through to ``out``.
    """

    settings = ("path", "delimiter", "encoding")

    def __init__(
        self,
        path: str,
        *,
        fields: Iterable[str] | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
        append: bool = False,
        header: bool = True,
        extra: str = "error",
    ) -> None:
        if not isinstance(path, str) or not path:
            raise FlowDefinitionError(f"CsvOutput needs a path, got {path!r}")
        if extra not in ("error", "ignore"):
            raise FlowDefinitionError(f"CsvOutput extra must be 'error' or 'ignore', got {extra!r}")
        self.path = path
        self.fields = list(fields) if fields is not None else None
        self.delimiter = delimiter
        self.encoding = encoding
        self.append = append
        self.header = header
        self.extra = extra

    def describe(self) -> str:
        return f"CsvOutput({self.path!r})"

    def setup(self) -> None:
        ctx = self.ctx
        raw = self.raw_settings["path"]
        if ctx.instance.count > 1 and isinstance(raw, str):
            mine = os.path.abspath(str(self.path))
            for other in range(ctx.instance.count):
                if other == ctx.instance.index:
                    continue
                scope = {**ctx.scope(), "instance": {"count": ctx.instance.count, "index": other}}
                if os.path.abspath(interpolate(raw, scope, f"{ctx.where}, setting 'path'")) == mine:
                    raise FlowDefinitionError(
                        f"{ctx.where}: instance {other} already writes {self.path!r}; give each instance its "
                        "own file, e.g. path='out_${instance.index}.csv'"
                    )
        self._fh: Any = None
        self._writer: Any = None

    def _open(self, first: Row) -> None:
        fields = self.fields or list(first)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._fh = open(self.path, "a" if self.append else "w", newline="", encoding=self.encoding)
        self._writer = csv.DictWriter(self._fh, fieldnames=fields, delimiter=self.delimiter,
                                      extrasaction="raise" if self.extra == "error" else "ignore")
        if self.header and not exists:
            self._writer.writeheader()

    def process(self, rows: list[Row]) -> Output:
        if not rows:
            return rows
        if self._writer is None:
            self._open(rows[0])
        write = self._writer.writerow
        good: list[Row] = []
        it = iter(rows)
        row: Any = None
        while True:
            try:
                for row in it:
                    write(row)
                    good.append(row)
                break
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                self.ctx.row_failed(row, exc)
        return good

    def finish(self) -> Output:
        if self._writer is None and self.fields is not None:
            self._open({})
        return None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
