"""Provides the small executor interface the engine talks to (the factory that picks one is in ``factory``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ..messages import Report
    from ..worker import Task

Sink = Callable[["Report"], None]
"""How an executor reports to the engine (any thread): ``messages.WorkerReports`` (start / out / metric /
done / ran messages of the worker protocol), ``WorkerLost``, ``Requeue`` and ``WorkerState``."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as the console shows it."""

    name: str
    pid: int | None
    state: Literal["idle", "busy", "starting", "dead"]
    run_id: int | None
    des_id: str | None
    op: str | None
    since: float | None


class Executor(Protocol):
    """Runs tasks somewhere and reports back through the sink; never blocks the engine loop for long."""

    name: str

    def start(self) -> None:
        """Bring the workers up."""
        ...

    def free_slots(self) -> int:
        """How many more tasks ``submit`` accepts now."""
        ...

    def submit(self, tasks: list[Task]) -> None:
        """Hand tasks over (at most ``free_slots()`` of them)."""
        ...

    def cancel(self, run_id: int, cause: Literal["cancel", "timeout"] = "cancel") -> bool:
        """Stop a run (running or not yet started); False if the executor does not hold it."""
        ...

    def running(self) -> dict[int, float]:
        """Run id → start time (engine clock) of the runs a worker has started."""
        ...

    def workers(self) -> list[WorkerInfo]:
        ...

    def shutdown(self, grace: float) -> list[int]:
        """Stop: wait up to ``grace`` seconds for running ops, then kill. Returns run ids not finished."""
        ...

    # Optional, for executors that run apart from the orchestrator (e.g. a cluster):
    #   def reconcile(self, tasks: list[Task]) -> list[int]
    # Called once after start() with the runs the store still has open from the last engine. Returns
    # the run ids the executor will report on (still running there, or finished: their start/out/done
    # messages then come through the sink as usual); the others are marked interrupted and run again.
    #   def detached(self) -> list[int]
    # Called after shutdown(): the run ids left running apart from the orchestrator; the engine keeps
    # them open in the store (not interrupted) for the next start's reconcile.
