"""Provides the typed queries: the read-only questions the console, the CLI and control clients ask the
engine, each a frozen dataclass whose fields are its arguments (types, defaults, bounds).

``Engine.ask`` answers one in-process, ``RemoteEngine.ask`` over the control socket; both reach the same
answers (``core.queries``, by the query's ``wire`` name). The control protocol derives its table of
queries from these classes, as it derives its commands from ``messages``. ``Asking`` gives both handles
the named calls (``stats()``, ``doc_infos(names)``...) in terms of ``ask``.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from . import events as ev
from .arguments import MOST, ArgumentError, Spec, check, field_spec
from .engine_state import DESDetails, DESInfo, DocInfo, EngineStats, RunInfo
from .executors.base import WorkerInfo
from .groups import GroupSummary
from .history import RECENT, History, PastEvent, PastRun

LIST_MAX = 5000
"""The most items a query may ask for (documents, names, ids, lines): an answer stays a few MB at most."""
OFFSET_MAX = 1 << 62

QueryError = ArgumentError
"""A query that is not valid (an unknown one, a wrong argument, a count out of range)."""


def _count(default: int, most: int = LIST_MAX) -> Any:
    return field(default=default, metadata={MOST: most})


def _names() -> Any:
    return field(metadata={MOST: LIST_MAX})


class _Query:
    __slots__ = ()
    wire: ClassVar[str]
    """The query's name on the control channel, and the name of its answer in ``core.queries``."""
    on_loop: ClassVar[bool] = True
    """Answered on the engine's loop thread (False: by a part that answers for itself, under its own lock)."""

    @staticmethod
    def decode(value: Any) -> Any:
        """The answer from its JSON form (what crossed the socket)."""
        return value


# ------------------------------------------------------------------------------------------ the queries
@dataclass(frozen=True, slots=True)
class Stats(_Query):
    """The engine's counters (the console's header, ``tinyo status``)."""

    wire: ClassVar[str] = "stats"

    @staticmethod
    def decode(value: Any) -> EngineStats:
        return EngineStats(**value)


@dataclass(frozen=True, slots=True)
class Explain(_Query):
    """Why a document or DES ``name`` is as it is, in words (``tinyo why``)."""

    wire: ClassVar[str] = "explain"
    name: str


@dataclass(frozen=True, slots=True)
class Details(_Query):
    """Everything the details screen shows about DES ``des_id`` (None: no such DES)."""

    wire: ClassVar[str] = "des_details"
    des_id: str

    @staticmethod
    def decode(value: Any) -> DESDetails | None:
        if value is None:
            return None
        return DESDetails(**{**value, "deps": frozenset(value["deps"]), "targs": frozenset(value["targs"]),
                             "ops": [(name, cfg) for name, cfg in value["ops"]],
                             "runs": [RunInfo(**r) for r in value["runs"]]})


@dataclass(frozen=True, slots=True)
class Documents(_Query):
    """Documents whose name starts with ``prefix`` (all: None), in name order, at most ``limit``."""

    wire: ClassVar[str] = "documents"
    prefix: str | None = None
    limit: int = _count(1000)

    decode = staticmethod(lambda value: [_doc(d) for d in value])


@dataclass(frozen=True, slots=True)
class GroupsSummary(_Query):
    """Every document group with its counts per state (the tree's top level)."""

    wire: ClassVar[str] = "groups_summary"

    @staticmethod
    def decode(value: Any) -> list[GroupSummary]:
        return [GroupSummary(g["pattern"], g["count"], g["first"], tuple((s, n) for s, n in g["states"]))
                for g in value]


@dataclass(frozen=True, slots=True)
class GroupMembers(_Query):
    """One page of a group's documents, in name order."""

    wire: ClassVar[str] = "group_members"
    pattern: str
    offset: int = _count(0, OFFSET_MAX)
    limit: int = _count(200)

    decode = staticmethod(lambda value: [_doc(d) for d in value])


@dataclass(frozen=True, slots=True)
class Locate(_Query):
    """The group of document ``name`` and its position there, in name order (None: unknown)."""

    wire: ClassVar[str] = "locate"
    name: str

    decode = staticmethod(lambda value: None if value is None else (value[0], value[1]))


@dataclass(frozen=True, slots=True)
class DocInfos(_Query):
    """What is known about each document of ``names`` (unknown ones are left out)."""

    wire: ClassVar[str] = "doc_infos"
    names: tuple[str, ...] = _names()

    decode = staticmethod(lambda value: [_doc(d) for d in value])


@dataclass(frozen=True, slots=True)
class DESInfos(_Query):
    """The tree's view of each DES of ``ids`` (unknown ones are left out)."""

    wire: ClassVar[str] = "des_infos"
    ids: tuple[str, ...] = _names()

    @staticmethod
    def decode(value: Any) -> list[DESInfo]:
        return [DESInfo(**{**d, "deps": tuple(d["deps"]), "targs": tuple(d["targs"]), "ops": tuple(d["ops"])})
                for d in value]


@dataclass(frozen=True, slots=True)
class FindDocuments(_Query):
    """The first ``limit`` document names, in name order, that contain ``pattern`` (case-insensitive), or
    with ``regex`` that match it as a case-insensitive regex (a substring when it is no valid regex)."""

    wire: ClassVar[str] = "find_documents"
    pattern: str
    regex: bool = False
    limit: int = _count(1)


@dataclass(frozen=True, slots=True)
class DESOfEvent(_Query):
    """The ids of the DES the generators made of ``event`` (a scan: for a key press, not a repaint)."""

    wire: ClassVar[str] = "des_of_event"
    event: str
    limit: int = _count(100)


@dataclass(frozen=True, slots=True)
class RunStatus(_Query):
    """``queued``/``running`` while run ``run_id`` is open, else how it ended (None: no such run)."""

    wire: ClassVar[str] = "run_status"
    run_id: int


@dataclass(frozen=True, slots=True)
class RecentHistory(_Query):
    """The recent past from the state file: the last ``events`` events and ``runs`` runs, with at most
    ``lines`` of their output lines (the newest)."""

    wire: ClassVar[str] = "history"
    events: int = _count(RECENT)
    runs: int = _count(RECENT)
    lines: int = _count(RECENT)

    @staticmethod
    def decode(value: Any) -> History:
        return History([PastEvent(**e) for e in value["events"]],
                       [PastRun(**{**r, "output": tuple(r["output"])}) for r in value["runs"]])


@dataclass(frozen=True, slots=True)
class RecentOutput(_Query):
    """The last ``limit`` output lines the engine's ops printed, oldest first, from its memory (each an
    ``OpOutput`` with its ``line_no``: a console that missed some knows which it has)."""

    wire: ClassVar[str] = "output"
    limit: int = _count(1000)

    decode = staticmethod(lambda value: [ev.OpOutput(**d) for d in value])


@dataclass(frozen=True, slots=True)
class Workers(_Query):
    """The workers and what each runs."""

    wire: ClassVar[str] = "workers"
    on_loop: ClassVar[bool] = False

    decode = staticmethod(lambda value: [WorkerInfo(**w) for w in value])


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client of the control channel: its name (from its hello), pid, and how far behind it is."""

    name: str
    pid: int
    buffered_bytes: int
    missed: int


@dataclass(frozen=True, slots=True)
class Clients(_Query):
    """The clients attached to the engine's control channel (none without one)."""

    wire: ClassVar[str] = "clients"
    on_loop: ClassVar[bool] = False

    decode = staticmethod(lambda value: [ClientInfo(**c) for c in value])


Query = Union[Stats, Explain, Details, Documents, GroupsSummary, GroupMembers, Locate, DocInfos, DESInfos,
              FindDocuments, DESOfEvent, RunStatus, RecentHistory, RecentOutput, Workers, Clients]
"""Every query the engine answers."""


def _doc(d: dict[str, Any]) -> DocInfo:
    return DocInfo(**{**d, "readers": tuple(d["readers"])})


# ------------------------------------------------------------------------------------------ the table
@functools.cache
def by_name() -> dict[str, type[_Query]]:
    """Each query class by its wire name."""
    table: dict[str, type[_Query]] = {}
    for cls in typing.get_args(Query):
        if table.setdefault(cls.wire, cls) is not cls:
            raise TypeError(f"queries {cls.__name__} and {table[cls.wire].__name__} share the name {cls.wire!r}")
    return table


@functools.cache
def specs() -> dict[str, Spec]:
    """Each query's arguments (its fields: types, defaults, bounds), by its wire name."""
    return {name: field_spec(cls) for name, cls in by_name().items()}


def arguments(query: _Query) -> dict[str, Any]:
    """The query's arguments, by name."""
    return {name: getattr(query, name) for name in specs()[query.wire]}


def make(name: str, args: dict[str, Any]) -> Any:
    """The query ``name`` with ``args`` (checked: QueryError naming the query and the argument)."""
    cls = by_name().get(name)
    return cls(**check("query", name, specs().get(name), args, by_name()))  # type: ignore[misc]


def checked(query: Any) -> Any:
    """``query`` if it is a valid query; QueryError naming it and its wrong argument otherwise."""
    cls = type(query)
    if by_name().get(getattr(cls, "wire", None)) is not cls:  # type: ignore[arg-type]
        raise QueryError(f"not a query: {query!r} (queries: {', '.join(sorted(by_name()))})")
    check("query", cls.wire, specs()[cls.wire], arguments(query))
    return query


# ------------------------------------------------------------------------------------------ named calls
class Asking:
    """The named queries of an engine handle, each asked through its ``ask`` (in-process or over the socket)."""

    def ask(self, query: Any) -> Any:
        raise NotImplementedError

    def stats(self) -> EngineStats:
        return self.ask(Stats())

    def explain(self, name: str) -> str:
        return self.ask(Explain(name))

    def des_details(self, des_id: str) -> DESDetails | None:
        return self.ask(Details(des_id))

    def documents(self, prefix: str | None = None, limit: int = 1000) -> list[DocInfo]:
        return self.ask(Documents(prefix, limit))

    def groups_summary(self) -> list[GroupSummary]:
        return self.ask(GroupsSummary())

    def group_members(self, pattern: str, offset: int = 0, limit: int = 200) -> list[DocInfo]:
        return self.ask(GroupMembers(pattern, offset, limit))

    def locate(self, name: str) -> tuple[str, int] | None:
        return self.ask(Locate(name))

    def doc_infos(self, names: Iterable[str]) -> list[DocInfo]:
        """Asked LIST_MAX names at a time: every name is answered, each answer stays bounded."""
        wanted = list(names)
        return [info for i in range(0, len(wanted), LIST_MAX)
                for info in self.ask(DocInfos(tuple(wanted[i:i + LIST_MAX])))]

    def des_infos(self, ids: Iterable[str]) -> list[DESInfo]:
        """Asked LIST_MAX ids at a time (see ``doc_infos``)."""
        wanted = list(ids)
        return [info for i in range(0, len(wanted), LIST_MAX)
                for info in self.ask(DESInfos(tuple(wanted[i:i + LIST_MAX])))]

    def find_documents(self, pattern: str | re.Pattern[str] | Callable[[str], Any], limit: int = 1,
                       regex: bool = False) -> list[str]:
        """The first ``limit`` names that match ``pattern``: a substring, a regex with ``regex``, a compiled
        regex or its ``search`` (case-insensitive). A function cannot cross a socket: QueryError."""
        compiled = getattr(pattern, "__self__", pattern)
        if isinstance(compiled, re.Pattern):
            pattern, regex = compiled.pattern, True
        if not isinstance(pattern, str):
            raise QueryError(f"query find_documents: argument 'pattern' must be str (a name part or a regex), "
                             f"got {type(pattern).__name__}: the engine is searched by pattern, not by a function")
        return self.ask(FindDocuments(pattern, regex, limit))

    def des_of_event(self, event: str, limit: int = 100) -> list[str]:
        return self.ask(DESOfEvent(event, limit))

    def run_status(self, run_id: int) -> str | None:
        return self.ask(RunStatus(run_id))

    def history(self, events: int = RECENT, runs: int = RECENT, lines: int = RECENT) -> History:
        return self.ask(RecentHistory(events, runs, lines))

    def recent_output(self, limit: int = 1000) -> list[ev.OpOutput]:
        return self.ask(RecentOutput(limit))

    def workers(self) -> list[WorkerInfo]:
        return self.ask(Workers())

    def clients(self) -> list[ClientInfo]:
        return self.ask(Clients())
