"""Provides the document DAG's values: a DES as the graph holds it (``Node``), what readiness concluded
about one (``Verdict``), and where the graph looks up what is not in memory (``Backing``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

State = Literal["new", "waiting", "stale", "queued", "running", "retry", "ok", "failed", "cancelled"]
RunStatus = Literal["queued", "running", "retry"]

UP_TO_DATE = "up to date: deps unchanged since the last success"
"""One shared string: the versions are in ``explain.explain_des`` (memory per DES stays small)."""


@dataclass(slots=True, eq=False)
class Node:
    """A DES in the graph, with what readiness needs to know about it."""

    id: str
    deps: tuple[str, ...] | frozenset[str]
    targs: tuple[str, ...] | frozenset[str]
    ops_desc: tuple[str, ...] = ()
    generator: str = ""
    event: str = ""
    trace: dict[str, int] | None = None
    """Dep versions at the last success (None: never succeeded)."""
    failed_trace: dict[str, int] | None = None
    """Dep versions at the last failure or cancellation."""
    failed_state: Literal["failed", "cancelled"] | None = None
    forced: bool = False
    """A rerun was asked for: run even if up to date."""
    error: str = ""
    """The last failure's message (shown with the failed state)."""
    status: RunStatus | None = None
    """Engine-owned: the DES is queued, running, or waiting for a retry."""
    state: State = "new"
    was: State = "new"
    """The state before the last change ``settle`` reported."""
    blocking: bool = True
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``evaluate`` concluded about a DES."""

    state: State
    blocking: bool
    reason: str


class Backing(Protocol):
    """Where the DES and documents that are not in memory are looked up (the store)."""

    def node(self, des_id: str) -> Node | None: ...
    def versions(self, docs: list[str]) -> dict[str, int]: ...
    def producers(self, docs: list[str]) -> dict[str, str]: ...
    def consumers(self, docs: list[str]) -> dict[str, list[str]]: ...
    def existing_des(self, des_ids: list[str]) -> set[str]: ...
    def known(self, docs: list[str]) -> set[str]: ...
    """Which of ``docs`` the backing has ever named: a name it does not know has no version, producer or
    reader there, and no DES there produces it."""
