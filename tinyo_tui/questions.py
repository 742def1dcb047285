"""Provides the questions the console asks before it acts on the engine: cancel a running op, stop
the engine. Each names what it acts on, and its default (focused) answer is Cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from rich.text import Text

from .safe_text import short_id, visible
from .screens.confirm import ConfirmDialog

if TYPE_CHECKING:
    from .commands import Commands
    from .state import ConsoleState


class Asker(Protocol):
    """The console app as these questions see it."""

    engine: Any
    state: ConsoleState
    commands: Commands
    attached_to: int | None
    grace: float

    def push_screen(self, screen: Any, callback: Any = None) -> Any: ...

    def shutdown(self) -> None: ...

    def note(self, line: str, kind: str) -> None: ...

    def run_worker(self, work: Any, *, thread: bool = False, group: str = "default") -> Any: ...

    def call_from_thread(self, callback: Any, *args: Any) -> Any: ...


def ask_cancel_op(app: Asker, run_id: int, des_id: str) -> None:
    """Ask before cancelling a running op (the dialog names it)."""
    node = app.state.des.get(des_id)
    body = Text()
    body.append(f"run {run_id} of DES {short_id(des_id)}\n", style="bold")
    if node is not None:
        body.append(f"op: {visible(node.op_label)}\n")
        body.append(f"worker: {visible(node.worker or '-')}\n")
        body.append("targets: " + visible(", ".join(sorted(node.targs))) + "\n")
    body.append("\nThe op is stopped and the DES marked cancelled; its targets keep their versions.")

    def done(yes: bool | None) -> None:
        if yes:
            app.commands.cancel(run_id)

    app.push_screen(ConfirmDialog("Stop this running op?", body, "Stop op"), done)


def ask_stop_engine(app: Asker) -> None:
    """Ask before stopping the engine. Embedded, this is the graceful quit; attached, the stop goes
    through the control channel and the console stays, waiting for an engine to start again."""
    pid = app.attached_to
    if pid is None:
        title = "Stop the engine and quit?"
        body = Text(f"The engine runs in this console. It stops gracefully: running ops get up to {app.grace:g} s "
                    "to finish; any still running then are stopped and run again on the next start. Nothing is lost.")
    else:
        title = f"Stop the engine (pid {pid})?"
        body = Text(f"The engine (pid {pid}) serves every attached console and tinyo command. It stops gracefully: "
                    "running ops get its grace period to finish. This console stays and re-attaches when an engine "
                    "starts on the state file again (tinyo start).")

    def done(yes: bool | None) -> None:
        if not yes:
            return
        if pid is None:
            app.shutdown()
            return
        app.note(f"stopping the engine (pid {pid})", "cmd")
        app.run_worker(lambda: _send_stop(app, pid), thread=True, group="engine-stop")

    app.push_screen(ConfirmDialog(title, body, "Stop engine"), done)


def _send_stop(app: Asker, pid: int) -> None:
    """On a worker thread: a request on the socket never holds up the UI loop."""
    try:
        app.engine.stop_engine()
    except Exception as exc:  # the engine went already, or refused: say so
        app.call_from_thread(app.note, f"could not stop the engine (pid {pid}): {exc}", "error")
