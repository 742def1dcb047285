"""Provides Stopper: how the console ends, whatever asks it to (q, Ctrl-C, SIGTERM, SIGHUP, a lost terminal).

Every request is one byte written to a pipe: that is safe from a signal handler, from Textual's
driver threads and from the UI loop alike, and it works even when the UI loop is stuck. One thread,
``tinyo-stopper``, owns the stop: it reads the pipe and

- on the first request, stops the engine gracefully on a thread of its own (running ops get the
  grace period, then the state is committed), and tells the app when it has stopped;
- on a second quit (``q``/Ctrl-C twice, or a second SIGTERM/SIGINT) while stopping, cuts the grace
  short: running ops are stopped now and run again on the next start, as ``tinyo run`` does;
- on a hang-up (SIGHUP, end-of-file or EIO on the terminal), points stdout and stderr at /dev/null
  (writes to a hung-up terminal fail) and stops gracefully; hang-ups never cut the grace short,
  because one hang-up often arrives as several signals.

After a stop that no one at the keyboard asked for (a signal or a hang-up), a backstop ends the
process a few seconds after the engine has stopped, in case anything still holds it up: by then the
state is committed and there is nothing left to lose.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

QUIT = b"q"
"""Someone at the keyboard asked to quit (q, Ctrl-C)."""
TERMINATE = b"t"
"""SIGTERM or SIGINT."""
HANGUP = b"h"
"""SIGHUP, or the terminal's input or output failed."""

BACKSTOP = 5.0
"""Seconds after the engine stopped (from a signal or hang-up) before the process is ended for sure."""

_SIGNALS = {signal.SIGTERM: TERMINATE, signal.SIGINT: TERMINATE, signal.SIGHUP: HANGUP}


class Stopper:
    """Owns the console's stop (see the module doc). ``on_started(now: bool)`` and ``on_stopped(error)``
    are called on the stopper's threads: they should only post a message."""

    def __init__(self, engine: Any, grace: float, *, on_started: Callable[[bool], None],
                 on_stopped: Callable[[str | None], None]) -> None:
        self.engine = engine
        self.grace = grace
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous: dict[int, Any] = {}
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()
        """Set once the engine has stopped (whatever the outcome)."""

    def start(self) -> None:
        """Start the stopper thread and handle SIGTERM, SIGINT and SIGHUP (see ``install_signals``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tinyo-stopper", daemon=True)
            self._thread.start()
        self.install_signals()

    # ------------------------------------------------------------------ requests (any thread)
    def request(self, kind: bytes = QUIT) -> None:
        """Ask to stop; safe from signal handlers and any thread. Does nothing once closed."""
        try:
            os.write(self._write, kind)
        except OSError:  # closed (the app has ended), or a full pipe: enough requests are queued
            pass

    def install_signals(self) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP (main thread only; elsewhere the CLI's own stop still runs).

        Python runs these handlers on the main thread even while it waits on a lock, so a stuck UI
        loop cannot make the process ignore them."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum, kind in _SIGNALS.items():
            self._previous[signum] = signal.signal(signum, lambda _s, _f, kind=kind: self.request(kind))

    def close(self) -> None:
        """Restore the signal handlers and end the stopper thread (the app has ended; call once)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        try:
            os.close(self._write)
        except OSError:
            pass
        if self._thread is None:
            os.close(self._read)

    # ------------------------------------------------------------------ the stopper thread
    def _run(self) -> None:
        started = hurried = unattended = False
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                break
            if not data:
                break
            for byte in data:
                kind = bytes([byte])
                if kind == HANGUP:
                    _detach_from_terminal()
                if kind != QUIT:
                    unattended = True
                if not started:
                    started = True
                    self._on_started(False)
                    threading.Thread(target=self._stop, args=(lambda: unattended,), name="tinyo-stop",
                                     daemon=True).start()
                elif kind != HANGUP and not hurried and not self.stopped.is_set():
                    hurried = True
                    self._on_started(True)
                    # A shorter timeout cuts the engine's grace short; the first stop() then returns too.
                    threading.Thread(target=self.engine.stop, args=(0.0,), name="tinyo-stop-now",
                                     daemon=True).start()
        os.close(self._read)

    def _stop(self, unattended: Callable[[], bool]) -> None:
        error: str | None = None
        try:
            self.engine.stop(self.grace)
        except Exception as exc:  # reported by the app; the CLI's finally tries stop() once more
            error = f"{type(exc).__name__}: {exc}"
        self.stopped.set()
        self._on_stopped(error)
        if unattended():
            backstop = threading.Timer(BACKSTOP, os._exit, args=(1 if error else 0,))
            backstop.daemon = True
            backstop.start()


def _detach_from_terminal() -> None:
    """Point stdout and stderr at /dev/null: writes to a hung-up terminal fail (and a failed print
    during shutdown would hide the real outcome)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)
