"""Provides the JSON lines' encoder for the control channel: a process of its own, ``python -m
tinyo.control.jsonwire IN OUT``, that makes a batch of facts' rows the ``lines`` frames a ``json`` subscriber
is sent (``factwire.lines_frames``), and the hub's end of it.

Keyed JSON lines cost the C encoder some 2 us a fact, four times the rows: in the engine's process that would
be its CPU and its interpreter lock, which the engine's loop wants. The hub hands the rows over a pipe
instead (pickled, ~0.2 us a fact) and waits for the frames with the lock released; the bytes are the same.
The process is started on the first ``json`` subscription. A batch that cannot be pickled (a value of a
recipe's own type) is encoded by the hub itself; if the process cannot be started or ends, so is every batch
from then on. It runs in a session of its own and ignores a terminal's signals: it ends when its pipe does,
with the engine, however that ends.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any

from ..children import ignore_stop_signals
from ..pipe import Pipe
from . import factwire

Frames = list[tuple[bytes, int]]
STOP_TIMEOUT = 5.0
"""Seconds the hub waits at its end for the process to exit before it is killed."""


class FrameEncoder:
    """The hub's end: the process, and the pipes to it and back."""

    def __init__(self) -> None:
        self._process: Any = None
        self._to: Pipe | None = None
        self._back: Pipe | None = None
        self._broken = False

    def frames(self, seq: int, events: list[Any], rows: list[Any], history: bool) -> Frames:
        """The ``lines`` frames of ``events`` (their ``rows``; the last numbered ``seq``), made by the process."""
        if not self._broken and self._to is None:
            self._start()
        if not self._broken and self._to is not None and self._back is not None:
            try:
                self._to.send((seq, rows, history))  # pickled whole before anything is written
            except (pickle.PicklingError, TypeError, AttributeError, ValueError):
                return local_frames(seq, events, rows, history)  # a value only this process can carry
            except OSError:
                self._fail()
            else:
                try:
                    reply = self._back.recv()
                except (OSError, EOFError, pickle.UnpicklingError):
                    self._fail()
                else:
                    if isinstance(reply, list):
                        return reply
                    return local_frames(seq, events, rows, history)  # it could not read them: a kind not known there
        return local_frames(seq, events, rows, history)

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the pipes; the process exits when it reads their end (killed if it has not after ``timeout``)."""
        from ..children import stop_helper

        for pipe in (self._to, self._back):
            if pipe is not None:
                pipe.close()
        self._to = self._back = None
        if self._process is not None:
            stop_helper(self._process, timeout)
            self._process = None

    def _start(self) -> None:
        from ..children import spawn_helper

        to_read, to_write = os.pipe()
        back_read, back_write = os.pipe()
        try:
            self._process = spawn_helper("tinyo.control.jsonwire", (to_read, back_write))
        except OSError:  # no process to be had (a process limit): the hub encodes
            os.close(to_write)
            os.close(back_read)
            self._broken = True
            return
        finally:
            os.close(to_read)
            os.close(back_write)
        self._to, self._back = Pipe(to_write), Pipe(back_read)

    def _fail(self) -> None:
        self._broken = True
        self.close(timeout=0.5)


def local_frames(seq: int, events: list[Any], rows: list[Any], history: bool) -> Frames:
    """The frames made here: from the rows, or for facts of a class not in ``tinyo.events``, from their own
    ``to_json``."""
    try:
        return factwire.lines_frames(seq, rows, history)
    except KeyError:
        text = factwire.json_lines(events).encode()
        return [(factwire.lines_header(seq, len(events), len(text), history) + text, len(events))]


def main(argv: list[str]) -> int:
    ignore_stop_signals()
    requests, replies = Pipe(int(argv[1])), Pipe(int(argv[2]))
    while True:
        try:
            seq, rows, history = requests.recv()
        except EOFError:
            return 0
        try:
            frames: Any = factwire.lines_frames(seq, rows, history)
        except KeyError:  # a kind of fact this side does not know: the hub makes them from the events
            frames = None
        try:
            replies.send(frames)
        except OSError:
            return 0


if __name__ == "__main__":
    from ..children import exit_now

    exit_now(main(sys.argv))
