"""Provides the parts of a flow's plan that the runner, its instances and worker processes share:
steps and hops as defined, and the faces the flow and the runner show them (so those lower modules
never import the definition or the runner back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .routing import partition_function

if TYPE_CHECKING:
    from .base import Step
    from .binding import ThreadBinding
    from .channel import StopSignal
    from .context import FlowInfo, Values


class StepDef:
    """A step of a flow: its name, implementation, instance count and mode (``thread``/``process``)."""

    def __init__(self, flow: FlowPlan, name: str, impl: Step, instances: Any, mode: str, window: int) -> None:
        self.flow = flow
        self.name = name
        self.impl = impl
        self.instances = instances
        """An int, a ``${...}`` string, or a callable of the parameters (and variables)."""
        self.mode = mode
        self.window = window
        """Process mode: chunks sent ahead to a worker before its results come back."""

    def __repr__(self) -> str:
        return f"StepDef({self.name!r}, {self.impl.describe()}, instances={self.instances!r}, mode={self.mode!r})"


class HopDef:
    """A hop from a step's gate to another step, with its partitioning and buffer."""

    def __init__(self, source: str, target: str, gate: str, partition: Any, buffer: int | None) -> None:
        self.source = source
        self.target = target
        self.gate = gate
        self.partition_spec = partition
        self.partition = partition_function(partition)
        self.buffer = buffer

    def __repr__(self) -> str:
        extra = f", partition={self.partition_spec!r}" if self.partition_spec is not None else ""
        return f"HopDef({self.source!r}.{self.gate} -> {self.target!r}{extra})"


class FlowPlan(Protocol):
    """What a run needs of a ``Flow`` (``definition.Flow`` is the one implementation)."""

    name: str
    steps: dict[str, StepDef]
    hops: list[HopDef]
    buffer: int
    chunk_size: int
    variables: Any
    services: Any

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]: ...

    def compute(self, kind: str, spec: Any, params: Values, variables: Mapping[str, Any], info: FlowInfo) -> dict[str, Any]: ...

    def instance_count(self, step: StepDef, params: Values, variables: Mapping[str, Any], info: FlowInfo) -> int: ...


class RunnerPort(Protocol):
    """What a step instance (in a thread or feeding a worker process) needs of the run it is part of
    (``runner.Runner`` is the one implementation)."""

    flow: FlowPlan
    binding: ThreadBinding
    stop: StopSignal
    processes: list[Any]

    def fail(self, inst: Any, message: str, tb: str) -> None: ...

    def instance_done(self, inst: Any) -> None: ...
