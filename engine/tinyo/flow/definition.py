"""Provides ``Flow``: steps, hops, parameters, variables and services, and the checks made while building.

Deadlock avoidance, by design. Buffers are bounded (``channel.Inbox``), so a flow could deadlock
only if some instance waited forever. Every step instance consumes its inbox in arrival order
across all incoming hops, never "hop A first, then hop B" (no built-in step reads one input
selectively, and the step protocol gives no way to), and cycles are rejected when the hop that
would close one is added. With those two rules a run always makes progress: an instance blocked on
a full hop points at a consumer whose inbox is not empty, so that consumer is running or is itself
blocked further downstream; following the chain in an acyclic graph ends at an instance that runs
(a sink is never blocked). So the classic split-then-rejoin shape (A feeds B and C, both feed D)
is safe with any buffer sizes; master data that must be complete before a stream is matched (the
case that deadlocks stream lookups elsewhere) is loaded by ``Lookup`` from a file or a table, not
from a hop. The only deadlock-prone graph, a cycle, is reported by ``Flow.hop``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .base import FunctionStep, Step, function_name, takes_ctx
from .context import FlowInfo, Values, interpolate
from .errors import FlowDefinitionError, FlowFailed, FlowParameterError
from .plan import HopDef, StepDef

if TYPE_CHECKING:
    from .runner import FlowRun


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""A parameter default meaning "must be given when the flow is run"."""

DEFAULT_CHUNK = 1000
"""Rows per chunk that source steps produce."""
DEFAULT_BUFFER = 10_000
"""Rows a hop buffers by default (per target instance)."""
MAX_INSTANCES = 256
"""Upper bound on a step's instance count."""
RESERVED_PARAMS = frozenset({"on_metrics"})


class Flow:
    """A data flow: steps joined by hops, run with parameters; usable as the op of a DES.

    ``params`` are the parameters with their defaults (``REQUIRED`` for none). ``variables`` is a
    dict of values, of ``${params.x}`` strings, or of callables ``fn(params)`` (or ``fn(params,
    variables_so_far)``), or one callable ``fn(params) -> dict``; a callable may validate the
    parameters by raising. ``services`` is built the same way (database paths and the like).
    ``chunk_size`` is the rows per chunk of source steps; ``buffer`` the default rows per hop.
    """

    def __init__(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
        services: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        buffer: int = DEFAULT_BUFFER,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise FlowDefinitionError(f"a flow needs a non-empty name, got {name!r}")
        self.name = name
        self.params: dict[str, Any] = dict(params or {})
        bad = sorted(RESERVED_PARAMS & set(self.params))
        if bad:
            raise FlowDefinitionError(f"flow {name!r}: parameter name(s) {bad} are reserved by Flow.run")
        self.variables = variables
        self.services = services
        _positive(name, "chunk_size", chunk_size)
        _positive(name, "buffer", buffer)
        self.chunk_size = chunk_size
        self.buffer = buffer
        self.steps: dict[str, StepDef] = {}
        self.hops: list[HopDef] = []
        caller = sys._getframe(1).f_globals.get("__name__")
        if isinstance(caller, str):
            self.__module__ = caller

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, steps={list(self.steps)}, hops={len(self.hops)})"

    # -- building -------------------------------------------------------------------------------

    def step(
        self,
        name: str,
        impl: Step | Callable[..., Any],
        instances: int | str | Callable[..., int] = 1,
        *,
        processes: bool = False,
        mode: str | None = None,
        gates: Iterable[str] = (),
        window: int = 2,
    ) -> StepDef:
        """Add a step. ``impl`` is a built-in step or ``fn(row, ctx)``; ``processes=True`` (or
        ``mode="process"``) runs its instances in worker processes (``fn`` must be module-level)."""
        where = f"flow {self.name!r}"
        if not isinstance(name, str) or not name:
            raise FlowDefinitionError(f"{where}: a step needs a non-empty name, got {name!r}")
        if name in self.steps:
            raise FlowDefinitionError(f"{where} already has a step named {name!r}")
        if mode is None:
            mode = "process" if processes else "thread"
        if mode not in ("thread", "process"):
            raise FlowDefinitionError(f"{where} step {name!r}: mode must be 'thread' or 'process', got {mode!r}")
        if isinstance(impl, type) and issubclass(impl, Step):
            raise FlowDefinitionError(
                f"{where} step {name!r}: got the class {impl.__name__}; pass an instance, e.g. {impl.__name__}(...)"
            )
        step = impl if isinstance(impl, Step) else FunctionStep(impl, gates)
        if isinstance(impl, Step) and gates:
            step.gates = tuple(dict.fromkeys((*step.gates, *gates)))
        if isinstance(instances, bool) or not isinstance(instances, (int, str)) and not callable(instances):
            raise FlowDefinitionError(
                f"{where} step {name!r}: instances must be an int, a '${{params.x}}' string or a function of "
                f"the parameters, got {instances!r}"
            )
        if isinstance(instances, int) and not 1 <= instances <= MAX_INSTANCES:
            raise FlowDefinitionError(
                f"{where} step {name!r}: instances must be an int from 1 to {MAX_INSTANCES}, got {instances!r}"
            )
        if not isinstance(window, int) or window < 1:
            raise FlowDefinitionError(f"{where} step {name!r}: window must be an int >= 1, got {window!r}")
        step.check(name, self.name)
        if mode == "process":
            from .process import check_importable

            check_importable(step, f"{where} step {name!r}")
        definition = StepDef(self, name, step, instances, mode, window)
        self.steps[name] = definition
        return definition

    def hop(
        self,
        source: StepDef | str,
        target: StepDef | str,
        gate: str = "out",
        partition: str | Callable[[dict[str, Any]], Any] | None = None,
        buffer: int | None = None,
    ) -> HopDef:
        """Join ``source``'s ``gate`` to ``target``. ``partition`` (a field name or a function of the
        row) sends rows with equal values to the same target instance; ``buffer`` is in rows."""
        a = self._step_name(source, "source")
        b = self._step_name(target, "target")
        where = f"flow {self.name!r} hop {a!r}.{gate} -> {b!r}"
        if not isinstance(gate, str) or not gate:
            raise FlowDefinitionError(f"{where}: gate must be a non-empty string, got {gate!r}")
        if a == b:
            raise FlowDefinitionError(f"{where}: a step cannot feed itself (that cycle could deadlock)")
        if buffer is not None:
            _positive(self.name, f"hop {a!r}->{b!r} buffer", buffer)
        if partition is not None and not (callable(partition) or isinstance(partition, str)):
            raise FlowDefinitionError(f"{where}: partition must be a field name or a function of the row, got {partition!r}")
        for hop in self.hops:
            if (hop.source, hop.gate, hop.target) == (a, gate, b):
                raise FlowDefinitionError(f"{where}: this hop exists already")
        cycle = self._path(b, a)
        if cycle:
            raise FlowDefinitionError(
                f"{where} would close the cycle {' -> '.join([a, *cycle])}; cycles are not allowed "
                "(with bounded buffers they could deadlock)"
            )
        hop = HopDef(a, b, gate, partition, buffer)
        self.hops.append(hop)
        return hop

    def _step_name(self, ref: StepDef | str, role: str) -> str:
        if isinstance(ref, StepDef):
            if ref.flow is not self or self.steps.get(ref.name) is not ref:
                raise FlowDefinitionError(f"flow {self.name!r}: hop {role} {ref.name!r} is a step of another flow")
            return ref.name
        if isinstance(ref, str) and ref in self.steps:
            return ref
        known = ", ".join(self.steps) or "none yet"
        raise FlowDefinitionError(f"flow {self.name!r}: hop {role} {ref!r} is not a step of this flow (steps: {known})")

    def _path(self, start: str, goal: str) -> list[str]:
        """Step names of a path ``start -> ... -> goal`` along hops, or [] if there is none."""
        seen: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            if node == goal:
                return path
            if node in seen:
                continue
            seen.add(node)
            for hop in self.hops:
                if hop.source == node:
                    stack.append((hop.target, [*path, hop.target]))
        return []

    # -- resolving a run's values ---------------------------------------------------------------

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``given``; FlowParameterError for unknown or missing names."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise FlowParameterError(
                f"flow {self.name!r} has no parameter {unknown[0]!r} (given {unknown}); its parameters are: {known}"
            )
        merged = dict(self.params)
        merged.update(given)
        missing = sorted(k for k, v in merged.items() if v is REQUIRED)
        if missing:
            raise FlowParameterError(f"flow {self.name!r}: parameter(s) {missing} must be given (they have no default)")
        return merged

    def compute(self, kind: str, spec: Any, params: Values, variables: Mapping[str, Any], info: FlowInfo) -> dict[str, Any]:
        """Variables or services from their spec; FlowParameterError naming the failing entry."""
        if spec is None:
            return {}
        where = f"flow {self.name!r}"
        if callable(spec) and not isinstance(spec, Mapping):
            try:
                value = spec(params, Values(variables, "variables")) if takes_ctx(spec) else spec(params)
            except Exception as exc:
                raise FlowParameterError(
                    f"{where}: {kind} function {function_name(spec)} rejected parameters {dict(params)}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(value, Mapping):
                raise FlowParameterError(f"{where}: {kind} function {function_name(spec)} returned {value!r}, not a dict")
            return dict(value)
        if not isinstance(spec, Mapping):
            raise FlowParameterError(f"{where}: {kind} must be a dict or a function of the parameters, got {spec!r}")
        out: dict[str, Any] = {}
        for key, value in spec.items():
            done = {**variables, **out} if kind == "variables" else dict(variables)
            scope = {
                "params": params,
                "vars": done,
                "variables": done,
                "flow": {"name": info.name, "run_id": info.run_id},
            }
            try:
                if callable(value):
                    value = value(params, Values(done, "variables")) if takes_ctx(value) else value(params)
                elif isinstance(value, str):
                    value = interpolate(value, scope, f"{where} {kind[:-1]} {key!r}")
            except FlowParameterError:
                raise
            except Exception as exc:
                raise FlowParameterError(
                    f"{where}: {kind[:-1]} {key!r} rejected parameters {dict(params)}: {type(exc).__name__}: {exc}"
                ) from exc
            out[key] = value
        return out

    def instance_count(self, step: StepDef, params: Values, variables: Mapping[str, Any], info: FlowInfo) -> int:
        """How many instances ``step`` runs with these parameters."""
        where = f"flow {self.name!r}"
        spec = step.instances
        if isinstance(spec, int):
            return spec
        if isinstance(spec, str):
            scope = {"params": params, "vars": variables, "variables": variables,
                     "flow": {"name": info.name, "run_id": info.run_id}}
            text = interpolate(spec, scope, f"{where} step {step.name!r} setting 'instances'")
            try:
                value: Any = int(text)
            except ValueError:
                raise FlowParameterError(f"{where} step {step.name!r}: instances {spec!r} gave {text!r}, not an integer") from None
        else:
            try:
                value = spec(params, Values(variables, "variables")) if takes_ctx(spec) else spec(params)
            except Exception as exc:
                raise FlowParameterError(
                    f"{where} step {step.name!r}: instances function raised {type(exc).__name__}: {exc}"
                ) from exc
        return _instance_count(where, step.name, value)

    # -- running ----------------------------------------------------------------------------------

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        on_metrics: Callable[[dict[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> FlowRun:
        """Run the flow to the end and return its ``FlowRun`` (``ok``, ``result``, ``error``, ``metrics``).

        Parameters come from ``params`` and/or keywords. ``on_metrics(sample)`` receives every
        metrics sample in addition to ``tinyo.runtime`` (the engine, or a ``metrics_sink``).
        """
        from .runner import execute

        given = dict(params or {})
        given.update(kwargs)
        return execute(self, given, on_metrics)

    def __call__(self, context: Mapping[str, Any]) -> Any:
        """Run as the op of a DES: ``context['config']`` gives the parameters; raise FlowFailed on failure."""
        config = context.get("config") if isinstance(context, Mapping) else None
        run = self.run(dict(config or {}))
        if not run.ok:
            raise FlowFailed(run.error or f"flow {self.name!r} failed", run)
        return run.result

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by reference: a module-level flow is found again by its module and attribute name."""
        module = sys.modules.get(self.__module__)
        for attr, value in vars(module).items() if module is not None else ():
            if value is self:
                return (_find_flow, (self.__module__, getattr(module, "__file__", None), attr))
        raise FlowDefinitionError(
            f"flow {self.name!r} cannot be sent to another process: it is not a module-level variable of "
            f"{self.__module__!r}"
        )


def _find_flow(module: str, file: str | None, attr: str) -> Flow:
    from .modules import import_module_or_file

    flow = getattr(import_module_or_file(module, file), attr)
    if not isinstance(flow, Flow):
        raise FlowDefinitionError(f"{module}.{attr} is {type(flow).__name__}, not a Flow")
    return flow


def _positive(flow: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FlowDefinitionError(f"flow {flow!r}: {name} must be an int >= 1 (rows), got {value!r}")


def _instance_count(where: str, step: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INSTANCES:
        raise FlowParameterError(
            f"{where} step {step!r}: instances must be an int from 1 to {MAX_INSTANCES}, got {value!r}"
        )
    return value
