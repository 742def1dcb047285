"""Provides TerminalDriver: Textual's Linux driver, made to notice a terminal that is gone.

When the terminal hangs up (an SSH connection drops, a tmux pane is killed, a terminal window is
closed), reads from it return end-of-file (or fail with EIO) and writes fail with EIO. Textual's own
driver does not expect either: its input thread takes an empty read for "nothing typed" and selects
again at once, a busy loop that keeps a CPU half busy forever; its writer thread dies on the first
failed write, after which the UI thread blocks for good on the writer's full queue (so the app never
runs another callback, not even a SIGTERM handler). This driver reads input with a loop that ends on
end-of-file or EIO, and writes through a file that drops output once the terminal is gone. Either way
it tells the app once, through ``TerminalLostHandler.terminal_lost``, so the app can stop the engine.
"""

from __future__ import annotations

import os
import selectors
from codecs import getincrementaldecoder
from typing import IO, Any, Protocol

from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

_READ_SIZE = 4096
_SELECT_TIMEOUT = 0.1
"""How often the input loop checks whether it should end (and flushes a lone escape key)."""


class TerminalLostHandler(Protocol):
    """What the driver calls when the terminal is gone (from the driver's threads)."""

    def terminal_lost(self, reason: str) -> None: ...


class _GuardedOutput:
    """The terminal's output file, for Textual's writer thread: a failed write means the terminal is
    gone, so it is reported once and all later output is dropped instead of raised."""

    def __init__(self, file: IO[str], lost: Any) -> None:
        self._file = file
        self._lost = lost
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._file.write(text)
            except (OSError, ValueError) as exc:
                self._gone(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError) as exc:
                self._gone(exc)

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True

    def _gone(self, exc: BaseException) -> None:
        self.gone = True
        self._lost(f"terminal write failed: {exc}")


class TerminalDriver(LinuxDriver):
    """LinuxDriver whose input loop and output survive a hung-up terminal (see the module doc)."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._lost_reported = False
        self._output = _GuardedOutput(self._file, self._terminal_lost)
        self._file = self._output  # the writer thread, started later, writes through it

    def _terminal_lost(self, reason: str) -> None:
        if self._lost_reported:
            return
        self._lost_reported = True
        # Nothing more can be read: the input loop ends, and stopping the app will not wait for it.
        self.exit_event.set()
        handler = getattr(self._app, "terminal_lost", None)
        if handler is not None:
            handler(reason)

    def run_input_thread(self) -> None:
        """Read keys until the app stops input, or the terminal ends (end-of-file or an error)."""
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")(errors="replace").decode
        with selectors.DefaultSelector() as selector:
            selector.register(self.fileno, selectors.EVENT_READ)
            while not self.exit_event.is_set():
                if selector.select(_SELECT_TIMEOUT):
                    try:
                        data = os.read(self.fileno, _READ_SIZE)
                    except OSError as exc:
                        self._terminal_lost(f"terminal read failed: {exc}")
                        return
                    if not data:
                        self._terminal_lost("end of input: the terminal hung up")
                        return
                    for event in parser.feed(decode(data)):
                        self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)
