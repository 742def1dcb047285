"""Provides the row steps: Generate, Map, Filter, Switch, Set Flow Result and Log (Aggregate is in ``step_aggregate``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .base import Output, Step, function_name, map_rows, takes_ctx
from .context import Row
from .errors import FlowDefinitionError, RowFailure, Stopped


def _int_setting(step: Step, name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FlowDefinitionError(f"{step.ctx.where}: setting {name!r} must be an integer, got {value!r}") from None
    if number < 0:
        raise FlowDefinitionError(f"{step.ctx.where}: setting {name!r} must be >= 0, got {number}")
    return number


class Generate(Step):
    """Generate Rows: ``count`` rows (an int or ``"${params.n}"``), or copies of the given ``rows``.

    Each row holds ``fields`` plus ``index`` (the row number, 0-based; None to leave it out), on top
    of the input row (the empty kickstart row for a step with no incoming hop). Every instance
    generates its own rows.
    """

    settings = ("count", "fields")

    def __init__(
        self,
        count: int | str | None = None,
        *,
        rows: Iterable[Mapping[str, Any]] | None = None,
        fields: Mapping[str, Any] | None = None,
        index: str | None = "i",
    ) -> None:
        if (count is None) == (rows is None):
            raise FlowDefinitionError("Generate needs either count=N or rows=[...], not both or neither")
        self.count = count
        self.rows = [dict(r) for r in rows] if rows is not None else None
        self.fields = dict(fields or {})
        self.index = index

    def describe(self) -> str:
        return f"Generate({self.count if self.rows is None else f'{len(self.rows)} rows'})"

    def setup(self) -> None:
        self.n = len(self.rows) if self.rows is not None else _int_setting(self, "count", self.count)

    def process(self, rows: list[Row]) -> Output:
        return self._generate(rows)

    def _generate(self, rows: list[Row]) -> Iterator[list[Row]]:
        size = self.ctx.chunk_size
        index = self.index
        for given in rows:
            base = {**given, **self.fields}
            for start in range(0, self.n, size):
                stop = min(start + size, self.n)
                if self.rows is not None:
                    chunk = [{**base, **r} for r in self.rows[start:stop]]
                    if index is not None:
                        for k, row in enumerate(chunk, start):
                            row[index] = k
                elif index is None:
                    chunk = [dict(base) for _ in range(start, stop)]
                elif base:
                    chunk = [{**base, index: k} for k in range(start, stop)]
                else:
                    chunk = [{index: k} for k in range(start, stop)]
                yield chunk


class Map(Step):
    """Map: ``fn(row)`` (or ``fn(row, ctx)``) returns the output row; None drops the row."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"Map needs a function, got {fn!r}")
        self.fn = fn
        self.with_ctx = takes_ctx(fn)

    def describe(self) -> str:
        return f"Map({function_name(self.fn)})"

    def process(self, rows: list[Row]) -> Output:
        return map_rows(rows, self.fn, self.ctx, self.with_ctx)


class Filter(Step):
    """Filter: rows for which ``fn(row)`` is true go to ``out``, the others to ``rejected``."""

    gates = ("out", "rejected")

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"Filter needs a predicate function, got {fn!r}")
        self.fn = fn
        self.with_ctx = takes_ctx(fn)

    def describe(self) -> str:
        return f"Filter({function_name(self.fn)})"

    def process(self, rows: list[Row]) -> Output:
        fn, ctx, with_ctx = self.fn, self.ctx, self.with_ctx
        kept: list[Row] = []
        rejected: list[Row] = []
        it = iter(rows)
        row: Any = None
        while True:
            try:
                for row in it:
                    if fn(row, ctx) if with_ctx else fn(row):
                        kept.append(row)
                    else:
                        rejected.append(row)
                break
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                ctx.row_failed(row, exc)
        return {"out": kept, "rejected": rejected}


class Switch(Step):
    """Switch: ``fn(row)`` names the gate the row goes to (None: the ``default`` gate, or dropped).

    With ``gates`` given, any other name is an error for that row.
    """

    def __init__(self, fn: Callable[..., Any], gates: Iterable[str] = (), default: str | None = None) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"Switch needs a function returning a gate name, got {fn!r}")
        self.fn = fn
        self.with_ctx = takes_ctx(fn)
        self.allowed = tuple(gates)
        self.default = default
        self.gates = tuple(dict.fromkeys([*self.allowed, *([default] if default else []), "out"]))

    def describe(self) -> str:
        return f"Switch({function_name(self.fn)})"

    def process(self, rows: list[Row]) -> Output:
        fn, ctx, with_ctx = self.fn, self.ctx, self.with_ctx
        allowed = set(self.allowed)
        out: dict[str, list[Row]] = {}
        it = iter(rows)
        row: Any = None
        while True:
            try:
                for row in it:
                    gate = fn(row, ctx) if with_ctx else fn(row)
                    if gate is None:
                        gate = self.default
                        if gate is None:
                            continue
                    elif not isinstance(gate, str) or allowed and gate not in allowed:
                        raise ValueError(f"Switch function returned {gate!r}; expected one of {sorted(allowed) or 'gate names'}")
                    bucket = out.get(gate)
                    if bucket is None:
                        out[gate] = bucket = []
                    bucket.append(row)
                break
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                ctx.row_failed(row, exc)
        return out


class SetFlowResult(Step):
    """Set Flow Result: the flow result becomes ``value`` of the last row (or the list of all, ``collect``).

    ``value`` is a field name, a function of the row, or None for the whole row. Rows pass through.
    With several instances, ``collect`` joins their lists in instance order.
    """

    def __init__(self, value: str | Callable[[Row], Any] | None = None, *, collect: bool = False) -> None:
        self.value = value
        self.collect = collect

    def describe(self) -> str:
        return f"SetFlowResult({self.value!r}{', collect' if self.collect else ''})"

    def _pick(self, row: Row) -> Any:
        value = self.value
        if value is None:
            return dict(row)
        if isinstance(value, str):
            return row[value]
        return value(row)

    def setup(self) -> None:
        if self.ctx.result is None:
            raise FlowDefinitionError(f"{self.ctx.where}: Set Flow Result cannot run in a worker process; use threads")
        if self.collect:
            self.ctx.result.append(self.ctx.instance.index, [])

    def process(self, rows: list[Row]) -> Output:
        values = map_rows(rows, self._pick, self.ctx, False) if self.value is not None else [dict(r) for r in rows]
        if self.collect:
            self.ctx.result.append(self.ctx.instance.index, values)
        elif values:
            self.ctx.result.set(values[-1])
        return rows


class Log(Step):
    """Log: print each row (or its ``fields``) to stdout, prefixed; rows pass through unchanged."""

    settings = ("prefix",)

    def __init__(self, prefix: str | None = None, *, fields: Iterable[str] | None = None, stream: str = "stdout") -> None:
        if stream not in ("stdout", "stderr"):
            raise FlowDefinitionError(f"Log stream must be 'stdout' or 'stderr', got {stream!r}")
        self.prefix = prefix
        self.fields = tuple(fields) if fields is not None else None
        self.stream = stream

    def describe(self) -> str:
        return "Log"

    def process(self, rows: list[Row]) -> Output:
        ctx = self.ctx
        prefix = self.prefix if self.prefix is not None else f"[{ctx.flow.name}/{ctx.step}#{ctx.instance.index}]"
        out = sys.stdout if self.stream == "stdout" else sys.stderr
        lines = []
        for row in rows:
            shown = {f: row.get(f) for f in self.fields} if self.fields is not None else row
            lines.append(f"{prefix} {shown}\n")
        out.write("".join(lines))
        out.flush()
        return rows
