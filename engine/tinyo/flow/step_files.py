"""Provides the CSV steps: CSV Input (rows from a file, in chunks) and CSV Output (rows to a file)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .base import Output, Step
from .context import Row, interpolate
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
    ``header=True`` to skip it). ``types`` converts fields (``{"id": int}``); values are text otherwise.
    The file is read once per input row (once, for the kickstart row).
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
    ) -> None:
        if not isinstance(path, str) or not path:
            raise FlowDefinitionError(f"CsvInput needs a path, got {path!r}")
        self.path = path
        self.delimiter = delimiter
        self.encoding = encoding
        self.fields = list(fields) if fields is not None else None
        self.header = header if header is not None else self.fields is None
        self.types = dict(types or {})

    def describe(self) -> str:
        return f"CsvInput({self.path!r})"

    def process(self, rows: list[Row]) -> Output:
        return self._read(len(rows))

    def _read(self, times: int) -> Iterator[list[Row]]:
        size = self.ctx.chunk_size
        for _ in range(times):
            with open(self.path, newline="", encoding=self.encoding) as fh:
                reader = csv.reader(fh, delimiter=self.delimiter)
                names = self.fields
                if self.header:
                    first = next(reader, None)
                    if names is None:
                        if first is None:
                            return
                        names = first
                assert names is not None
                chunk: list[Row] = []
                for values in reader:
                    if not values:
                        continue
                    row = dict(zip(names, values))
                    if self.types:
                        try:
                            convert(self.types, row)
                        except Exception as exc:
                            self.ctx.row_failed({"line": reader.line_num, **row}, exc)
                            continue
                    chunk.append(row)
                    if len(chunk) >= size:
                        yield chunk
                        chunk = []
                if chunk:
                    yield chunk


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
