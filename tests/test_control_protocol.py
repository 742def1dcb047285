"""The control channel's parts on their own: socket paths and folders, the messages, a real in-process server."""

from __future__ import annotations

import io
import os
import socket
import threading

import pytest

from conftest import drop, write_recipe
from tinyo import events as ev
from tinyo.control.client import ControlClient
from tinyo.control.hub import TAKE_BYTES, Outbox
from tinyo.control.paths import SUN_PATH_MAX, ControlError, private_dir, socket_path
from tinyo.control.protocol import (
    Command, Fact, Hello, Live, Missed, ProtocolError, Query, check_args, decode, encode, encode_fact, fact_json,
)
from tinyo.control.server import ControlServer
from tinyo.groups import GroupSummary
from tinyo.report import JsonReporter

RECIPE = """
def load(context):
    print('loaded')

@meta_task(root=True)
def on_event(event):
    return ('k', [DES(deps=frozenset([event]), targs=frozenset(['doc:' + event.rsplit('/', 1)[-1]]), ops=[(load, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1, execution=Execution.THREADS)
"""


# ------------------------------------------------------------------------------------------ paths
def test_the_socket_goes_beside_the_state_file_or_into_xdg_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    db = tmp_path / "s.db"
    assert socket_path(db).parent == tmp_path / "s.db.ctl"
    assert socket_path(tmp_path / "." / "s.db") == socket_path(db)  # one file, one socket
    assert socket_path(tmp_path / "t.db") != socket_path(db)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert socket_path(db).parent == tmp_path / "run" / "tinyo"


def test_a_state_file_deep_down_still_gets_a_socket_path_that_fits(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state-with-a-long-name.db"
    path = socket_path(deep)
    assert len(os.fsencode(path)) <= SUN_PATH_MAX
    assert path.parent.name == f"tinyo-{os.getuid()}"


def test_the_control_folder_is_made_private_and_a_foreign_or_linked_one_refused(tmp_path):
    folder = tmp_path / "ctl"
    private_dir(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    folder.chmod(0o755)  # opened up by hand: closed again before a socket goes in
    private_dir(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(ControlError, match="is a link"):
        private_dir(link)
    if os.getuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(ControlError, match="belongs to uid 65534"):
            private_dir(foreign)


# ------------------------------------------------------------------------------------------ messages
def test_requests_are_checked_against_the_commands_and_queries():
    assert check_args("command", "rerun", {"target": "x"}) == {"target": "x", "downstream": False}
    assert check_args("query", "documents", {}) == {"prefix": None, "limit": 1000}
    for kind, name, args, message in [
        ("command", "format_disk", {}, "unknown command 'format_disk'"),
        ("command", "inject", {}, "missing argument 'event'"),
        ("command", "cancel", {"run_id": True}, "must be int, got bool"),
        ("command", "inject", {"event": "x", "extra": 1}, "unknown argument"),
        ("query", "documents", {"limit": 10 ** 9}, "query documents: argument 'limit' must be 0..5000, got 1000000000"),
        ("query", "doc_infos", {"names": [1, 2]}, "query doc_infos: argument 'names' must be a list of str, got an item 1"),
        ("query", "doc_infos", {"names": ["x"] * 5001}, "argument 'names' must be a list of at most 5000 items"),
        ("query", "drop_tables", {}, "unknown query 'drop_tables'"),
    ]:
        with pytest.raises(ProtocolError, match=message):
            check_args(kind, name, args)


def test_every_typed_command_has_a_wire_form_derived_from_its_fields_and_a_handler_in_the_server():
    import dataclasses
    import typing

    from tinyo import messages
    from tinyo.control.protocol import commands
    from tinyo.control.server import ControlServer

    table = commands()
    for cls in typing.get_args(messages.Request):
        wire = getattr(cls, "wire", None)
        assert isinstance(wire, messages.Wire), f"messages.{cls.__name__} has no wire form"
        spec = table[wire.name]
        renamed, replaced = dict(wire.renamed), {field: arg for field, arg, _, _ in wire.replaced}
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):  # each field travels as an argument of its type
            arg = replaced.get(field.name) or renamed.get(field.name, field.name)
            assert arg in spec, f"{cls.__name__}.{field.name} has no argument in wire command {wire.name!r}"
            assert field.name in replaced or spec[arg].types == (hints[field.name],)
        assert set(spec) == {replaced.get(f.name) or renamed.get(f.name, f.name) for f in dataclasses.fields(cls)}
    assert set(ControlServer.HANDLERS) == set(table)  # and the engine does something for each
    assert check_args("command", "fire", {"timer": "t"}) == {"timer": "t"}
    assert check_args("command", "stop", {}) == {"now": False}


def test_messages_are_json_lines_and_malformed_ones_are_named():
    line = encode(Command(3, "inject", {"event": "a\nb"}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line.rstrip()) == Command(3, "inject", {"event": "a\nb"})
    assert decode(encode(Hello(1, "me")).rstrip()) == Hello(1, "me")
    for raw, message in [(b"", "not a JSON line"), (b"[]", "must be a JSON object"), (b'{"type":"x"}', "unknown message type"),
                         (b'{"type":"query","id":"1","name":"stats"}', "field 'id' must be int"),
                         (b'{"type":"hello"}', "missing field 'protocol'")]:
        with pytest.raises(ProtocolError, match=message):
            decode(raw)


def test_every_fact_of_a_real_engine_comes_back_as_the_same_event(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    with h:
        drop(inbox, "a.csv")
        h.wait_for(lambda: h.of(ev.OpFinished), what="a run")
        h.engine.inject("by-hand")
        h.wait_idle()
    extra = [ev.GroupsChanged(1.0, (GroupSummary("p.*", 2, "p.a", (("ok", 2),)),)),
             ev.FlowMetrics(1.0, 1, "f", "r", "s", 0, 1, "running", 3, {"out": 2}),
             ev.GeneratorError(1.0, "g", "e", "boom", "tb")]
    kinds = set()
    for event in [*h.events, *extra]:
        back = decode(encode(Fact(7, event)).rstrip()).fact
        assert type(back) is type(event) and back.to_json() == event.to_json(), event
        kinds.add(event.kind)
    assert {"event_received", "des_registered", "op_started", "op_output", "op_finished", "groups_changed"} <= kinds


# ------------------------------------------------------------------------------------------ outbox
def test_an_outbox_drops_facts_past_its_limit_and_says_how_many_before_the_next():
    box = Outbox(limit=100)
    fact = b"x" * 40 + b"\n"
    assert box.offer(fact) and box.offer(fact)
    assert not box.offer(fact) and not box.offer(fact)  # full: counted, not queued
    assert box.take() == [fact, fact]
    assert box.offer(fact)
    first, second = box.take()
    assert decode(first.rstrip()) == Missed(2) and second == fact
    box.offer(fact)
    box.offer(fact)
    box.offer(fact)  # missed, and then nothing more comes: the next take says so anyway
    assert len(box.take()) == 2
    assert [decode(line.rstrip()) for line in box.take()] == [Missed(1)]


def test_the_missed_line_an_outbox_owes_counts_against_its_limit():
    """After an overflow, a fact that would fit alone does not fit with the "missed N" line owed before it:
    what waits for a client never exceeds its buffer, also by that line."""
    box = Outbox(limit=100)
    assert box.offer(b"a" * 49 + b"\n")  # 50 bytes
    assert not box.offer(b"b" * 59 + b"\n")  # 110 in all: missed
    assert not box.offer(b"c" * 40 + b"\n")  # 91 alone, but 50 + the missed line + 41 is over 100
    assert box.load()[0] <= 100
    assert box.take() == [b"a" * 49 + b"\n"]
    assert box.offer(b"c" * 40 + b"\n")
    first, second = box.take()
    assert decode(first.rstrip()) == Missed(2) and second == b"c" * 40 + b"\n"


def test_a_batch_of_facts_goes_in_whole_when_it_fits_and_fact_by_fact_when_it_does_not():
    box = Outbox(limit=100)
    fact = b"x" * 29 + b"\n"  # 30 bytes
    box.offer_many([fact, fact], 60)
    box.offer_many([fact, fact], 60)  # only one more fits: the other is missed
    assert box.load() == (90, 1) and box.take() == [fact, fact, fact]
    box.offer_many([fact], 30)  # a missed line is owed first: this batch goes fact by fact, after it
    first, second = box.take()
    assert decode(first.rstrip()) == Missed(1) and second == fact


def test_a_writer_takes_a_bounded_part_of_a_full_outbox_the_rest_stays_counted():
    box = Outbox()
    fact = b"f" * 999 + b"\n"
    box.offer_many([fact] * 1000, 1000 * 1000)
    taken = box.take()
    assert len(taken) * 1000 <= TAKE_BYTES < (len(taken) + 1) * 1000
    assert box.load() == (1000 * 1000 - len(taken) * 1000, 0)


def test_a_fact_line_carries_the_fact_as_tinyo_run_json_prints_it():
    event = ev.OpStarted(1.5, 7, "abc", "load", "w1", 1, frozenset({"b/\udcff", "a \u00e9"}))
    line = encode_fact(42, event).rstrip(b"\n")
    out = io.StringIO()
    reporter = JsonReporter(out)
    reporter(event)
    reporter.close()
    assert fact_json(line) + b"\n" == out.getvalue().encode()
    assert decode(line) == Fact(42, event)
    assert fact_json(encode(Live())) is None and fact_json(b'{"type":"fact"') is None


def test_a_reply_waits_for_room_while_facts_do_not():
    box = Outbox(limit=10)
    box.put(b"y" * 50 + b"\n")  # a reply goes in whatever the fill ...
    done = threading.Event()
    threading.Thread(target=lambda: (box.put(b"z\n"), done.set()), daemon=True).start()
    assert not done.wait(0.2)  # ... but the next one waits until the client has read
    box.take()
    assert done.wait(5)
    box.close()
    assert box.take() == [b"z\n"] and box.take() is None


# ------------------------------------------------------------------------------------------ server in process
def test_a_server_in_process_answers_queries_and_streams_history_then_live(tmp_path, inbox, harness, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    server = ControlServer(h.engine).start()
    try:
        with h:
            h.engine.inject("first")
            h.wait_idle()
            with ControlClient.connect(tmp_path / "s.db") as client:
                assert client.pid == os.getpid() and client.welcome.state == "running"
                assert client.query("stats")["events_total"] == 1
                assert "doc:first" in client.query("explain", name="doc:first")
                assert [d["name"] for d in client.query("doc_infos", names=["doc:first", "nope"])] == ["doc:first"]
                stream = client.subscribe(history=True)
                history = []
                for message in stream:
                    if isinstance(message, Live):
                        break
                    history.append(message.fact)
                assert [e.name for e in history if isinstance(e, ev.EventReceived)] == ["first"]
                client._write(Command(99, "inject", {"event": "second"}))
                names = []
                for message in stream:
                    if isinstance(message, Fact) and isinstance(message.fact, ev.EventReceived):
                        names.append(message.fact.name)
                        break
                assert names == ["second"]
    finally:
        server.close()
    assert not server.path.exists()


def test_a_query_that_fails_is_an_error_for_that_client_only(tmp_path, inbox, harness, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    server = ControlServer(h.engine).start()
    try:
        with h, ControlClient.connect(tmp_path / "s.db") as client:
            with pytest.raises(ControlError, match="no timer named 'nope'"):
                client.command("fire", timer="nope")
            sock: socket.socket = client._sock
            sock.sendall(encode(Query(5, "group_members", {"pattern": "x", "limit": -1})))
            assert "query group_members: argument 'limit' must be 0..5000, got -1" in client.receive().message
            assert client.query("stats")["state"] == "running"
    finally:
        server.close()
