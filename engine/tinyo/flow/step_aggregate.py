"""Provides Aggregate: group rows by key fields and emit one row per group, with SQL's handling of missing values.

The aggregation is compiled once, when the step is built, into *slots*: one running value per
distinct ``(kind, field)`` (``avg`` of a field shares the ``sum`` and ``count`` slots of that field,
so asking for sum, count and avg of one field keeps two numbers, not three). Each slot has an update
function ``(old, row) -> new`` chosen for its kind, so ``process`` never looks at an operation name.

A row updates its group all at once: the new slot values are computed into a fresh list first and
replace the group's list only when every slot succeeded, so a row that raises half-way (a text value
in a sum, a field it lacks) goes to the error gate and leaves no trace in the totals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .base import Output, Step
from .context import Row
from .errors import FlowDefinitionError, RowFailure, Stopped

OPERATIONS = ("count", "count_all", "sum", "avg", "min", "max", "first", "last", "list")



class _Unset:
    """No row has set this slot yet (``first`` may legitimately hold None)."""

    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()

Slot = tuple[str, "str | None"]
Update = Callable[[Any, Row], Any]


def _update(kind: str, src: str | None) -> tuple[Any, Update]:
    """The initial value and the update function of one slot."""
    if kind == "rows":
        return 0, lambda old, row: old + 1
    assert src is not None
    if kind == "count":
        def count(old: int, row: Row) -> int:
            return old if row[src] is None else old + 1
        return 0, count
    if kind == "sum":
        def add(old: Any, row: Row) -> Any:
            v = row[src]
            return old if v is None else old + v
        return 0, add
    if kind == "min":
        def low(old: Any, row: Row) -> Any:
            v = row[src]
            if v is None:
                return old
            return v if old is None or v < old else old
        return None, low
    if kind == "max":
        def high(old: Any, row: Row) -> Any:
            v = row[src]
            if v is None:
                return old
            return v if old is None or v > old else old
        return None, high
    if kind == "first":
        def first(old: Any, row: Row) -> Any:
            v = row[src]
            return v if old is _UNSET else old
        return _UNSET, first
    if kind == "last":
        return _UNSET, lambda old, row: row[src]
    if kind == "list":
        def check(old: Any, row: Row) -> Any:
            row[src]  # noqa: B018 - a row without the field fails before the group changes
            return old
        return None, check
    raise AssertionError(kind)


class Aggregate(Step):
    """Group rows by ``by`` and emit one row per group at end of input.

    ``fields`` maps an output name to ``(op, source_field)``. Missing values (None) are skipped as
    in SQL: ``count`` counts the rows whose field is not missing, ``sum``/``min``/``max`` ignore
    missing values and give None for a group with none, ``avg`` divides by the number of values
    that are not missing. ``("count_all", None)`` (or the older ``("count", None)``) counts rows.
    ``first``/``last`` give the field of the group's first/last row and ``list`` all of them,
    missing values included. A row that raises (a field it lacks, a text value in a sum) changes
    nothing and goes to the error gate. Each instance aggregates what it receives: partition the
    incoming hop by ``by`` to get one row per group over all instances.
    """

    def __init__(self, by: str | Iterable[str], fields: Mapping[str, tuple[str, str | None]]) -> None:
        self.by = (by,) if isinstance(by, str) else tuple(by)
        self.fields = dict(fields)
        slots: list[Slot] = []
        outputs: list[tuple[str, str, tuple[int, ...]]] = []

        def slot(kind: str, src: str | None) -> int:
            key = (kind, src)
            if key not in slots:
                slots.append(key)
            return slots.index(key)

        for name, spec in self.fields.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0] in OPERATIONS
                    and (spec[1] is None or isinstance(spec[1], str))):
                raise FlowDefinitionError(
                    f"Aggregate field {name!r} must be (op, source_field) with op one of {OPERATIONS}, got {spec!r}"
                )
            op, src = spec
            if op == "count_all" or op == "count" and src is None:
                outputs.append((name, "value", (slot("rows", None),)))
            elif src is None:
                raise FlowDefinitionError(f"Aggregate field {name!r}: {op!r} needs a source field, got {spec!r}")
            elif op == "sum":
                outputs.append((name, "sum", (slot("sum", src), slot("count", src))))
            elif op == "avg":
                outputs.append((name, "avg", (slot("sum", src), slot("count", src))))
            elif op in ("first", "last"):
                outputs.append((name, "once", (slot(op, src),)))
            elif op == "list":
                outputs.append((name, "list", (slot("list", src),)))
            else:
                outputs.append((name, "value", (slot(op, src),)))
        self.slots = slots
        self.outputs = outputs

    def describe(self) -> str:
        return f"Aggregate(by={list(self.by)})"

    def setup(self) -> None:
        compiled = [_update(kind, src) for kind, src in self.slots]
        self._initial = [init for init, _fn in compiled]
        self._updates = [fn for _init, fn in compiled]
        self._lists = [(j, src) for j, (kind, src) in enumerate(self.slots) if kind == "list"]
        self.groups: dict[Any, list[Any]] = {}

    def _key(self) -> Callable[[Row], Any]:
        by = self.by
        if len(by) == 1:
            field = by[0]
            return lambda row: row[field]
        return lambda row: tuple(row[f] for f in by)

    def process(self, rows: list[Row]) -> Output:
        ctx = self.ctx
        groups = self.groups
        get = groups.get
        initial = self._initial
        updates = self._updates
        lists = self._lists
        key_of = self._key()
        it = iter(rows)
        row: Any = None
        while True:
            try:
                for row in it:
                    key = key_of(row)
                    acc = get(key)
                    if acc is None:
                        acc = initial
                    new = [fn(old, row) for fn, old in zip(updates, acc)]
                    if lists:
                        for j, src in lists:
                            if new[j] is None:
                                new[j] = []
                            new[j].append(row[src])
                    groups[key] = new
                break
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                ctx.row_failed(row, exc)
        return None

    def finish(self) -> Output:
        out: list[Row] = []
        by = self.by
        single = len(by) == 1
        for key, acc in self.groups.items():
            row = {by[0]: key} if single else dict(zip(by, key))
            for name, how, at in self.outputs:
                if how == "value":
                    row[name] = acc[at[0]]
                elif how == "sum":
                    row[name] = acc[at[0]] if acc[at[1]] else None
                elif how == "avg":
                    row[name] = acc[at[0]] / acc[at[1]] if acc[at[1]] else None
                elif how == "once":
                    row[name] = None if acc[at[0]] is _UNSET else acc[at[0]]
                else:
                    row[name] = list(acc[at[0]] or [])
            out.append(row)
        size = self.ctx.chunk_size
        return (out[i : i + size] for i in range(0, len(out), size))
