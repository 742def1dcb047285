"""The control channel's facts frames (msgpack): exact values, one encoding for every reader, and a client that
reads only what a frame may hold, failing clearly on anything else; the engine reads JSON lines only."""

from __future__ import annotations

import contextlib
import io
import math
import socket
import struct
import threading
from pathlib import Path

import msgpack
import pytest

from tinyo import events as ev
from tinyo.control import factwire
from tinyo.control.client import REPLY_LINE_MAX, ControlClient
from tinyo.control.factwire import FactReader
from tinyo.control.paths import ControlError
from tinyo.control.protocol import Facts, Incoming, Live, ProtocolError, Result, Welcome, decode, decode_reply, encode
from tinyo.report import JsonReporter


def _json_log(events: list[ev.BusEvent]) -> bytes:
    out = io.StringIO()
    reporter = JsonReporter(out)
    for event in events:
        reporter(event)
    reporter.close()
    return out.getvalue().encode()


def test_values_msgpack_and_json_show_differently_print_as_the_json_log_prints_them():
    """An op's result of any type travels as its JSON text; a field of the wrong type is shown as the JSON log
    shows it; timestamps come back to the last bit."""
    ts = 1765097651.1234567
    results = [b"\x00bytes", 2 ** 70, {1: "a", "b": {3, 1}}, (1, [2.5, None]), math.inf, "\udcff", 7, None, "42"]
    events = [ev.OpFinished(ts + i, i, "d", "op", "w1", 0.1, result) for i, result in enumerate(results)]
    events += [ev.OpStarted(ts, 9, "d", "op", Path("/a/worker"), 1, frozenset({"z", "a", "m"})),  # type: ignore[arg-type]
               ev.EventReceived(ts, 3, "bad \udcfe name", "file", ts + 0.5, 1, 0)]
    rows = decode_reply(encode(Facts(len(events), events))).facts
    assert FactReader().json_lines(rows) == _json_log(events)
    back = FactReader().events(rows)
    assert [e.ts for e in back] == [e.ts for e in events]
    assert back[-1] == events[-1] and back[-2].targs == events[-2].targs
    assert [e.result for e in back[:len(results)]][3:] == [[1, [2.5, None]], math.inf, "\udcff", 7, None, "42"]
    # read twice (a reader may be handed the same rows again): the same
    assert FactReader().json_lines(rows) == _json_log(events)


def test_the_engine_reads_json_lines_only():
    frame = encode(Facts(1, [ev.EngineState(1.0, "running")]))
    assert frame[:1] == b"\x00"
    with pytest.raises(ProtocolError, match="not a JSON line"):
        decode(frame)  # what the server does with every line a client sends


def _frame(payload: bytes, length: int | None = None) -> bytes:
    return struct.pack(">BI", 0, len(payload) if length is None else length) + payload


@pytest.mark.parametrize("payload, why", [
    (b"\xc1garbage", "not a msgpack frame"),
    (msgpack.packb([1, False, [["x", 1]]]) + b"\x90", "not a msgpack frame"),  # more than one object
    (msgpack.packb([1, False, [msgpack.ExtType(1, b"x")]]), "not a msgpack frame"),
    (msgpack.packb([1, False, [msgpack.Timestamp(1, 0)]], datetime=False), "not a msgpack frame"),
    (msgpack.packb([1, False, [{b"k": 2}]]), "map key of type bytes"),  # a key JSON writes no string for
    (msgpack.packb([1, False, [{(1, 2): 2}]]), "not a msgpack frame"),  # (a number's is read as JSON writes it)
    (msgpack.packb([1, False]), r"\[seq, history, rows\]"),
    (msgpack.packb({"seq": 1}), r"\[seq, history, rows\]"),
    (b"\xdd\xff\xff\xff\xff", "not a msgpack frame"),  # an array of 4 billion items, in 5 bytes
])
def test_a_frame_that_is_not_plain_facts_is_a_clear_error(payload, why):
    with pytest.raises(ProtocolError, match=why):
        decode_reply(_frame(payload))
    incoming = Incoming(1 << 20)
    incoming.feed(encode(Live()) + _frame(payload))
    assert list(incoming.messages()) == [Live()]  # what came before it is read
    for _ in range(2):  # and the stream goes no further
        with pytest.raises(ProtocolError, match=why):
            incoming.messages()


def test_a_frame_longer_than_the_limit_is_refused_before_it_is_held():
    incoming = Incoming(1000)
    incoming.feed(_frame(b"", length=1 << 30)[:5])  # the head alone says how long: refused now
    with pytest.raises(ProtocolError, match="too long"):
        incoming.messages()


def test_messages_split_wherever_the_reads_cut_them():
    events = [ev.EventReceived(float(i), i, f"/in/\n{i}", "file") for i in range(50)]
    stream = encode(Live()) + encode(Facts(50, events)) + encode(Result(1, {"a": "\x00\n"})) + encode(Facts(51, events[:1]))
    for size in (1, 7, 4096):
        incoming, got = Incoming(1 << 20), []
        for at in range(0, len(stream), size):
            incoming.feed(stream[at:at + size])
            got += incoming.messages()
        assert [type(m) for m in got] == [Live, Facts, Result, Facts]
        assert FactReader().events(got[1].facts) == events and got[2].value == {"a": "\x00\n"}


def test_a_client_of_a_server_sending_garbage_fails_with_a_clear_error():
    """A fake engine welcomes, answers the subscription, then sends a frame that is not facts: the client's
    stream ends in a ControlError naming it (no crash, nothing made of the garbage)."""
    for garbage in (_frame(b"\xc1\xc1\xc1"), _frame(msgpack.packb([1, False, [msgpack.ExtType(5, b"x")]])),
                    _frame(b"", length=REPLY_LINE_MAX + 1), b"\x00\x00"):
        mine, theirs = socket.socketpair()
        mine.settimeout(10)

        def serve(sock: socket.socket = theirs, garbage: bytes = garbage) -> None:
            while not sock.recv(1 << 16).endswith(b"\n"):
                pass  # the client's subscribe
            sock.sendall(encode(Result(1, {"facts": factwire.SCHEMA, "texts": factwire.TEXTS})) + encode(Live())
                         + encode(Facts(1, [ev.EngineState(1.0, "running")])) + garbage)
            if len(garbage) < 5:
                sock.close()  # a frame cut short: the stream ends with it

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ControlClient(mine)
        client.welcome = Welcome(5, 1, "db", "r", "running")
        got = []
        try:
            with pytest.raises(ControlError, match="cannot be read") if len(garbage) >= 5 else contextlib.nullcontext():
                for message in client.subscribe_batches(history=False):
                    got.append(message)
        finally:
            client.close()
            theirs.close()
        assert [type(m) for m in got] == [Live, Facts] and got[1].facts == [ev.EngineState(1.0, "running")]


def test_a_client_sending_a_facts_frame_gets_an_error_and_the_engine_goes_on(tmp_path, inbox, harness, monkeypatch):
    """The engine reads JSON lines only: msgpack from a client is a malformed request (never unpacked)."""
    from conftest import write_recipe
    from test_control_protocol import RECIPE

    from tinyo.control.protocol import PROTOCOL, Error, Hello
    from tinyo.control.server import ControlServer

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    server = ControlServer(h.engine).start()
    try:
        with h, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(str(server.path))
            frame = encode(Facts(1, [ev.EngineState(1.0, "running")]))
            sock.sendall(encode(Hello(PROTOCOL, "raw")) + frame + b"\n" + b'{"type":"query","id":2,"name":"stats"}\n')
            incoming, got = Incoming(1 << 20), []
            while not any(isinstance(m, Result) for m in got):
                chunk = sock.recv(65536)
                assert chunk, "the engine closed the connection"
                incoming.feed(chunk)
                got += incoming.messages()
            welcome, *refused, answer = got  # (one error per line the frame's bytes made)
            assert isinstance(welcome, Welcome)
            assert refused and all(isinstance(m, Error) and "not a JSON line" in m.message for m in refused)
            assert isinstance(answer, Result) and answer.id == 2 and answer.value["state"] == "running"
    finally:
        server.close()
