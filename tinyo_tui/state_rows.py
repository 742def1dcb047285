"""Provides the rows and nodes the console's state is made of, its bounds, and ``Changes``.

Plain dataclasses with no behaviour beyond a label: the state layers (``state_stream``,
``state_documents``, ``state_work``) fill them, the panes read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tinyo.groups import DES_TO_DOC as _ENGINE_DES_TO_DOC

DocState = Literal[
    "up to date", "stale", "waiting", "queued", "running", "failed", "cancelled", "never built",
    "source", "missing", "interrupted",
]
RowKind = Literal["event", "timer", "error", "notice", "rejected"]

DES_TO_DOC: dict[str, DocState] = {**_ENGINE_DES_TO_DOC, "registered": "never built",  # type: ignore[dict-item]
                                   "interrupted": "interrupted"}
"""How a producing DES's state reads on the documents it makes."""
COUNTED = ("queued", "running", "failed")
"""DES states the header counts (kept from the engine's transitions, with no per-DES memory)."""
MAX_CACHED = 2000
"""Documents (and DES) kept in memory beyond those on screen; the engine has them all."""

MAX_EVENT_ROWS = 5000
"""The event stream keeps the newest this many rows; older ones are only in the store."""
MAX_OUTPUT_ROWS = 5000
"""The output pane keeps the newest this many lines."""
MAX_FLOW_RUNS = 8
"""Lanes of this many recent flow runs are kept."""
_RATE_WINDOW = 5.0

@dataclass(slots=True)
class DesNode:
    """What the console knows about one DES."""

    des_id: str
    deps: tuple[str, ...]
    targs: tuple[str, ...]
    ops: tuple[str, ...]
    generator: str
    event: str
    state: str = "registered"
    reason: str = ""
    runs: int = 0
    run_id: int | None = None
    worker: str | None = None
    started: float | None = None
    error: str = ""

    @property
    def op_label(self) -> str:
        """The op names, joined."""
        return ", ".join(self.ops) or "(no ops)"


@dataclass(slots=True)
class DocNode:
    """What the console knows about one document."""

    name: str
    version: int | None = None
    producer: str | None = None
    consumers: tuple[str, ...] | set[str] | None = None
    """DES that read this document (None until one does; a small tuple, a set past 8 readers)."""
    reader_count: int = 0
    """How many DES read it, when the engine said so (it lists only the first ones)."""
    state: DocState = "missing"
    detail: str = ""
    group: str = ""
    """The name pattern of the document's group."""


@dataclass(slots=True)
class EventRow:
    """One line of the event stream."""

    seq: int
    ts: float
    kind: RowKind
    source: str
    name: str
    event_id: int | None = None
    des_count: int | None = None
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    des_ids: list[str] = field(default_factory=list)
    version: int = 0
    """Bumped whenever the row changes, so a cached rendering can be dropped."""


@dataclass(slots=True)
class OutputRow:
    """One line of the output pane: an op's output line, or a console note (``cmd``/``info``)."""

    seq: int
    ts: float
    kind: Literal["stdout", "stderr", "cmd", "info", "error"]
    line: str
    op: str = ""
    worker: str = ""
    des_id: str = ""
    run_id: int | None = None
    line_no: int = 0
    """The engine's number of an op's line (``OpOutput.line_no``; 0: none, or an engine that has gone)."""


@dataclass(slots=True)
class WorkerRow:
    """One worker and what it runs."""

    name: str
    pid: int | None = None
    state: str = "idle"
    detail: str = ""
    run_id: int | None = None
    des_id: str | None = None
    op: str = ""
    targs: frozenset[str] = frozenset()
    since: float | None = None


@dataclass
class Changes:
    """What one ``apply`` changed, for the panes to repaint just that."""

    new_events: int = 0
    updated_events: bool = False
    new_output: int = 0
    new_docs: set[str] = field(default_factory=set)
    changed_docs: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    """Patterns whose counts changed (or that are new)."""
    changed_des: set[str] = field(default_factory=set)
    workers: bool = False
    lanes: bool = False
    header: bool = False
    reloaded: bool = False
    """Rows were inserted before others (the start from the state file): panes rebuild their views."""
    runs: bool = False
    """A run started or ended (the run timeline repaints)."""
    notices: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: Changes) -> None:
        """Add ``other``'s changes to these (the panes repaint both at once)."""
        self.new_events += other.new_events
        self.updated_events |= other.updated_events
        self.new_output += other.new_output
        self.new_docs |= other.new_docs
        self.changed_docs |= other.changed_docs
        self.groups |= other.groups
        self.changed_des |= other.changed_des
        self.workers |= other.workers
        self.lanes |= other.lanes
        self.header |= other.header
        self.reloaded |= other.reloaded
        self.runs |= other.runs
        self.notices.extend(other.notices)

    def __bool__(self) -> bool:
        return bool(
            self.new_events or self.updated_events or self.new_output or self.new_docs or self.groups
            or self.changed_docs or self.changed_des or self.workers or self.lanes or self.header or self.reloaded
            or self.runs
        )
