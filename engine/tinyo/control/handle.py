"""Provides RemoteEngine: an engine running in another process, seen through its control socket.

It answers the same calls as an in-process ``Engine`` (commands, queries with the same typed results,
and a ``bus`` that carries the engine's facts), so a console or script written against one works
against the other: ``subscribe`` is the bus, ``query`` the typed queries (``ask``, and the named calls
of ``queries.Asking``), ``command`` the command methods. On attach the bus first carries the engine's
recent history, then the live facts; when this side read too slowly the engine says how many facts
were missed, and the bus carries a ``FactsMissed`` where they were lost (the caller asks its queries
again). ``stop`` only detaches: the engine goes on; ``stop_engine`` is the explicit stop.

With ``reattach``, an engine that stops or dies is waited for: the bus says so (an ``EngineState``
"stopped" and a one-line notice), then the follow thread tries to connect every ``RETRY`` seconds until
an engine serves the state file again (``tinyo start``, ``tinyo run``) or this side detaches; it then
calls ``on_attach(pid)`` and the bus carries the new engine's history and live facts, as on first attach.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import events as ev
from ..queries import Asking, arguments, checked
from ..recipe import Recipe
from .client import ControlClient, EngineGone
from .paths import ControlError
from .protocol import Bye, Facts, Missed

RETRY = 0.5
"""Seconds between two tries to re-attach to an engine that stopped."""
CONNECT_TIMEOUT = 5.0
"""Seconds one re-attach try waits for a starting engine's hello."""


class RemoteEngine(Asking):
    """The engine serving ``db_path``, attached to over its control socket."""

    def __init__(self, recipe: Recipe, db_path: str | os.PathLike[str], *, reattach: bool = False,
                 on_attach: Callable[[int], None] | None = None) -> None:
        self.recipe = recipe
        self.config = recipe.config
        self.timers = self.config.timer_specs
        self.execution = self.config.execution
        self.bus = ev.Bus()
        self.fatal: BaseException | None = None
        self._db = db_path
        self._queries = ControlClient.connect(db_path, "tinyo attach")  # NotRunning when none runs there
        self._lock = threading.Lock()  # one request at a time on the query connection
        self._stream: ControlClient | None = None
        self._thread: threading.Thread | None = None
        self._detached = False
        self._woken = threading.Event()  # set on detach: a waiting re-attach ends at once
        self.reattach = reattach
        self.on_attach = on_attach
        """Called with the new engine's pid (on the follow thread) each time this side re-attaches."""
        self.pace: Callable[[], bool] | None = None
        """Called on the follow thread after each line of facts is on the bus, again while it says False (it
        may wait a while each time: the bus's reader is behind). Meanwhile this side does not read the socket:
        the engine counts the facts it cannot send and says so, and the bus carries a ``FactsMissed`` where
        they were lost."""
        self.pid = self._queries.pid
        self.db_path = self._queries.welcome.db if self._queries.welcome else str(db_path)
        self.state: str = self._queries.welcome.state if self._queries.welcome else "running"

    @property
    def attached_to(self) -> int:
        """The engine's pid (a console shows it; an in-process Engine has no such attribute)."""
        return self.pid

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Subscribe: the bus carries the engine's recent history, then its live facts."""
        if self._thread is not None:
            return
        self._stream = ControlClient.connect(self._db, "tinyo attach (facts)")
        self._thread = threading.Thread(target=self._follow, name="tinyo-attach", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Detach: close the connections; the engine goes on."""
        self._detached = True
        self._woken.set()
        for client in (self._stream, self._queries):
            if client is not None:
                client.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=min(timeout, 5.0))

    def stop_engine(self, now: bool = False) -> None:
        """Ask the engine itself to stop (gracefully; ``now``: running ops are stopped too)."""
        self._command("stop", now=now)

    def wait(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _follow(self) -> None:
        while True:
            self._follow_one()
            if self._detached:
                return
            self.state = "stopped"
            self.bus.publish(ev.EngineState(_now(), "stopped", f"the engine (pid {self.pid}) is gone"))
            if not self.reattach:
                return
            self.bus.publish(ev.EngineNotice(_now(), "warning", f"the engine (pid {self.pid}) stopped: waiting for "
                                             f"an engine to start on {self.db_path}"))
            if not self._wait_for_engine():
                return

    def _wait_for_engine(self) -> bool:
        """Try to connect every RETRY seconds until an engine answers (True) or this side detaches."""
        while not self._woken.wait(RETRY):
            try:
                queries = ControlClient.connect(self._db, "tinyo attach", timeout=CONNECT_TIMEOUT)
            except ControlError:
                continue
            try:
                stream = ControlClient.connect(self._db, "tinyo attach (facts)", timeout=CONNECT_TIMEOUT)
            except ControlError:
                queries.close()
                continue
            with self._lock:
                old, self._queries, self._stream = self._queries, queries, stream
                self.pid = queries.pid
                self.state = queries.welcome.state if queries.welcome else "running"
            old.close()
            if self._detached:  # detached while connecting: stop() may have closed the old ones only
                queries.close()
                stream.close()
                return False
            if self.on_attach is not None:
                self.on_attach(self.pid)
            return True
        return False

    def _follow_one(self) -> None:
        stream = self._stream
        assert stream is not None
        try:
            for message in stream.subscribe_batches(history=True):
                if isinstance(message, Facts):
                    events = [fact for fact in message.facts if isinstance(fact, ev.BusEvent)]
                    for fact in events:
                        if type(fact) is ev.EngineState:
                            self.state = fact.state
                    self.bus.publish_many(events)  # a line's facts in one hand-over: one lock, one wake-up
                    while self.pace is not None and not self.pace() and not self._detached:
                        pass  # each call waits a while: a detach is seen between two
                elif isinstance(message, Missed):
                    # in the stream's order: what came before the gap is older than what its reader re-asks
                    self.bus.publish(ev.FactsMissed(_now(), message.count))
                elif isinstance(message, Bye):
                    break
        except (OSError, ControlError):
            pass
        finally:
            stream.close()

    # ------------------------------------------------------------------ commands
    def inject(self, event: str) -> None:
        self._command("inject", event=event)

    def fire_timer(self, name: str) -> None:
        self._command("fire", timer=name)

    def rerun(self, des_id: str, downstream: bool = False) -> None:
        self._command("rerun", target=des_id, downstream=downstream)

    def rerun_document(self, name: str, downstream: bool = False) -> None:
        self._command("rerun", target=name, downstream=downstream)

    def pause(self) -> None:
        self._command("pause")

    def resume(self) -> None:
        self._command("resume")

    def cancel(self, run_id: int) -> None:
        self._command("cancel", run_id=run_id)

    def rescan(self) -> None:
        self._command("rescan")

    # ------------------------------------------------------------------ queries
    def ask(self, query: Any) -> Any:
        """The answer to the typed query ``query``, asked over the socket, in the engine's own types."""
        query = checked(query)
        return query.decode(self._query(query.wire, **arguments(query)))

    # ------------------------------------------------------------------ the wire
    def _command(self, name: str, /, **args: Any) -> None:
        with self._lock:
            try:
                self._queries.command(name, **args)
            except EngineGone as exc:
                raise ControlError(f"the engine (pid {self.pid}) is gone: {exc}") from None

    def _query(self, name: str, /, **args: Any) -> Any:
        with self._lock:
            try:
                return self._queries.query(name, **args)
            except EngineGone as exc:
                raise ControlError(f"the engine (pid {self.pid}) is gone: {exc}") from None


def _now() -> float:
    return time.time()
