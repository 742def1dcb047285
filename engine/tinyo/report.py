"""Provides the headless reporters: a readable live log (rich) and JSON lines.

The engine never prints: reporters subscribe to the bus. A reporter hands events to its own printer
thread through a bounded queue (a slow terminal back-pressures the engine; nothing is dropped).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from datetime import datetime
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from . import events as ev
from .names import json_escaped
from .text import printable

QUEUE_MAX = 10_000


class _Printer:
    def __init__(self) -> None:
        self._queue: queue.Queue[ev.BusEvent | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread = threading.Thread(target=self._loop, name="tinyo-reporter", daemon=True)
        self._thread.start()

    def __call__(self, event: ev.BusEvent) -> None:
        self._queue.put(event)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                self.flush()
                return
            self.write(event)
            if self._queue.empty():
                self.flush()

    def write(self, event: ev.BusEvent) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Flush the output stream (after a burst)."""


class JsonReporter(_Printer):
    """One JSON object per bus event, one per line."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        super().__init__()

    def write(self, event: ev.BusEvent) -> None:
        self.stream.write(json_escaped(json.dumps(event.to_json(), default=str, ensure_ascii=False)) + "\n")

    def flush(self) -> None:
        self.stream.flush()


class TextReporter(_Printer):
    """A readable live log. Op output prints whole on its own line after an ``op[worker] |`` tag."""

    def __init__(self, stream: IO[str] | None = None, *, debug: bool = False, color: bool | None = None,
                 verbose: bool = False) -> None:
        self.console = Console(file=stream or sys.stdout, highlight=False, markup=False, emoji=False,
                               soft_wrap=True, no_color=None if color is None else not color,
                               force_terminal=color if color else None)
        self.debug = debug
        self.verbose = verbose
        super().__init__()

    def _line(self, ts: float, tag: str, style: str, *parts: Any) -> None:
        text = Text(datetime.fromtimestamp(ts).strftime("%H:%M:%S") + " ", style="dim")
        text.append(f"{tag:<7}", style=style)
        for part in parts:
            if isinstance(part, tuple):
                text.append(printable(str(part[0])), style=part[1])
            else:
                text.append(printable(str(part)))
        self.console.print(text)

    def write(self, event: ev.BusEvent) -> None:  # noqa: C901 - one branch per event type, kept flat
        ts = event.ts
        if isinstance(event, ev.OpOutput):
            tag = Text(f"{printable(event.op)}[{printable(event.worker)}] | ", style="cyan" if event.stream == "stdout" else "yellow")
            tag.append(printable(event.line))
            self.console.print(tag)
        elif isinstance(event, ev.EventReceived):
            self._line(ts, "event", "bold", event.name, (f"  ({event.source} #{event.event_id})", "dim"))
        elif isinstance(event, ev.GeneratorError):
            self._line(ts, "ERROR", "bold red", f"generator {event.generator} on event {event.event!r}: {event.error}")
            if self.debug and event.traceback:
                self.console.print(Text(event.traceback.rstrip(), style="red"))
        elif isinstance(event, ev.DESRejectedEvent):
            self._line(ts, "REJECT", "bold red", f"DES {event.des_id} from {event.generator}: {event.reason}")
        elif isinstance(event, ev.DESRegistered) and not event.restored:
            arrow = f"{', '.join(sorted(event.deps)) or '-'} -> {', '.join(sorted(event.targs))}"
            self._line(ts, "des", "magenta", f"{event.des_id} {'+'.join(event.ops)}: {arrow}")
        elif isinstance(event, ev.OpStarted):
            self._line(ts, "start", "blue", f"{event.op} [{event.worker}] run {event.run_id}",
                       (f" attempt {event.attempt}" if event.attempt > 1 else "", "yellow"))
        elif isinstance(event, ev.OpFinished):
            self._line(ts, "ok", "green", f"{event.op} [{event.worker}] run {event.run_id} ({_ms(event.duration)})")
        elif isinstance(event, ev.OpFailed):
            retry = f"; retry in {event.retry_in:g}s" if event.retry_in is not None else ""
            self._line(ts, "FAILED", "bold red", f"{event.op} [{event.worker}] run {event.run_id}: {event.error}{retry}")
            if self.debug and event.traceback:
                self.console.print(Text(event.traceback.rstrip(), style="red"))
        elif isinstance(event, ev.OpCancelled):
            self._line(ts, "cancel", "yellow", f"{event.op} [{event.worker}] run {event.run_id} cancelled")
        elif isinstance(event, ev.TimerFired):
            self._line(ts, "timer", "cyan", f"{event.name} -> {event.event}", (" (fired by hand)" if event.manual else "", "dim"))
        elif isinstance(event, ev.EngineState):
            self._line(ts, "engine", "bold", event.state, (f"  {event.detail}" if event.detail else "", "dim"))
        elif isinstance(event, ev.EngineNotice):
            style = {"error": "bold red", "warning": "yellow"}.get(event.level, "dim")
            self._line(ts, event.level if event.level != "info" else "note", style, event.message)
        elif isinstance(event, ev.WorkerChanged) and event.state == "dead":
            self._line(ts, "worker", "bold red", event.detail)
        elif self.verbose and isinstance(event, (ev.DESStateChanged, ev.DocumentUpdated, ev.DESQueued)):
            self._line(ts, event.kind[:7], "dim", json.dumps(event.to_json(), default=str))

    def flush(self) -> None:
        self.console.file.flush()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
