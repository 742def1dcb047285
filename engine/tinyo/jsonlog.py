"""Provides the JSON log's printer process, ``python -m tinyo.jsonlog FD``, and the engine's end of it.

``tinyo run --json`` prints every fact as a JSON object on a line of its own. The engine's process only
makes each batch of facts the rows of their values (``factwire.own_rows``, as the control channel sends
them) and sends the batch down a pipe in one message (the rows marshalled: plain values, from this
engine); this process takes every batch waiting in one read, encodes their values by one call of the C
encoder and puts them in their kinds' lines (``jsonrows.lines``, the keys sent first by the engine: this
process imports no fact class, half its start-up), and writes them at once to the standard output it shares
with the engine. The encoding, most of the log's cost, then takes neither the engine's interpreter lock nor
its process's CPU. A reader that stops reading holds this process up, then the pipe, then the engine's
printer (every fact is printed); a reader that went away ends it, and the engine drops what it would have
printed. It runs in a session of its own, so a terminal's Ctrl-C and hang-up reach only the engine, and it
ignores them and a service manager's terminate (sent to every process of the service): the engine stops
on them, its last facts still come through, and this process ends when the pipe does, whatever ended the
engine.
"""

from __future__ import annotations

import marshal
import os
import sys
from typing import Any

from .children import ignore_stop_signals
from .control import jsonrows  # not factwire (the facts' classes): the engine's side imports it where it is used
from .pipe import Pipe, write_all

STOP_TIMEOUT = 10.0
"""Seconds the engine waits at its exit for this process to write what it was sent."""


class JsonPrinter:
    """The engine's end: the process, and the pipe its batches go down."""

    def __init__(self) -> None:
        from .children import spawn_helper

        if sys.stdout is not None:
            sys.stdout.flush()  # what the engine printed before comes first
        from .control.factwire import ALONE, KEYS

        read, write = os.pipe()
        try:
            self._process = spawn_helper("tinyo.jsonlog", (read,))
        finally:
            os.close(read)
        self._pipe = Pipe(write)
        try:
            self._pipe.send((KEYS, ALONE))  # first: each kind's keys, so the process need not import the facts
        except OSError:  # the process has ended already: the caller prints in its own process, with nothing left open
            self.close(0)
            raise

    def send(self, events: list[Any]) -> None:
        """Hand a batch of facts over; BrokenPipeError once the process has ended (its reader went away)."""
        self._pipe.send(batch_message(events))

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the pipe, and wait for the process to write what it holds and exit."""
        from .children import stop_helper

        self._pipe.close()
        stop_helper(self._process, timeout)


def batch_message(events: list[Any]) -> bytes | str:
    """What goes down the pipe for a batch of facts, made whole before anything is written: their rows,
    marshalled (plain values: half pickle's time on the engine's side, and the pipe's pickle of bytes is a
    copy), or for a fact class or a value the rows cannot carry, the batch's lines themselves (rare)."""
    from .control import factwire

    try:
        return marshal.dumps(factwire.own_rows(events))
    except (KeyError, TypeError, AttributeError, ValueError):
        return factwire.json_lines(events)


def main(argv: list[str]) -> int:
    ignore_stop_signals()
    pipe = Pipe(int(argv[1]))
    out = 1  # the standard output it shares with the engine (written to directly: no buffer between)
    templates = None
    while True:
        try:
            messages = pipe.recv_all()  # every batch that arrived while the last was written: one wake-up
        except EOFError:
            return 0
        if templates is None:
            templates = first_templates(messages)
        try:
            write_all(out, lines(messages, templates))
        except OSError:  # the reader went away (a closed pipe, a hung-up terminal): the engine goes on
            return 0


def first_templates(messages: list[Any]) -> jsonrows.Templates:
    """The kinds' keys the engine sends first (``JsonPrinter``), taken off ``messages``; if the first message is
    not them (an engine of another version), this process's own, and that message is a batch like the rest:
    a printer that fails here would lose the whole log."""
    first = messages[0]
    if (isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], dict)
            and isinstance(first[1], frozenset)):
        del messages[0]
        try:
            return jsonrows.Templates(*first)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass  # keys of a shape this version cannot use: its own keys then (that message was no batch)
    from .control.factwire import ALONE, KEYS

    return jsonrows.Templates(KEYS, ALONE)


def lines(messages: list[bytes | str], templates: jsonrows.Templates | None = None) -> bytes:
    """The JSON lines of ``messages`` (batches of rows, marshalled, or a rare batch's lines already made), in
    order, as one write. Rows are put in their kinds' lines (``templates``: this engine's unless given), each
    ``jsonrows.CHUNK``'s values encoded by one call of the C encoder (``jsonrows``)."""
    if templates is None:
        from .control.factwire import ALONE, KEYS

        templates = jsonrows.Templates(KEYS, ALONE)
    texts: list[str] = []
    for message in messages:
        if isinstance(message, str):
            texts.append(message)
            continue
        texts.append(jsonrows.lines(marshal.loads(message), templates))
    return "".join(texts).encode()


if __name__ == "__main__":
    from .children import exit_now

    exit_now(main(sys.argv))
