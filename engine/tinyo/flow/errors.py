"""Provides the data-flow exception types; every message names the flow, step, instance and value."""

from __future__ import annotations

from ..errors import TinyoError


class FlowError(TinyoError):
    """Base of every error the data-flow runtime raises on purpose."""


class FlowDefinitionError(FlowError):
    """The flow is built wrongly: unknown step, duplicate name, bad hop, a cycle, a bad setting."""


class FlowParameterError(FlowError):
    """A parameter is unknown, or a variable or service computed from the parameters failed."""


class InterpolationError(FlowError):
    """A ``${...}`` reference in a step setting names nothing the step can see."""


class ProcessModeError(FlowError):
    """A step cannot run in processes: its function or settings cannot be sent to a worker."""


class FlowFailed(FlowError):
    """Raised by ``Flow.__call__`` (a flow used as an op) when the run failed.

    ``run`` is the failed ``FlowRun``; the message is the run's error (step, instance, traceback).
    """

    def __init__(self, message: str, run: object | None = None) -> None:
        super().__init__(message)
        self.run = run


class Stopped(Exception):
    """Internal: the run is being stopped (another instance failed); unwinds a step instance."""


class RowFailure(Exception):
    """Internal: a row raised in a step with no ``error`` hop; carries what the flow error reports."""

    def __init__(self, message: str, traceback_text: str) -> None:
        super().__init__(message)
        self.message = message
        self.traceback_text = traceback_text
