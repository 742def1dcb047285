"""Provides the typed messages that reach the engine loop from other threads: commands and queries
(from the console, the CLI, a signal handler, the watcher; the queries themselves are typed in
``tinyo.queries``) and executor reports (from the threads that watch the workers). Only the loop reads
them and only the loop changes engine state.

Facts going the other way, up from the engine, are the bus events in ``events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Union

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from .worker import Task


# ---------------------------------------------------------------- wire forms

@dataclass(frozen=True, slots=True)
class Wire:
    """How a client of the control channel asks for a typed command (``control.protocol`` derives its
    table of commands from these): the command's name there, and its arguments, which are the
    command's fields but for those ``renamed`` or ``replaced``."""

    name: str
    renamed: tuple[tuple[str, str], ...] = ()
    """(field, argument): the argument that carries the field under another name."""
    replaced: tuple[tuple[str, str, type, Any], ...] = ()
    """(field, argument, type, default): a field the engine works out from an argument of the channel's
    own (a client says whether to stop ``now``; the engine knows its grace period)."""


# ---------------------------------------------------------------- commands (any thread -> loop)

@dataclass(frozen=True, slots=True)
class FireTimer:
    """Fire the timer ``name`` now, off its grid."""

    wire: ClassVar[Wire] = Wire("fire", renamed=(("name", "timer"),))
    name: str


@dataclass(frozen=True, slots=True)
class Rerun:
    """Run a DES again even if it is up to date; with ``downstream``, all that depends on it too."""

    wire: ClassVar[Wire] = Wire("rerun", renamed=(("des_id", "target"),))  # a DES id or a document name
    des_id: str
    downstream: bool = False


@dataclass(frozen=True, slots=True)
class RerunDocument:
    """Rerun the DES that produces document ``name``."""

    wire: ClassVar[Wire] = Wire("rerun", renamed=(("name", "target"),))
    name: str
    downstream: bool = False


@dataclass(frozen=True, slots=True)
class Pause:
    """Stop feeding events to the generators (they are still stored, in order)."""

    wire: ClassVar[Wire] = Wire("pause")


@dataclass(frozen=True, slots=True)
class Resume:
    """Feed events to the generators again."""

    wire: ClassVar[Wire] = Wire("resume")


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a queued or running run."""

    wire: ClassVar[Wire] = Wire("cancel")
    run_id: int


@dataclass(frozen=True, slots=True)
class Rescan:
    """Look at the watched folders for files the watcher did not report."""

    wire: ClassVar[Wire] = Wire("rescan")


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop gracefully, giving running ops ``grace`` seconds; a later Stop with a shorter grace
    shortens a stop under way (a second Ctrl-C)."""

    wire: ClassVar[Wire] = Wire("stop", replaced=(("grace", "now", bool, False),))
    grace: float


Command = Union[FireTimer, Rerun, RerunDocument, Pause, Resume, Cancel, Rescan, Stop]


@dataclass(frozen=True, slots=True)
class Inject:
    """Take ``event`` in as if it had happened (source ``manual``). The intake takes it (``Engine.inject``),
    not the loop's inbox, so it is no ``Command``; a client asks for it like one."""

    wire: ClassVar[Wire] = Wire("inject")
    event: str


Request = Union[Inject, Command]
"""What a client of the control channel may ask the engine to do: each has its ``wire`` form."""


# ---------------------------------------------------------------- queries (any thread -> loop -> caller)

@dataclass(frozen=True, slots=True)
class Query:
    """Work run on the loop's thread for another one (``Engine.call``: the answer to a typed query of
    ``tinyo.queries``, or a test's look at the parts); the answer (or exception) goes to ``future``."""

    ask: Callable[[], Any]
    future: Future[Any]


# ---------------------------------------------------------------- executor reports (executor threads -> loop)

WireKind = Literal["start", "out", "metric", "done", "ran", "fatal", "ready", "withdrawn"]


class WorkerMessage(NamedTuple):
    """One message of the worker protocol, as a worker process sends it over its pipe (a plain tuple
    on the wire, so a batch pickles cheaply). ``payload`` by kind:

    - ``start``: (worker, start time); ``out``: (stream, line); ``metric``: FlowMetrics fields;
    - ``done``: (ok, error, traceback, result repr, duration seconds);
    - ``ran``: a ``start`` and its ``done`` in one, (worker, start time, ok, error, traceback, result repr,
      duration seconds): what a process worker sends for an op that ended before its start was sent;
    - ``fatal``: a message (the worker cannot start); ``ready``: its pid; ``withdrawn``: None.
    """

    kind: WireKind
    run_id: int
    payload: Any


@dataclass(frozen=True, slots=True)
class WorkerReports:
    """Messages from one worker, in the order it sent them."""

    worker: str
    messages: list[tuple[str, int, Any]]
    """WorkerMessage-shaped tuples (see ``WorkerMessage``)."""


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """A worker died: the run it was running (if any) failed; the others it held were not started and
    go back to the queue."""

    worker: str
    pid: int | None
    reason: str
    running_run_id: int | None
    kill_cause: Literal["cancel", "timeout"] | None
    requeue: list[Task]


@dataclass(frozen=True, slots=True)
class Requeue:
    """Tasks a worker gave back unstarted (withdrawn): they go back to the queue."""

    worker: str
    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class WorkerState:
    """A worker came up, or could not, or went away."""

    worker: str
    pid: int | None
    state: Literal["idle", "busy", "starting", "dead"]
    detail: str


Report = Union[WorkerReports, WorkerLost, Requeue, WorkerState]

Message = Union[Command, Query, Report]
"""Everything the engine's inbox carries."""
