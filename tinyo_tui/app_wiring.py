"""Provides ``ConsoleWiring``, the console app's composition and wiring (``app.TinyoApp`` builds on it).

It owns what connects the app to the engine: the bridge that subscribes to the engine's bus, the
model (``ConsoleState``), the stopper that handles signals and the graceful stop, starting the
engine off the UI loop and reading what it already knows, and the drain loop that folds bus facts
into the model and tells the screens what changed. The keys, commands and palette are in ``app``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from textual import events, work
from textual.app import App
from textual.message import Message
from textual.timer import Timer

from tinyo.clock import Clock, SystemClock

from .bridge import Bridge
from .commands import Commands
from .messages import BusWake, EngineStopped, HeaderTick, QueryResult, StateChanged, StopStarted
from .pacing import Pacer
from .palette import Palette
from .past import seed
from .reattach import follow_restarts, say_keys_detach
from .resync import Resync
from .screens.details import DetailsScreen
from .screens.main import MainScreen
from .state import _RATE_WINDOW, Changes, ConsoleState
from .stopping import HANGUP, Stopper
from .terminal import TerminalDriver
from .theming import load_themes, resolve_theme

DRAIN_HZ = 12
"""Bus batches per second while events flow (a frame tick: 10-15 UI updates per second per pane)."""
DRAIN_CHUNK = 4000
"""The most bus events folded in per tick."""
TICK_BUDGET = 0.008
"""Seconds of folding facts into the model per tick: a slice, then the loop is free for a key (the panes
repaint on their own pace, ``pacing``)."""
APPLY_STEP = 100
"""Facts folded in between two looks at the clock."""
MIN_FOLD_GAP = 0.01
"""While behind, the least pause between two slices of folding (at most half of the loop goes to facts)."""
MAX_DRAIN_DELAY = 0.5
"""Even under the heaviest flood the model takes facts in at least twice a second."""


class ConsoleWiring(App[int]):
    """The console's connection to the engine. The engine runs on its own threads; this loop only
    drains the bridge and paints."""

    def __init__(self, engine: Any, *, clock: Clock | None = None, theme: str | None = None,
                 start_engine: bool = True, grace: float = 10.0) -> None:
        super().__init__(driver_class=None if os.name == "nt" else TerminalDriver)
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self.state = ConsoleState()
        self.palette = Palette()
        self.bridge = Bridge()
        # Subscribe now, before anyone starts the engine, so the console misses no event.
        self.bridge.attach(engine.bus, self)
        if hasattr(engine, "pace"):  # an attached engine's reader waits while the UI is behind (see Bridge)
            engine.pace = self.bridge.wait_for_room
        self.commands = Commands(engine, self.note)
        self.recipe_name = str(getattr(engine.recipe, "name", "recipe"))
        self.attached_to: int | None = getattr(engine, "attached_to", None)
        """The pid of the engine this console is attached to (None: the engine runs in this process)."""
        if self.attached_to is not None:
            self.recipe_name += f" (attached to pid {self.attached_to})"
            say_keys_detach(self)
        follow_restarts(self)
        self._start_engine = start_engine
        self._drain_timer: Timer | None = None
        self._tick_cost = 0.0
        """Moving average of one drain tick's folding, in seconds."""
        self.pacer = Pacer(self, lambda changes: self._show(changes))
        """When the panes repaint what the drains folded in, and a key before both."""
        self._carry: list[Any] = []
        self.resyncs = Resync(self)
        """Asks the engine again after a gap in its facts (or a re-attach); the facts wait meanwhile."""
        self._ticker: Timer | None = None
        self._settle: Timer | None = None
        self.grace = grace
        """Seconds running ops get to finish when the console quits."""
        self._stopping = False
        self.stopper = Stopper(engine, grace, on_started=lambda now: self._from_stopper(StopStarted(now)),
                               on_stopped=lambda error: self._from_stopper(EngineStopped(error)))
        self._stopper_lock = threading.Lock()
        self._stopper_early: list[StopStarted | EngineStopped] | None = []
        """What the stopper said before the app was on screen (a signal during start-up)."""
        for item in load_themes().values():
            self.register_theme(item)
        self.theme = resolve_theme(theme, list(self.available_themes))
        self.animation_level = "none"

    # ------------------------------------------------------------------ life cycle
    def now(self) -> float:
        """The injected clock's time."""
        return self.clock.time()

    def on_mount(self) -> None:
        self.palette.refresh(self)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        # Drains run only while there is something to drain; the bus wakes us. The first one
        # takes whatever the engine published before the app was on screen.
        self._schedule_drain(0.0)
        self.push_screen(MainScreen())
        self._install_signals()
        if self._start_engine:
            self._boot()

    def _install_signals(self) -> None:
        self.stopper.start()
        with self._stopper_lock:
            early, self._stopper_early = self._stopper_early or [], None
        for message in early:
            self.post_message(message)

    def _from_stopper(self, message: StopStarted | EngineStopped) -> None:
        with self._stopper_lock:
            if self._stopper_early is not None:
                self._stopper_early.append(message)
                return
        self.post_message(message)

    def on_unmount(self) -> None:
        self.stopper.close()

    def post_message(self, message: Message) -> bool:
        """Queue ``message``; a key (posted by the driver's thread) holds folding and painting back until
        the screen has painted what it did (``pacing``)."""
        if isinstance(message, events.Key):
            self.pacer.input_posted()
        return super().post_message(message)

    def on_key(self, _event: events.Key) -> None:
        """A key reached the app, its bindings ran: the hold ends once their effect is on screen."""
        self.pacer.input_seen()

    def terminal_lost(self, reason: str) -> None:
        """The terminal is gone (called from the driver's threads): stop the engine gracefully."""
        self.stopper.request(HANGUP)

    @work(thread=True, exclusive=True, group="engine")
    def _boot(self) -> None:
        """Start the engine (non-blocking, but it opens the store) and read what it already knows."""
        engine = self.engine
        try:
            engine.start()
            fatal = getattr(engine, "fatal", None)
            if fatal is not None:
                raise fatal
            groups = engine.groups_summary()
        except Exception as exc:  # the console stays up to show why the engine did not start
            self.post_message(QueryResult("boot", None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(QueryResult("boot", groups))
        if self.attached_to is not None:
            return  # an attached engine's recent past comes on its bus, before its live facts
        try:
            past = (engine.history(), engine.stats())
        except Exception as exc:  # the live view works without the past; say why it is missing
            self.post_message(QueryResult("history", None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(QueryResult("history", past))

    def on_query_result(self, message: QueryResult) -> None:
        if message.query == "history":
            if message.error:
                self.note(f"could not read the recent past from the state file: {message.error}", "error")
            else:
                changes = Changes()
                seed(self.state, *message.value, changes)
                self._publish(changes)
            return
        if message.query == "resync":
            self.resyncs.done(message)
            return
        if message.query != "boot":
            return
        if message.error:
            self.note(f"engine did not start: {message.error}", "error")
            self.notify(message.error, title="engine did not start", severity="error", markup=False,
                        timeout=30)
            return
        changes = Changes()
        self.state.set_groups(message.value, changes)
        self._publish(changes)

    # ------------------------------------------------------------------ the bridge
    def on_bus_wake(self, _message: BusWake) -> None:
        self._schedule_drain(self._drain_delay())

    def _schedule_drain(self, delay: float) -> None:
        if self._drain_timer is None:
            self._drain_timer = self.set_timer(max(delay, 0.001), self.drain, name="drain")

    def _drain_delay(self) -> float:
        """About 12 drains a second; fewer when a drain gets expensive (a flood), so the loop stays at
        most ~2/3 busy."""
        return min(MAX_DRAIN_DELAY, max(1 / DRAIN_HZ, 1.5 * self._tick_cost))

    def drain(self) -> None:
        """The drain tick: fold a slice of what the bus buffered into the model (unless a key waits)."""
        self._drain_timer = None
        held = self.pacer.holding()
        if held and self.screen_stack:
            self.pacer.resume = self._resume_drain
            self._schedule_drain(held)
            return
        self._fold()

    def _resume_drain(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.stop()
            self._drain_timer = None
        self._schedule_drain(0.0)

    def _fold(self) -> None:
        """Fold what the bus buffered into the model, for at most ``TICK_BUDGET``; the panes show it at
        their pace."""
        if self.resyncs.busy:
            return  # the facts after the gap wait for the engine's answers; the resync drains again
        if not self.screen_stack:
            return  # the app is closing (its screens are gone): nothing is shown any more
        started = time.perf_counter()
        batch = self._carry
        if len(batch) < DRAIN_CHUNK:
            batch.extend(self.bridge.drain())
        # At most DRAIN_CHUNK events per tick, so one tick (and the key press waiting behind it)
        # stays short under a flood; the rest waits in the carry, the bridge keeps buffering.
        batch, self._carry = batch[:DRAIN_CHUNK], batch[DRAIN_CHUNK:]
        batch, after, missed = self.resyncs.split(batch)
        # Fold in steps until the tick's budget is spent: a key pressed meanwhile waits for one step,
        # not for thousands of facts (what is left waits in the carry for the next tick). All of what
        # came before a gap goes in before the engine is asked again.
        changes, applied, deadline = Changes(), 0, started + (TICK_BUDGET if not missed else float("inf"))
        while applied < len(batch) and (applied == 0 or time.perf_counter() < deadline):
            self.state.apply(batch[applied:applied + APPLY_STEP], changes, settle=False)
            applied += APPLY_STEP
        self.state.settle(changes)
        batch, self._carry = batch[:applied], batch[applied:] + after + self._carry
        if batch:
            for level, message in changes.notices:
                if level != "info":
                    self.notify(message, severity="error" if level == "error" else "warning", markup=False)
            changes.notices.clear()
            self.pacer.changed(changes, len(batch))
            self._keep_ticking()
            self._measure_tick(started)
        if missed:
            self.resync(f"{missed:,} of the engine's facts were missed (this console read them too slowly)")
        elif batch:
            # Behind (a carry): the next slice comes after as long as this one took, so at most half of the
            # loop goes to facts; what the console cannot fold in meanwhile is dropped, counted, and asked
            # again (Bridge, Resync), rather than queued.
            self._schedule_drain(max(MIN_FOLD_GAP, self._tick_cost) if self._carry else self._drain_delay())
        else:
            self._schedule_settle()  # idle: no drain is scheduled until the bus wakes us again

    def resync(self, why: str | None) -> None:
        """Ask the engine again for what the panes show; ``why``: the one line saying so (None: say nothing)."""
        self.resyncs.begin(why)

    @property
    def resyncing(self) -> bool:
        """Whether the engine is being asked again (the facts wait meanwhile)."""
        return self.resyncs.busy

    def drain_all(self) -> None:
        """Drain until nothing is buffered and paint it now (tests and scripted snapshots)."""
        self._fold()
        while self._carry and not self.resyncs.busy:
            self._fold()
        self.pacer.paint()

    def _measure_tick(self, started: float) -> None:
        cost = time.perf_counter() - started
        self._tick_cost = cost if self._tick_cost == 0 else 0.7 * self._tick_cost + 0.3 * cost

    def _publish(self, changes: Changes) -> None:
        """Paint ``changes`` now (with whatever the drains folded in and is not painted yet)."""
        self.pacer.paint(changes)

    def _show(self, changes: Changes) -> None:
        """Tell the screens what changed (``Pacer`` decides when)."""
        main = self._main()
        if main is not None:
            main.post_message(StateChanged(changes))
        screen = self.screen
        if isinstance(screen, DetailsScreen) and changes.changed_des.intersection(screen.des_ids):
            screen.action_reload()

    def _main(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def _keep_ticking(self) -> None:
        """While ops run, elapsed times and uptime move: tick once a second. Stop when idle."""
        if (self.state.running or self._stopping) and self._ticker is None:
            self._ticker = self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        self.post_message(HeaderTick())
        if not (self.state.running or self._stopping) and self._ticker is not None:
            self._ticker.stop()
            self._ticker = None

    def _schedule_settle(self) -> None:
        """One last header refresh after the rate window, so events/s falls to 0; then no timers."""
        if self._settle is not None:
            self._settle.stop()
        self._settle = self.set_timer(_RATE_WINDOW + 0.2, lambda: self.post_message(HeaderTick()))

    def on_header_tick(self, _message: HeaderTick) -> None:
        main = self._main()
        if main is not None:
            main.tick()

    def note(self, line: str, kind: str) -> None:
        """Add a console line (an echoed CLI command, an error) to the output pane."""
        self.state.note(line, kind, self.now())  # type: ignore[arg-type]
        self._publish(Changes(new_output=1))

    # ------------------------------------------------------------------ theme
    def _theme_changed(self, _theme: object) -> None:
        self.palette.refresh(self)
        main = self._main()
        if main is not None:
            main.restyle()
