"""Provides the loop's wake-up: a ``threading.Event`` whose waiting thread also reads pipes it watches.

The process pool's workers report on pipes. Read by a thread of their own, a report reaches the loop through
two wake-ups (that thread's, then the loop's, which waits for the interpreter that thread holds); read by the
loop thread itself while it waits, through one. So the loop waits here: :meth:`wait` returns when another
thread calls :meth:`set`, after its timeout, or after it has run the callback of a watched pipe that became
readable (the callback hands what it read to the loop, which then sets the flag).
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable


class Waker:
    """An Event (``set``, ``clear``, ``is_set``, ``wait``) that one thread at a time waits on, beside pipes."""

    def __init__(self) -> None:
        self._flag = False
        self._sleeping = False
        """The waiting thread is (about to be) in ``poll``: a ``set`` writes a byte to wake it."""
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()
        self._watched: dict[int, Callable[[], None]] = {}
        """Pipes (file descriptors) read while waiting, and what reads each (any thread adds or removes). Never
        changed in place, replaced: ``wait`` reads it without the lock or a copy."""
        self._poller: select.poll | None = None
        """What ``wait`` polls, for ``_polled`` (rebuilt when the watched pipes change)."""
        self._polled: dict[int, Callable[[], None]] | None = None
        self.linger: Callable[[], tuple[list[int], float]] | None = None
        """When a watched pipe alone woke the waiting thread: the pipes that will be readable within moments, and
        within how many seconds (:meth:`_linger` waits for them: what they bring is handled in the same cycle)."""

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        # the waiter marks itself sleeping before it looks at the flag a last time, and this looks at the mark
        # after setting the flag: one of the two sees the other (at worst a byte too many: one early wake)
        if self._sleeping:
            try:
                os.write(self._w, b".")
            except (BlockingIOError, OSError):
                pass  # full: a wake-up is pending anyway; closed: nobody waits any more

    def clear(self) -> None:
        self._flag = False

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Call ``on_ready`` on the waiting thread whenever ``fd`` can be read (or is at its end)."""
        with self._lock:
            self._watched = {**self._watched, fd: on_ready}
        self.set()  # a wait under way polls the new set

    def unwatch(self, fd: int) -> None:
        with self._lock:
            if fd in self._watched:
                self._watched = {k: v for k, v in self._watched.items() if k != fd}

    def wait(self, timeout: float | None = None) -> bool:
        """Until set, ``timeout`` seconds, or a watched pipe was read; the flag. Set already, it still reads
        the watched pipes that are ready: a loop that always has more to do must not leave them unread."""
        start = time.monotonic() if timeout else 0.0
        watched = self._watched
        poller = self._poller
        if self._polled is not watched or poller is None:
            poller = select.poll()
            poller.register(self._r, select.POLLIN)
            for fd in watched:
                poller.register(fd, select.POLLIN)
            self._poller, self._polled = poller, watched
        quiet = not self._flag
        if not quiet:
            ready = poller.poll(0) if watched else []
        else:
            self._sleeping = True
            try:
                ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
                ready = poller.poll(0 if self._flag else ms)  # the flag looked at again once marked sleeping
            finally:
                self._sleeping = False
        quiet = quiet and not self._flag  # else set by another thread as this one went to sleep (no byte then)
        if self._take(ready, watched) or not ready or not quiet or self.linger is None:
            return self._flag
        left = None if timeout is None else timeout - (time.monotonic() - start if timeout else 0.0)
        if left is None or left > 0:  # never past the caller's timeout (something is due then)
            self._linger(self.linger(), watched, left)
        return self._flag

    def _take(self, ready: list[tuple[int, int]], watched: dict[int, Callable[[], None]]) -> bool:
        """Run the callbacks of the watched pipes ``ready``; whether a ``set`` (its byte) was among them."""
        woken = False
        for fd, _ in ready:
            if fd == self._r:
                woken = True
                try:
                    os.read(self._r, 4096)
                except BlockingIOError:
                    pass  # drained by an earlier wait
            else:
                on_ready = watched.get(fd)
                if on_ready is not None and fd in self._watched:  # not unwatched by an earlier callback
                    on_ready()
        return woken

    def _linger(self, due: tuple[list[int], float], watched: dict[int, Callable[[], None]],
                left: float | None) -> None:
        """A watched pipe alone woke the waiting thread and its callback ran: wait at most ``due[1]`` seconds (and
        no more than ``left``, what remains of the caller's timeout) for the pipes ``due[0]`` (reports about to
        come), so that one cycle takes them with it rather than a cycle each. A ``set`` from another thread
        during the wait ends it at once; one made while the callbacks ran (no byte written: the flag was set
        already) does not, and waits for the linger's end, a few milliseconds at most."""
        fds, seconds = due
        if left is not None:
            seconds = min(seconds, left)
        fds = [fd for fd in fds if fd in watched]
        if not fds:
            return
        poller = select.poll()
        poller.register(self._r, select.POLLIN)
        for fd in fds:
            poller.register(fd, select.POLLIN)
        self._sleeping = True
        try:
            ready = poller.poll(max(1, int(seconds * 1000 + 0.999)))
        finally:
            self._sleeping = False
        self._take(ready, watched)

    def close(self) -> None:
        """Close its pipe, once no thread waits any more (a later ``set`` writes nowhere)."""
        fds, self._r, self._w = (self._r, self._w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
