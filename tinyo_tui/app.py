"""Provides TinyoApp, the operations console, and ``build_app`` (used by the CLI and the tests)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer

from tinyo.clock import Clock, SystemClock

from .bridge import Bridge
from .commands import Commands
from .messages import (BusWake, EngineStopped, HeaderTick, OpenDetails, QueryResult, Reattached, StateChanged,
                       StopStarted, Target)
from .named_commands import NamedCommands
from .palette import Palette
from .past import seed
from .questions import ask_cancel_op, ask_stop_engine
from .reattach import follow_restarts, reattached, say_keys_detach
from .resync import Resync
from .safe_text import short_id, visible
from .screens.confirm import QuitDialog
from .screens.des_picker import DesPicker
from .screens.details import DetailsScreen
from .screens.help import HelpScreen
from .screens.inject import InjectDialog
from .screens.main import PANE_KEYS, MainScreen
from .screens.timer_picker import TimerPicker
from .state import _RATE_WINDOW, Changes, ConsoleState, EventRow
from .stopping import HANGUP, Stopper
from .terminal import TerminalDriver
from .theming import load_themes, resolve_theme, stylesheet_path

DRAIN_HZ = 12
"""Bus batches per second while events flow (a frame tick: 10-15 UI updates per second per pane)."""
DRAIN_CHUNK = 4000
"""The most bus events folded in per tick."""
TICK_BUDGET = 0.03
"""Seconds of folding facts into the model per tick (then the screen repaints and keys are served)."""
APPLY_STEP = 250
"""Facts folded in between two looks at the clock."""
MAX_DRAIN_DELAY = 0.5
"""Even under the heaviest flood the panes update at least twice a second."""


class TinyoApp(App[int]):
    """The console. The engine runs on its own threads; this loop only drains the bridge and paints."""

    CSS_PATH = str(stylesheet_path())
    TITLE = "tinyo"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {NamedCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", tooltip="Quit (stops the engine gracefully)"),
        Binding("question_mark", "help", "Help", tooltip="Show every key"),
        Binding("ctrl+c", "interrupt", "Stop", show=False, priority=True,
                tooltip="Stop the engine gracefully, as `tinyo run` does; again: stop running ops now"),
        Binding("S", "stop_engine", "Stop engine", show=False,
                tooltip="Stop the engine (asked first)"),
    ]

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
        """Moving average of one drain plus the repaint it causes, in seconds."""
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
        """About 12 drains a second; fewer when a drain and its repaint get expensive (a flood), so
        the loop stays at most ~2/3 busy and a key press never waits behind a queue of repaints."""
        return min(MAX_DRAIN_DELAY, max(1 / DRAIN_HZ, 1.5 * self._tick_cost))

    def drain(self) -> None:
        """Fold everything the bus buffered into the model, then tell the screens what changed."""
        self._drain_timer = None
        if self.resyncs.busy:
            return  # the facts after the gap wait for the engine's answers; the resync drains again
        started = time.perf_counter()
        batch = self._carry
        if len(batch) < DRAIN_CHUNK:
            batch.extend(self.bridge.drain())
        # At most DRAIN_CHUNK events per tick, so one tick (and the key press waiting behind it)
        # stays short under a flood; the rest waits in the carry, the bridge keeps buffering.
        batch, self._carry = batch[:DRAIN_CHUNK], batch[DRAIN_CHUNK:]
        batch, after, missed = self.resyncs.split(batch)
        # Fold in steps until the tick's budget is spent: a key pressed meanwhile waits for one step's
        # repaint, not for thousands of facts (what is left waits in the carry for the next tick). All
        # of what came before a gap goes in before the engine is asked again.
        changes, applied, deadline = Changes(), 0, started + (TICK_BUDGET if not missed else float("inf"))
        while applied < len(batch) and (applied == 0 or time.perf_counter() < deadline):
            self.state.apply(batch[applied:applied + APPLY_STEP], changes)
            applied += APPLY_STEP
        batch, self._carry = batch[:applied], batch[applied:] + after + self._carry
        if batch:
            for level, message in changes.notices:
                if level != "info":
                    self.notify(message, severity="error" if level == "error" else "warning", markup=False)
            self._publish(changes)
            self._keep_ticking()
            self.call_after_refresh(self._measure_tick, started)
        if missed:
            self.resync(f"{missed:,} of the engine's facts were missed (this console read them too slowly)")
        elif batch:
            self._schedule_drain(1 / DRAIN_HZ / 2 if self._carry else self._drain_delay())
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
        """Drain until nothing is buffered (tests and scripted snapshots)."""
        self.drain()
        while self._carry and not self.resyncs.busy:
            self.drain()

    def _measure_tick(self, started: float) -> None:
        cost = time.perf_counter() - started
        self._tick_cost = cost if self._tick_cost == 0 else 0.7 * self._tick_cost + 0.3 * cost

    def _publish(self, changes: Changes) -> None:
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

    # ------------------------------------------------------------------ look-ups
    def find_event_row(self, seq: str) -> EventRow | None:
        """The event-stream row with this sequence number, if still in memory."""
        for row in reversed(self.state.events):
            if str(row.seq) == seq:
                return row
        return None

    def describe_des(self, des_id: str) -> str:
        """A one-line name for a DES: its ops and targets."""
        node = self.state.des.get(des_id)
        if node is None:
            return f"DES {short_id(des_id)}"
        targets = sorted(node.targs)
        shown = ", ".join(targets[:2]) + (f" +{len(targets) - 2}" if len(targets) > 2 else "")
        return f"{node.op_label} -> {shown}"

    def known_flows(self) -> list[str]:
        """The data flows the recipe module defines (``tinyo.flow.Flow`` objects), by name."""
        module = getattr(self.engine.recipe, "module", None)
        if module is None:
            return []
        from tinyo.flow import Flow

        return sorted({value.name for value in vars(module).values() if isinstance(value, Flow)})

    def flow_step_order(self) -> dict[str, dict[str, int]]:
        """Per data flow the recipe defines, each step's place in flow order (sources first)."""
        module = getattr(self.engine.recipe, "module", None)
        if module is None:
            return {}
        from tinyo.flow import Flow

        from .widgets.lanes_view import flow_order

        return {flow.name: {step: index for index, step in enumerate(
                    flow_order(list(flow.steps), [(hop.source, hop.target) for hop in flow.hops]))}
                for flow in vars(module).values() if isinstance(flow, Flow)}

    # ------------------------------------------------------------------ commands
    def open_details(self, kind: Target, key: str, des_id: str | None = None) -> None:
        """Push the details screen for an item."""
        self.push_screen(DetailsScreen(kind, key, des_id))

    def on_open_details(self, message: OpenDetails) -> None:
        self.open_details(message.kind, message.key, message.des_id)

    def toggle_pause(self) -> None:
        """Pause or resume intake."""
        if self.state.paused:
            self.commands.resume()
        else:
            self.commands.pause()

    def ask_inject(self, value: str = "") -> None:
        """Ask for an event string and inject it."""
        def done(event: str | None) -> None:
            if event:
                self.commands.inject(event)

        self.push_screen(InjectDialog(self.commands.recipe, value), done)

    def pick_timer(self) -> None:
        """Fire a timer: directly when there is one, else pick from a list."""
        timers = list(self.engine.timers)
        if not timers:
            self.notify("this recipe has no timers", severity="warning", markup=False)
            return
        if len(timers) == 1:
            self.commands.fire(timers[0].name)
            return

        def done(name: str | None) -> None:
            if name:
                self.commands.fire(name)

        self.push_screen(TimerPicker(timers), done)

    def event_des(self, row: EventRow) -> list[str]:
        """The DES an event made: known to the console, or (an event from the state file) asked of the engine."""
        if row.des_ids or not row.des_count:
            return list(row.des_ids)
        try:
            return list(self.engine.des_of_event(row.name))
        except Exception as exc:  # the engine stopped or is busy: say so rather than do nothing
            self.notify(f"could not look up its DES: {exc}", severity="warning", markup=False)
            return []

    def rerun_some(self, des_ids: list[str], downstream: bool, what: str) -> None:
        """Rerun the one DES, or ask which of several (or all of them)."""
        if len(des_ids) == 1:
            self.commands.rerun(des_ids[0], downstream=downstream)
            return

        def done(picked: list[str] | None) -> None:
            for des_id in picked or ():
                self.commands.rerun(des_id, downstream=downstream)

        title = f"{what} made {len(des_ids)} DES: rerun which{' (and downstream)' if downstream else ''}?"
        self.push_screen(DesPicker(title, des_ids, self.describe_des), done)

    def confirm_cancel(self, run_id: int, des_id: str) -> None:
        """Ask before cancelling a running op (the dialog names it); Cancel is the default."""
        ask_cancel_op(self, run_id, des_id)

    def action_stop_engine(self) -> None:
        """S: stop the engine, asked first (embedded: the graceful quit)."""
        ask_stop_engine(self)

    def on_reattached(self, message: Reattached) -> None:
        reattached(self, message.pid)

    def action_help(self) -> None:
        """Show every key: generated from the console's own bindings that are active now."""
        if isinstance(self.screen, HelpScreen):
            return
        keys: dict[tuple[bool, str, str], list[str]] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if (binding.key, binding.action) not in _own_bindings(type(active.node)):
                continue
            key = binding.key_display or self.get_key_display(binding)
            description = binding.tooltip or binding.description
            shown = keys.setdefault((not binding.show, binding.action, description), [])
            if key not in shown:
                shown.append(key)
        listed = [(", ".join(k), description)
                  for (_hidden, _action, description), k in sorted(keys.items(), key=lambda item: item[0][0])]
        listed.append((self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, "")),
                       "command palette: rerun X, fire timer Y, theme, pause"))
        self.push_screen(HelpScreen(listed, PANE_KEYS))

    def action_interrupt(self) -> None:
        """Ctrl-C: stop gracefully without asking (as ``tinyo run`` does); a second one stops ops now."""
        self.shutdown()

    async def action_quit(self) -> None:
        if self._stopping:
            self.shutdown()  # q again while stopping: running ops stop now
            return
        running = self.state.running
        if running and self.attached_to is None:  # attached, quitting detaches: the engine goes on
            body = Text(f"{running} op(s) still running. The engine stops gracefully: running ops get up "
                        f"to {self.grace:g} s to finish (q again stops them at once); any still running then "
                        "are stopped and run again on the next start. Nothing is lost.")

            def done(yes: bool | None) -> None:
                if yes:
                    self.shutdown()

            self.push_screen(QuitDialog("Quit tinyo?", body, "Quit"), done)
            return
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the engine gracefully off the UI loop (it commits its state), then exit. A second
        call while stopping stops running ops at once."""
        self.stopper.request()

    def on_stop_started(self, message: StopStarted) -> None:
        self._stopping = True
        state = self.state
        if message.now:
            state.stop_deadline = self.now()
        else:
            state.engine_state = "stopping"
            state.stop_deadline = self.now() + self.grace
        self._publish(Changes(header=True))
        self._keep_ticking()

    def on_engine_stopped(self, message: EngineStopped) -> None:
        self.bridge.detach()
        code = 1 if message.error else 0
        self.exit(code, return_code=code,
                  message=Text(f"tinyo-tui: engine stop failed: {message.error}") if message.error else None)

    # ------------------------------------------------------------------ theme and palette
    def _theme_changed(self, _theme: object) -> None:
        self.palette.refresh(self)
        main = self._main()
        if main is not None:
            main.restyle()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette's fixed commands: Textual's own (its "Keys" panel replaced by the console's
        help), then pause/resume, inject and themes. Names from the recipe or the engine come from
        ``named_commands``, shown literally by their own provider."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command
        yield SystemCommand("Keys", "Show every key (?)", self.action_help)
        if self.state.paused:
            yield SystemCommand("Resume intake", "Release the buffered events (p)", self.toggle_pause)
        else:
            yield SystemCommand("Pause intake", "Store and queue events without acting (p)", self.toggle_pause)
        yield SystemCommand("Inject event", "Inject an event string (i)", self.ask_inject)
        yield SystemCommand("Stop engine", "Stop the engine, asked first (S)", self.action_stop_engine)
        for name in sorted(self.available_themes):
            if name.startswith("tinyo-"):
                yield SystemCommand(f"Theme {name.removeprefix('tinyo-')}", f"Switch to the {name} theme",
                                    partial(setattr, self, "theme", name))

    def named_commands(self) -> Iterable[tuple[str, str, Any]]:
        """(title, help, callback) of the palette entries named after timers and DES (literal text)."""
        for timer in self.engine.timers:
            yield f"Fire timer {visible(timer.name)}", f"every {timer.interval}", partial(self.commands.fire, timer.name)
        for des_id in list(self.state.des)[-300:]:
            yield (visible(f"Rerun {self.describe_des(des_id)} [{short_id(des_id)}]"),
                   "Force this DES to run again (r)", partial(self.commands.rerun, des_id))


def _own_bindings(cls: type) -> set[tuple[str, str]]:
    """(key, action) of the bindings declared by the console's own classes in ``cls``'s MRO."""
    own: set[tuple[str, str]] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("tinyo_tui"):
            continue
        for binding in klass.__dict__.get("BINDINGS", ()):
            if isinstance(binding, Binding):
                for key in binding.key.split(","):
                    own.add((key.strip(), binding.action))
    return own


def build_app(engine: Any, *, clock: Clock | None = None, theme: str | None = None,
              start_engine: bool = True, grace: float = 10.0) -> TinyoApp:
    """Build the console for ``engine`` (not started: the app starts it once it is on screen)."""
    return TinyoApp(engine, clock=clock, theme=theme, start_engine=start_engine, grace=grace)
