"""Provides Run Flow: run another flow for each row and put its result in a field of the row."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .base import Output, Step
from .context import Row
from .errors import FlowDefinitionError, FlowFailed, RowFailure, Stopped
from .runner import execute

if TYPE_CHECKING:
    from .definition import Flow


class RunFlow(Step):
    """Run Flow: for each input row, run ``flow`` and set ``row[result_field]`` to its result.

    Parameters are ``params`` (fixed values; strings may use ``${...}``) updated with values taken
    from the row: ``from_row`` maps parameter names to field names (a list means same names), or is
    a function of the row returning a dict. A failed sub-flow is an error for that row (the
    ``error`` gate gets it, or the flow fails with the sub-flow's message). Each sub-flow run
    reports its own metrics (its lanes show in the console) unless ``report_metrics=False``, which
    suits many short runs.
    """

    settings = ("params",)

    def __init__(
        self,
        flow: Flow,
        *,
        params: Mapping[str, Any] | None = None,
        from_row: Mapping[str, str] | Iterable[str] | Callable[[Row], Mapping[str, Any]] | None = None,
        result_field: str = "result",
        report_metrics: bool = True,
    ) -> None:
        from .definition import Flow

        if not isinstance(flow, Flow):
            raise FlowDefinitionError(f"RunFlow needs a Flow, got {flow!r}")
        self.flow = flow
        self.params = dict(params or {})
        if from_row is None or callable(from_row):
            self.from_row = from_row
        elif isinstance(from_row, Mapping):
            self.from_row = dict(from_row)
        else:
            self.from_row = {name: name for name in from_row}
        self.result_field = result_field
        self.report_metrics = report_metrics

    def describe(self) -> str:
        return f"RunFlow({self.flow.name!r})"

    def _params(self, row: Row) -> dict[str, Any]:
        params = dict(self.params)
        spec = self.from_row
        if callable(spec):
            params.update(spec(row))
        elif spec:
            for param, fieldname in spec.items():
                params[param] = row[fieldname]
        return params

    def process(self, rows: list[Row]) -> Output:
        out: list[Row] = []
        for row in rows:
            try:
                run = execute(self.flow, self._params(row), None, self.report_metrics)
                if not run.ok:
                    raise FlowFailed(f"sub-flow {self.flow.name!r} failed: {run.message}", run)
                row[self.result_field] = run.result
                out.append(row)
            except (Stopped, RowFailure):
                raise
            except Exception as exc:
                self.ctx.row_failed(row, exc)
        return out
