"""Facts carrying values of the wrong type (a set whose items do not sort, a key that is not a string): every
subscriber still gets every fact, printed as the JSON log prints it, and the hub goes on."""

from __future__ import annotations

import gc
import queue
import socket
import threading
import warnings
from typing import Any

import msgpack
import pytest

from test_control_frames import _frame, _json_log
from tinyo import events as ev
from tinyo.control import factwire
from tinyo.control import hub as hub_module
from tinyo.control.client import ControlClient
from tinyo.control.factwire import FactReader
from tinyo.control.paths import ControlError
from tinyo.control.protocol import Facts, Live, Result, Welcome, decode_reply, encode


def _metrics(counters: dict[Any, Any]) -> ev.FlowMetrics:
    return ev.FlowMetrics(1.5, None, "flow", "fr1", "step", 0, 1, "running", 3, counters=counters)


class _Subscriber:
    """A real hub with one subscribed outbox, its frames read on a thread into a queue."""

    def __init__(self) -> None:
        self.hub = hub_module.Hub(lambda _why: None)
        self.hub.start()
        self.box = hub_module.Outbox()
        self.hub.subscribe(self.box, history=False)
        self.frames: queue.Queue[Facts] = queue.Queue()
        live = threading.Event()
        threading.Thread(target=self._read, args=(live,), daemon=True).start()
        assert live.wait(10), "the hub added the client (facts before that are history, not sent to it)"

    def _read(self, live: threading.Event) -> None:
        while (lines := self.box.take()) is not None:
            for line in lines:
                message = decode_reply(line)
                live.set()  # the first line is the Live marker
                if isinstance(message, Facts):
                    self.frames.put(message)

    def rows(self, count: int) -> list[Any]:
        rows: list[Any] = []
        while len(rows) < count:
            rows += self.frames.get(timeout=10).facts
        return rows

    def close(self) -> None:
        self.hub.finish()
        self.box.close()


def test_a_fact_with_a_set_that_does_not_sort_reaches_a_subscriber_as_the_json_log_shows_it():
    sub = _Subscriber()
    try:
        odd, after = _metrics({"x": {1, "a"}}), ev.EngineState(2.0, "running")
        sub.hub.on_facts([odd, after])
        rows = sub.rows(2)
        assert FactReader().json_lines(rows) == _json_log([odd, after])
    finally:
        sub.close()


def test_a_fact_nothing_can_pack_is_replaced_by_a_notice_and_the_hub_goes_on():
    loop: list[Any] = []
    loop.append(loop)  # a value no encoder carries (msgpack and JSON alike refuse it)
    sub = _Subscriber()
    try:
        before, after = ev.EngineState(1.0, "running"), ev.EngineState(3.0, "paused", "by hand")
        sub.hub.on_facts([before, _metrics({"x": loop}), after])
        got = FactReader().events(sub.rows(3))
        assert got[0] == before and got[2] == after
        notice = got[1]
        assert isinstance(notice, ev.EngineNotice) and notice.level == "warning"
        assert "flow_metrics fact could not be sent" in notice.message
        sub.hub.on_facts([_metrics({"y": 1})])  # and the next pass goes out as ever
        assert FactReader().events(sub.rows(1)) == [_metrics({"y": 1})]
    finally:
        sub.close()


def test_a_key_that_is_not_a_string_reaches_a_subscriber_as_the_json_log_prints_it():
    sub = _Subscriber()
    try:
        odd, after = _metrics({1: 2, 2.5: 3, None: 4, "x": {5: 6}}), ev.EngineState(2.0, "running")
        sub.hub.on_facts([odd, after])
        rows = sub.rows(2)
        assert FactReader().json_lines(rows) == _json_log([odd, after])
        assert FactReader().events(rows) == [_metrics({"1": 2, "2.5": 3, "null": 4, "x": {"5": 6}}), after]
    finally:
        sub.close()


def _serve_then(garbage: bytes) -> ControlClient:
    """A client of a fake engine that answers its subscription, sends one good frame, then ``garbage``."""
    mine, theirs = socket.socketpair()
    mine.settimeout(10)

    def serve() -> None:
        with theirs:
            while not theirs.recv(1 << 16).endswith(b"\n"):
                pass  # the client's subscribe
            theirs.sendall(encode(Result(1, {"facts": factwire.SCHEMA, "texts": factwire.TEXTS})) + encode(Live())
                           + encode(Facts(1, [ev.EngineState(1.0, "running")])) + garbage)
            theirs.recv(1)  # until the client closes

    threading.Thread(target=serve, daemon=True).start()
    client = ControlClient(mine)
    client.welcome = Welcome(5, 1, "db", "r", "running")
    return client


def test_a_printer_given_a_map_key_no_fact_has_fails_with_a_clear_error():
    bad = msgpack.packb([2, False, [["engine_state", 2.0, "running", {b"k": 1}, 0]]], use_bin_type=True)
    with _serve_then(_frame(bad)) as client:
        got = []
        with pytest.raises(ControlError, match="cannot be read.*map key"):
            for batch in client.subscribe_json(history=False):
                got += batch
    assert got[0] == Live() and got[1].startswith(b'{"type":"engine_state"')


def test_a_result_text_nested_past_the_parser_stays_text_for_a_reader():
    finished = ev.OpFinished(1.0, 1, "d", "op", "w1", 0.1, "x")
    row = list(factwire.packed_rows([finished])[0])
    at = factwire.SCHEMA["op_finished"].index("result") + 1
    row[at] = "[" * 100_000  # what no engine sends (its own encoder would refuse it), read as it came
    assert FactReader().events([row])[0].result == row[at]
    assert FactReader().json_lines([row]).count(b"[") == 100_000 + 2  # and the two empty lists, made and versions


def test_a_client_whose_hello_gets_an_unreadable_answer_closes_its_socket(tmp_path, monkeypatch):
    from tinyo.control.paths import private_dir, socket_path

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    db = tmp_path / "s.db"
    path = socket_path(db)
    private_dir(path.parent)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1 << 16)
                conn.sendall(b"{not json\n")
                conn.recv(1)  # until the client closes its end

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ControlError, match="cannot be read"):
                ControlClient.connect(db, timeout=10)
            gc.collect()
        thread.join(10)
        assert not thread.is_alive(), "the client closed its end"
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_client_refuses_a_frame_past_its_frame_limit_before_holding_it():
    with _serve_then(_frame(b"", length=factwire.FRAME_MAX + 1)) as client:
        got = []
        with pytest.raises(ControlError, match="too long"):
            for message in client.subscribe_batches(history=False):
                got.append(message)
    assert [type(m) for m in got] == [Live, Facts]


def test_a_fact_longer_than_a_client_reads_is_replaced_by_a_notice(monkeypatch):
    monkeypatch.setattr(factwire, "FRAME_MAX", 1 << 20)  # (the real one is 32 MiB)
    sub = _Subscriber()
    try:
        long = ev.OpOutput(1.0, 1, "d", "op", "w1", "stdout", "x" * (2 << 20))
        short = ev.OpOutput(1.0, 1, "d", "op", "w1", "stdout", "after")
        sub.hub.on_facts([long, short])
        got = FactReader().events(sub.rows(2))
        assert isinstance(got[0], ev.EngineNotice) and "op_output fact could not be sent" in got[0].message
        assert got[1] == short
    finally:
        sub.close()
