"""Provides the step protocol: the ``Step`` base class, plain-function steps and the per-row error loop.

A step is configured once and *opened* once per instance (in the instance's thread or worker
process). ``open`` copies the step, interpolates its string settings for that instance, and calls
``setup``. Then ``process(rows)`` is called for every input chunk and ``finish()`` once at end of
stream; both return output as one of:

- a list of rows (gate ``out``), or None (nothing);
- a dict ``{gate: [rows]}`` (``Gates``);
- an iterator of those, for steps that produce many chunks (sources): each item is sent downstream
  before the next is asked for, so a slow consumer slows the source down.

``close()`` is always called last (release connections, files).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .context import Row, StepContext
from .errors import FlowDefinitionError, RowFailure, Stopped

Output = list[Row] | dict[str, list[Row]] | Iterable[Any] | None


class Gates(dict):  # type: ignore[type-arg]
    """An explicit ``{gate: rows}`` return value: ``return Gates(out=[row], audit=[copy])``."""


class Step:
    """Base of built-in steps; subclass it for a step with state (``setup``/``process``/``finish``)."""

    gates: tuple[str, ...] = ("out",)
    """The gates this step sends rows through (``error`` is always available)."""
    settings: tuple[str, ...] = ()
    """Names of attributes whose string values are interpolated per instance (``${...}``)."""

    ctx: StepContext
    """Set on the per-instance copy by ``open``."""
    raw_settings: dict[str, Any]
    """The settings as configured, before interpolation (set by ``open``)."""

    def open(self, ctx: StepContext) -> Step:
        """A per-instance copy with interpolated settings, set up and ready for ``process``."""
        inst = copy.copy(self)
        inst.ctx = ctx
        inst.raw_settings = {name: getattr(self, name) for name in self.settings}
        for name in self.settings:
            setattr(inst, name, _interpolate_value(getattr(self, name), ctx, name))
        inst.setup()
        return inst

    def setup(self) -> None:
        """Prepare this instance (open files, connections, load lookups)."""

    def process(self, rows: list[Row]) -> Output:
        """Handle one input chunk; the default passes rows through."""
        return rows

    def finish(self) -> Output:
        """End of input: flush what is held back (aggregates, batches)."""
        return None

    def close(self) -> None:
        """Release resources; called after ``finish`` and also when the run fails."""

    def describe(self) -> str:
        """A short human description (step kind and main setting)."""
        return type(self).__name__

    def warning(self, counters: Mapping[str, int]) -> str | None:
        """A warning for the end of a run, given the step's ``ctx.counters`` summed over its instances."""
        return None

    def check(self, step: str, flow: str) -> None:
        """Validate settings when the step is added to a flow; raise FlowDefinitionError."""


def _interpolate_value(value: Any, ctx: StepContext, name: str) -> Any:
    if isinstance(value, str):
        return ctx.interpolate(value, name)
    if isinstance(value, (list, tuple)):
        return type(value)(_interpolate_value(v, ctx, f"{name}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _interpolate_value(v, ctx, f"{name}[{k!r}]") for k, v in value.items()}
    return value


def takes_ctx(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` accepts two positional arguments (``row, ctx``), False for ``fn(row)``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return True
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def function_name(fn: Any) -> str:
    """``module.qualname`` of a function, for messages."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def map_rows(rows: list[Row], fn: Callable[..., Any], ctx: StepContext, with_ctx: bool) -> list[Row]:
    """``fn`` applied to every row; None results are dropped; a row that raises goes to ``ctx.row_failed``."""
    out: list[Row] = []
    append = out.append
    it = iter(rows)
    row: Any = None
    while True:
        try:
            if with_ctx:
                for row in it:
                    r = fn(row, ctx)
                    if r is not None:
                        append(r)
            else:
                for row in it:
                    r = fn(row)
                    if r is not None:
                        append(r)
            return out
        except (Stopped, RowFailure):
            raise
        except Exception as exc:
            ctx.row_failed(row, exc)


class FunctionStep(Step):
    """A plain function ``fn(row, ctx)`` (or ``fn(row)``) used as a step.

    It returns a row, None (drop), a list of rows, or ``{gate: rows}``. A returned dict counts as
    ``{gate: rows}`` when it is a ``Gates``, or when every key is a gate of this step (a hopped gate,
    a gate declared with ``flow.step(..., gates=[...])``, or ``out``) and every value a list;
    otherwise it is a row.
    """

    def __init__(self, fn: Callable[..., Any], gates: Iterable[str] = ()) -> None:
        if not callable(fn):
            raise FlowDefinitionError(f"a step must be a built-in step or a function, got {fn!r}")
        self.fn = fn
        self.declared = tuple(gates)
        self.gates = ("out", *self.declared)
        self.with_ctx = takes_ctx(fn)
        self._known: frozenset[str] = frozenset(self.gates)

    def describe(self) -> str:
        return f"function {function_name(self.fn)}"

    def setup(self) -> None:
        self._known = frozenset(self.gates) | self.ctx.hopped

    def _is_gate_map(self, value: dict[str, Any]) -> bool:
        known = self._known
        return all(k in known and isinstance(v, (list, tuple)) for k, v in value.items())

    def process(self, rows: list[Row]) -> Output:
        fn = self.fn
        ctx = self.ctx
        with_ctx = self.with_ctx
        known = self._known
        out: list[Row] = []
        append = out.append
        routed: dict[str, list[Row]] | None = None
        it = iter(rows)
        row: Any = None
        while True:
            try:
                for row in it:
                    r = fn(row, ctx) if with_ctx else fn(row)
                    if r is None:
                        continue
                    kind = type(r)
                    if kind is dict:
                        if r and next(iter(r)) in known and self._is_gate_map(r):
                            routed = _merge(routed, out, r)
                        else:
                            append(r)
                    elif kind is list or kind is tuple:
                        for item in r:
                            if not isinstance(item, dict):
                                raise TypeError(f"returned a list holding {type(item).__name__} {item!r}; rows are dicts")
                        out.extend(r)
                    elif isinstance(r, Gates):
                        routed = _merge(routed, out, r)
                    elif isinstance(r, Mapping):
                        append(dict(r))
                    else:
                        raise TypeError(
                            f"returned {type(r).__name__} {r!r}; a step function returns a row (dict), "
                            "None, a list of rows, or {gate: [rows]}"
                        )
                break
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                ctx.row_failed(row, exc)
        return out if routed is None else routed


def _merge(routed: dict[str, list[Row]] | None, out: list[Row], gates: Mapping[str, Any]) -> dict[str, list[Row]]:
    if routed is None:
        routed = {"out": out}
    for gate, rows in gates.items():
        if rows is None:
            continue
        if isinstance(rows, dict):
            rows = [rows]
        for item in rows:
            if not isinstance(item, dict):
                raise TypeError(f"returned gate {gate!r} holding {type(item).__name__} {item!r}; rows are dicts")
        routed.setdefault(gate, []).extend(rows)
    return routed
