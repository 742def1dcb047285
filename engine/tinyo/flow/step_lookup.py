"""Provides Lookup: enrich rows with master data from a CSV file or a table, loaded once per instance."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .base import Output, Step
from .context import Row
from .errors import FlowDefinitionError, RowFailure, Stopped
from .step_files import convert
from .step_sql import _quote, service_db

_ON_MISS = ("null", "keep", "drop", "error", "gate")
_ALIASES = {"fail": "error"}


class Lookup(Step):
    """Lookup: add the fields of the master record whose ``lookup_key`` equals the row's ``key``.

    Master data comes from ``csv`` (a path; ``types`` converts its text fields, e.g. ``{"id": int}``)
    or from ``table``/``query`` on a database ``service``; it is read once per instance, in
    ``setup``, so it never waits on another hop. ``key`` is a field name or a tuple of them;
    ``lookup_key`` names the master's key fields when they differ. ``fields`` picks master fields
    (default: all but the key), ``prefix`` is put before their names. A row with no match:
    ``on_miss="null"`` sets the fields to None, ``"keep"`` leaves the row as it is, ``"drop"``
    drops it, ``"error"`` sends it to the error gate (or fails the flow), ``"gate"`` sends it to the
    ``missing`` gate. A missing (None) key matches nothing, as in SQL. The metrics count ``matched``
    and ``missed`` rows; a run in which rows were looked up and none matched ends with a warning
    (often: text keys against integer keys).
    """

    settings = ("csv", "table", "query", "delimiter")

    def __init__(
        self,
        *,
        key: str | Iterable[str],
        csv: str | None = None,
        table: str | None = None,
        query: str | None = None,
        service: str = "db",
        lookup_key: str | Iterable[str] | None = None,
        fields: Iterable[str] | None = None,
        prefix: str = "",
        types: Mapping[str, Callable[[str], Any]] | None = None,
        on_miss: str | None = None,
        on_missing: str | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
    ) -> None:
        sources = [s for s in (csv, table, query) if s is not None]
        if len(sources) != 1:
            raise FlowDefinitionError("Lookup needs exactly one of csv='path', table='name' or query='SELECT ...'")
        if on_miss is not None and on_missing is not None:
            raise FlowDefinitionError("Lookup takes on_miss (or its older name on_missing), not both")
        policy = on_miss if on_miss is not None else on_missing if on_missing is not None else "null"
        policy = _ALIASES.get(policy, policy)
        if policy not in _ON_MISS:
            raise FlowDefinitionError(f"Lookup on_miss must be one of {_ON_MISS}, got {policy!r}")
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self.lookup_key = self.key if lookup_key is None else ((lookup_key,) if isinstance(lookup_key, str) else tuple(lookup_key))
        if len(self.key) != len(self.lookup_key):
            raise FlowDefinitionError(f"Lookup key {self.key} and lookup_key {self.lookup_key} differ in length")
        self.csv = csv
        self.table = table
        self.query = query
        self.service = service
        self.fields = list(fields) if fields is not None else None
        self.prefix = prefix
        self.types = dict(types or {})
        self.on_miss = policy
        self.delimiter = delimiter
        self.encoding = encoding
        self.gates = ("out", "missing") if policy == "gate" else ("out",)

    def describe(self) -> str:
        return f"Lookup({self.csv or self.table or self.query!r}, key={list(self.key)})"

    def setup(self) -> None:
        records = self._load_csv() if self.csv is not None else self._load_db()
        names: list[str] = []
        index: dict[tuple[Any, ...], Row] = {}
        for record in records:
            if not names:
                names = self.fields or [f for f in record if f not in self.lookup_key]
            try:
                k = tuple(record[f] for f in self.lookup_key)
            except KeyError as exc:
                raise FlowDefinitionError(
                    f"{self.ctx.where}: master record {record!r} has no key field {exc.args[0]!r}"
                ) from None
            if None in k:
                continue  # as in SQL, a missing key matches nothing
            index[k[0] if len(k) == 1 else k] = {self.prefix + n: record.get(n) for n in names}
        self.names = names or list(self.fields or [])
        self.index = index
        self.empty = {self.prefix + n: None for n in self.names}
        self.sample_key: Any = next(iter(index), None)
        self.ctx.counters.update(matched=0, missed=0)

    def _load_csv(self) -> list[Row]:
        with open(self.csv or "", newline="", encoding=self.encoding) as fh:
            rows = [r for r in csv.DictReader(fh, delimiter=self.delimiter)]
        return [convert(self.types, r) for r in rows] if self.types else rows

    def _load_db(self) -> list[Row]:
        conn = service_db(self, self.service).connect()
        try:
            sql = self.query or f"SELECT * FROM {_quote(self.table or '')}"
            cur = conn.execute(sql)
            cols = [d[0] for d in cur.description or ()]
            return [dict(zip(cols, values)) for values in cur.fetchall()]
        finally:
            conn.close()

    def process(self, rows: list[Row]) -> Output:
        ctx = self.ctx
        key, index, policy, empty = self.key, self.index, self.on_miss, self.empty
        get = index.get
        single = key[0] if len(key) == 1 else None
        out: list[Row] = []
        missing: list[Row] = []
        matched = 0
        missed = 0
        it = iter(rows)
        row: Any = None
        while True:
            try:
                for row in it:
                    k = row[single] if single is not None else tuple(row[f] for f in key)
                    record = get(k)  # None for a missing key too: the index holds none
                    if record is not None:
                        row.update(record)
                        out.append(row)
                        matched += 1
                        continue
                    missed += 1
                    if policy == "error":
                        shown = dict(zip(self.lookup_key, (k,) if single is not None else k))
                        raise LookupError(f"no master record with {shown}{self._hint(k)}")
                    if policy == "null":
                        row.update(empty)
                        out.append(row)
                    elif policy == "keep":
                        out.append(row)
                    elif policy == "gate":
                        missing.append(row)
                break
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                ctx.row_failed(row, exc)
        counters = ctx.counters
        counters["matched"] += matched
        counters["missed"] += missed
        return {"out": out, "missing": missing} if missing else out

    def _hint(self, k: Any) -> str:
        """Why a key may not match: its type differs from the master keys' (``'3'`` against ``3``)."""
        sample = self.sample_key
        if sample is None or type(sample) is type(k):
            return ""
        return f" (the row's key is {type(k).__name__}, the master's keys are {type(sample).__name__}, e.g. {sample!r})"

    def warning(self, counters: Mapping[str, int]) -> str | None:
        if counters.get("missed") and not counters.get("matched"):
            source = self.csv or self.table or self.query
            return (f"none of the {counters['missed']} rows looked up matched a master record of {source!r}; "
                    "do the key types agree? (CSV fields are text unless types= or infer_types= says otherwise)")
        return None
