"""Provides TinyoApp, the operations console, and ``build_app`` (used by the CLI and the tests).

``TinyoApp`` is what a user drives: its keys, the actions and commands they start (pause, inject,
fire, rerun, cancel, stop, quit), the look-ups the screens ask of it, and the command palette. How it
is connected to the engine (the bridge, the model, the drain loop, the graceful stop) is in
``app_wiring.ConsoleWiring``, which it builds on.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from tinyo.clock import Clock

from .app_wiring import ConsoleWiring
from .messages import EngineStopped, OpenDetails, Reattached, StopStarted, Target
from .named_commands import NamedCommands
from .questions import ask_cancel_op, ask_stop_engine
from .reattach import reattached
from .safe_text import short_id, visible
from .screens.confirm import QuitDialog
from .screens.des_picker import DesPicker
from .screens.details import DetailsScreen
from .screens.help import HelpScreen
from .screens.inject import InjectDialog
from .screens.main import PANE_KEYS
from .screens.timer_picker import TimerPicker
from .state import Changes, EventRow
from .theming import stylesheet_path


class TinyoApp(ConsoleWiring):
    """The console: keys, commands and palette over ``ConsoleWiring``'s connection to the engine."""

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

    # ------------------------------------------------------------------ palette
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
