"""Provides the console's messages, as dataclasses; the high-rate ones may replace a queued one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from textual.message import Message

from .state import Changes

Target = Literal["des", "document", "event", "worker", "output"]


@dataclass
class BusWake(Message):
    """The bridge buffer went from empty to non-empty: start draining (posted from the engine thread)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BusWake)


@dataclass
class StateChanged(Message):
    """The console model changed; panes repaint what ``changes`` names."""

    changes: Changes


@dataclass
class HeaderTick(Message):
    """Recompute the header's clock-driven figures (uptime, events/s, elapsed); newest wins."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HeaderTick)


@dataclass
class Selected(Message):
    """A pane's selection moved (what ``r``, ``c`` and ``enter`` act on)."""

    kind: Target
    key: str
    des_id: str | None = None
    run_id: int | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Selected)


@dataclass
class OpenDetails(Message):
    """Open the details screen for a DES, document, event or worker."""

    kind: Target
    key: str
    des_id: str | None = None


@dataclass
class QueryResult(Message):
    """The answer of an engine query run in a thread worker."""

    query: str
    value: Any = None
    error: str | None = None


@dataclass
class FilterChanged(Message):
    """The filter bar's text changed (live); empty text clears the filter."""

    pattern: str
    invert: bool = False
    final: bool = False


@dataclass
class StopStarted(Message):
    """The console began stopping the engine (``now``: a second request cut the grace period short)."""

    now: bool = False


@dataclass
class EngineStopped(Message):
    """The engine finished its graceful stop (posted from a thread worker)."""

    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reattached(Message):
    """The attached engine handle is attached to a (re)started engine: its pid."""

    pid: int
