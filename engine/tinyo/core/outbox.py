"""Provides the outbox: the facts a cycle establishes, released on the bus only after the commit that
makes them durable (the bus never announces what a crash could undo)."""

from __future__ import annotations

from typing import Literal

from .. import events as ev
from ..clock import Clock


class Outbox:
    """Facts waiting for the cycle's commit. Loop thread only."""

    def __init__(self, bus: ev.Bus, clock: Clock) -> None:
        self.bus = bus
        self.clock = clock
        self._facts: list[ev.BusEvent] = []
        self.emit = self._facts.append
        """Keep a fact for the next release (the list's own append: several facts per file, no Python frame)."""
        self.kept = self._facts.__len__
        """How many facts are kept (where the next one goes)."""
        self.fresh: dict[str, int] = {}
        """DES registered since the last release, as (id -> where their ``DESRegistered`` is kept): their first
        settle tells their first state in that fact (``first_state``), not by a state fact of its own."""

    def first_state(self, des_id: str, state: str, reason: str) -> bool:
        """Tell a DES's first state (its move from "new") in its ``DESRegistered``, still kept; False (nothing
        done) when that fact is released already: a ``DESStateChanged`` must tell it."""
        at = self.fresh.pop(des_id, None)
        if at is None:
            return False
        told = self._facts[at]
        assert type(told) is ev.DESRegistered and told.des_id == des_id
        self._facts[at] = ev.DESRegistered(told.ts, des_id, told.deps, told.targs, told.ops, told.generator,
                                           told.event, told.restored, state, reason)
        return True

    def notice(self, level: Literal["info", "warning", "error"], text: str) -> None:
        """Keep an engine notice for the next release."""
        self._facts.append(ev.EngineNotice(self.clock.time(), level, text))

    def release(self) -> None:
        """Publish every kept fact, in order (after the commit)."""
        facts = self._facts
        if not facts:
            return
        out = facts.copy()
        facts.clear()  # the same list: ``emit`` is its append
        self.fresh.clear()
        self.bus.publish_many(out)

    def drop(self) -> None:
        """Forget the kept facts: their cycle failed before its commit."""
        self._facts.clear()
        self.fresh.clear()

    def publish_now(self, fact: ev.BusEvent) -> None:
        """Publish ``fact`` at once (start-up failures and the last words of a failed loop)."""
        self.bus.publish(fact)
