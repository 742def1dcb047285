"""Provides Aggregate: group rows by key fields and emit one row per group, with SQL's handling of missing values.

The aggregation is planned once, when the step is built, as *slots*: one running value per distinct
``(kind, field)`` (``avg`` of a field shares the ``sum`` and ``count`` slots of that field, so
asking for sum, count and avg of one field keeps two numbers, not three). Each instance then
compiles the loop over a chunk for exactly those slots (``compile_updates``), so ``process`` never
looks at an operation name.

A row updates its group all at once: the new slot values are computed first and stored only when
every slot succeeded, so a row that raises half-way (a text value in a sum, a field it lacks) goes
to the error gate and leaves no trace in the totals.
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

_INITIAL = {"rows": "0", "count": "0", "sum": "0", "min": "None", "max": "None", "first": "UNSET",
            "last": "UNSET", "list": "[]"}
"""Each slot kind's value before the group's first row (source text)."""

_NEXT = {
    "rows": "{o} + 1",
    "count": "{o} if {v} is None else {o} + 1",
    "sum": "{o} if {v} is None else {o} + {v}",
    "min": "{o} if {v} is None else {v} if {o} is None or {v} < {o} else {o}",
    "max": "{o} if {v} is None else {v} if {o} is None or {v} > {o} else {o}",
    "first": "{v} if {o} is UNSET else {o}",
    "last": "{v}",
    "list": "{o}",
}
"""Each slot kind's next value from the old one ``{o}`` and the row's value ``{v}`` (source text)."""


def compile_updates(by: tuple[str, ...], slots: list[Slot]) -> Callable[..., None]:
    """The loop that adds a chunk of rows to the groups, written out for these slots and compiled.

    Generated once per step instance so that each row costs a few local operations per slot and
    no call or operation-name test; field names enter the source only as ``repr`` literals. Every
    new slot value is computed before any is stored, so a row that raises changes nothing.
    """
    sources = list(dict.fromkeys(src for _kind, src in slots if src is not None))
    var = {src: f"v{i}" for i, src in enumerate(sources)}
    key = f"row[{by[0]!r}]" if len(by) == 1 else "(" + "".join(f"row[{f!r}], " for f in by) + ")"
    body = [f"key = {key}", "acc = get(key)", "fresh = acc is None", "if fresh:",
            "    acc = [" + ", ".join(_INITIAL[kind] for kind, _src in slots) + "]"]
    body += [f"{var[src]} = row[{src!r}]" for src in sources]
    body += [f"s{j} = " + _NEXT[kind].format(o=f"acc[{j}]", v=var.get(src or "", "None"))
             for j, (kind, src) in enumerate(slots)]
    body += [f"acc[{j}] = s{j}" for j in range(len(slots))]
    body += [f"acc[{j}].append({var[src]})" for j, (kind, src) in enumerate(slots) if kind == "list" and src]
    body += ["if fresh:", "    groups[key] = acc"]
    source = "\n".join([
        "def update(rows, groups, row_failed):",
        "    get = groups.get",
        "    for row in rows:",
        "        try:",
        *("            " + line for line in body),
        "        except (Stopped, RowFailure):",
        "            raise",
        "        except Exception as exc:",
        "            row_failed(row, exc)",
    ])
    scope: dict[str, Any] = {"UNSET": _UNSET, "Stopped": Stopped, "RowFailure": RowFailure}
    exec(compile(source, f"<Aggregate by {list(by)}>", "exec"), scope)  # noqa: S102 - built from repr literals
    return scope["update"]  # type: ignore[no-any-return]


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
        self._update = compile_updates(self.by, self.slots)
        self.groups: dict[Any, list[Any]] = {}

    def process(self, rows: list[Row]) -> Output:
        self._update(rows, self.groups, self.ctx.row_failed)
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
                    row[name] = acc[at[0]]
            out.append(row)
        size = self.ctx.chunk_size
        return (out[i : i + size] for i in range(0, len(out), size))
