"""Provides what a step instance sees: parameters, variables, services, identity, ``${...}`` settings."""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import InterpolationError, RowFailure

Row = dict[str, Any]
"""A data row: a plain dict that steps read, add to, remove from and replace."""

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")


class Values(Mapping[str, Any]):
    """A read-only mapping that also allows attribute access (``ctx.params.n`` or ``ctx.params['n']``)."""

    __slots__ = ("_data", "_label")

    def __init__(self, data: Mapping[str, Any], label: str = "values") -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_label", label)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            known = ", ".join(sorted(self._data)) or "none"
            raise AttributeError(f"{self._label} has no {name!r} (it has: {known})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._label} are read-only")

    def __repr__(self) -> str:
        return f"{self._label}({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Values, (self._data, self._label))


class FlowInfo:
    """The provided flow variables: ``name`` and ``run_id``."""

    __slots__ = ("name", "run_id")

    def __init__(self, name: str, run_id: str) -> None:
        self.name = name
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"FlowInfo(name={self.name!r}, run_id={self.run_id!r})"


class InstanceInfo:
    """Which copy of a step this is: ``index`` (0-based) of ``count``."""

    __slots__ = ("index", "count")

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self.count = count

    def __repr__(self) -> str:
        return f"InstanceInfo(index={self.index}, count={self.count})"


class StepContext:
    """The second argument of a step function: everything one step instance may use.

    One context per step instance; it lives in the instance's thread (or worker process).
    """

    def __init__(
        self,
        *,
        flow: FlowInfo,
        step: str,
        instance: InstanceInfo,
        params: Mapping[str, Any],
        variables: Mapping[str, Any],
        services: Mapping[str, Any],
        error_hopped: bool = False,
        hopped: frozenset[str] = frozenset(),
        chunk_size: int = 1000,
        result: Any = None,
        has_input: bool = False,
    ) -> None:
        self.flow = flow
        """The flow's name and this run's id."""
        self.step = step
        """This step's name."""
        self.instance = instance
        """This instance's index and the step's instance count."""
        self.params = params if isinstance(params, Values) else Values(params, "params")
        """The run's parameters (defaults overridden by the values the run was given)."""
        self.variables = variables if isinstance(variables, Values) else Values(variables, "variables")
        """The flow variables, computed from the parameters when the run started."""
        self.services = services if isinstance(services, Values) else Values(services, "services")
        """The flow services (database paths, connections settings, ...)."""
        self.state: dict[str, Any] = {}
        """Scratch space private to this instance (a plain function may keep running totals here)."""
        self.error_hopped = error_hopped
        """True when the step's ``error`` gate is hopped: failing rows go there instead of failing the flow."""
        self.hopped = hopped
        """The gates of this step that have at least one hop."""
        self.chunk_size = chunk_size
        """How many rows a source step puts in one chunk."""
        self.result = result
        """Where Set Flow Result records the flow result (None in a worker process)."""
        self.has_input = has_input
        """True when a hop arrives at this step (False: it runs once on the kickstart row)."""
        self.counters: dict[str, int] = {}
        """Step-specific counts reported with the metrics (e.g. Lookup's ``matched``/``missed``)."""
        self.pending_errors: list[Row] = []
        """Error rows produced since the runtime last collected them (internal)."""
        self.errors = 0
        """How many rows failed in this instance."""

    @property
    def vars(self) -> Values:
        """Short name of ``variables``."""
        return self.variables  # type: ignore[return-value]

    @property
    def where(self) -> str:
        """``flow 'f' step 's' instance i/n``, for messages."""
        return f"flow {self.flow.name!r} step {self.step!r} instance {self.instance.index}/{self.instance.count}"

    def scope(self) -> dict[str, Any]:
        """What ``${...}`` references may name."""
        return {
            "params": self.params,
            "vars": self.variables,
            "variables": self.variables,
            "services": self.services,
            "instance": {"count": self.instance.count, "index": self.instance.index},
            "flow": {"name": self.flow.name, "run_id": self.flow.run_id},
            "step": {"name": self.step},
        }

    def interpolate(self, text: str, setting: str = "setting") -> Any:
        """``text`` with every ``${a.b}`` replaced (``$${`` stands for a literal ``${``).

        A setting that is exactly one reference (``"${params.n}"``) takes the value itself, keeping
        its type (an int stays an int, e.g. for SQL arguments).
        """
        where = f"{self.where}, setting {setting!r}"
        whole = _REFERENCE.fullmatch(text)
        if whole is not None and whole.group(0) != "$${":
            return resolve(whole.group(1).strip(), self.scope(), where)
        return interpolate(text, self.scope(), where)

    def row_failed(self, row: Any, exc: BaseException) -> None:
        """Report a row that raised: an error row on the ``error`` gate, or (no such hop) fail the flow."""
        self.errors += 1
        tb = "".join(traceback.format_exception(exc))
        text = f"{type(exc).__name__}: {exc}"
        if self.error_hopped:
            self.pending_errors.append(
                {
                    "step": self.step,
                    "instance": self.instance.index,
                    "row": row,
                    "error": text,
                    "error_type": type(exc).__name__,
                    "traceback": tb,
                }
            )
            return
        shown = repr(row)
        if len(shown) > 500:
            shown = shown[:500] + "...}"
        raise RowFailure(f"{self.where} failed on row {shown}: {text}", tb) from exc

    def take_errors(self) -> list[Row]:
        """The error rows produced since the last call."""
        rows = self.pending_errors
        self.pending_errors = []
        return rows


def interpolate(text: str, scope: Mapping[str, Any], where: str) -> str:
    """Replace ``${name.key...}`` references in ``text`` with values looked up in ``scope``."""
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        ref = match.group(1).strip()
        return str(resolve(ref, scope, where))

    return _REFERENCE.sub(replace, text)


def resolve(ref: str, scope: Mapping[str, Any], where: str) -> Any:
    """The value a dotted reference such as ``params.n`` names; InterpolationError when it names nothing."""
    parts = ref.split(".") if ref else []
    if len(parts) < 2 or not all(parts):
        raise InterpolationError(
            f"{where}: ${{{ref}}} is not a valid reference; use ${{params.NAME}}, ${{vars.NAME}}, "
            f"${{services.NAME}}, ${{instance.count}}, ${{instance.index}}, ${{flow.name}} or ${{flow.run_id}}"
        )
    value: Any = scope
    walked: list[str] = []
    for part in parts:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            if isinstance(value, Mapping):
                known = ", ".join(sorted(str(k) for k in value)) or "nothing"
                holder = ".".join(walked) or "the scope"
                raise InterpolationError(
                    f"{where}: unknown reference ${{{ref}}}: {holder} has no {part!r} (it has: {known})"
                )
            raise InterpolationError(
                f"{where}: unknown reference ${{{ref}}}: {'.'.join(walked)} is {value!r}, which has no fields"
            )
        walked.append(part)
    return value
