"""The control channel's parts on their own: socket paths and folders, the messages, a real in-process server."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections import deque
from typing import Any

import pytest

from conftest import drop, write_recipe
from test_report import _every_kind_of_fact, _to_json_line
from tinyo import events as ev
from tinyo.control.client import ControlClient
from tinyo.control import factwire
from tinyo.control.factwire import FactReader
from tinyo.control.hub import TAKE_BYTES, Outbox
from tinyo.control.paths import SUN_PATH_MAX, ControlError, private_dir, socket_path
from tinyo.control.protocol import (
    PROTOCOL, Command, Error, Fact, Facts, Hello, Incoming, Live, Missed, ProtocolError, Query, Welcome, check_args,
    decode, decode_reply, encode,
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
    events = [*h.events, *extra]
    frames = factwire.facts_frames(len(events), factwire.packed_rows(events))
    assert len(frames) == 1 and frames[0][0] == encode(Facts(len(events), events))  # all of them in one frame
    message = decode_reply(frames[0][0])
    back = FactReader(factwire.SCHEMA).events(message.facts)
    assert message.seq == len(events) and len(back) == len(events)
    for event, again in zip(events, back):
        assert type(again) is type(event) and again.to_json() == event.to_json(), event
    kinds = {event.kind for event in events}
    assert {"event_received", "des_registered", "op_started", "op_output", "op_finished", "groups_changed"} <= kinds


def test_a_long_batch_of_facts_is_cut_into_frames_that_carry_every_fact_once():
    long = [ev.GeneratorError(float(i), "g", f"e{i}", "boom", "tb " * 20_000) for i in range(40)]  # ~60 KB each
    frames = factwire.facts_frames(40, factwire.packed_rows(long))
    assert len(frames) > 1 and all(len(frame) <= 2 * factwire.FRAME_BYTES for frame, _ in frames)
    assert sum(count for _, count in frames) == 40
    back = [e for frame, _ in frames for e in FactReader().events(decode_reply(frame).facts)]
    assert back == long
    assert [decode_reply(frame).seq for frame, _ in frames][-1] == 40


def test_a_reader_matches_another_versions_fields_by_name_and_keeps_what_it_cannot_read_as_dicts():
    event = ev.DocumentUpdated(2.5, "doc/a", 3, "event")
    # an engine whose document_updated has a field more (and in another order), and a kind unknown here
    schema = {**factwire.SCHEMA, "document_updated": ["version", "ts", "name", "size", "by"], "new_kind": ["ts", "x"]}
    reader = FactReader(schema)
    rows = [["document_updated", 3, 2.5, "doc/a", 1234, "event"], ["new_kind", 1.0, [1, 2]],
            ["op_started", 1.0], "garbage", [], [17, 1], ["document_updated", 1]]
    got = reader.events(rows)
    assert got[0] == event
    assert got[1] == {"type": "new_kind", "ts": 1.0, "x": [1, 2]}
    assert all(isinstance(g, dict) for g in got[2:]) and len(got) == len(rows)
    assert reader.json_lines(rows[1:2]) == b'{"type":"new_kind","ts":1.0,"x":[1,2]}\n'
    assert FactReader("not a schema").events([["document_updated", 2.5, "doc/a", 3, "event"]]) == [
        {"type": "document_updated", "values": [2.5, "doc/a", 3, "event"]}]


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


def test_a_line_of_many_facts_that_does_not_fit_counts_them_all_as_missed():
    box = Outbox(limit=100)
    batch = b"x" * 59 + b"\n"  # 60 bytes, 7 facts
    assert box.offer(batch, 7)
    assert not box.offer(batch, 7)  # 120: all 7 missed
    assert box.load() == (60, 7)
    assert box.take() == [batch]
    assert box.offer(b"y\n", 2)
    first, second = box.take()
    assert decode(first.rstrip()) == Missed(7) and second == b"y\n"


def test_a_writer_takes_a_bounded_part_of_a_full_outbox_the_rest_stays_counted():
    box = Outbox()
    fact = b"f" * 999 + b"\n"
    for _ in range(1000):
        box.offer(fact)
    taken = box.take()
    assert len(taken) * 1000 <= TAKE_BYTES < (len(taken) + 1) * 1000
    assert box.load() == (1000 * 1000 - len(taken) * 1000, 0)


def test_a_facts_line_read_back_prints_each_fact_as_tinyo_run_json_prints_it():
    events = [ev.OpStarted(1.5, 7, "abc", "load", "w1", 1, frozenset({"b/\udcff", "a \u00e9", "c"})),
              ev.GroupsChanged(2.0, (GroupSummary("p.*", 2, "p.a", (("ok", 2),)),)),
              ev.FlowMetrics(3.0, 1, "f", "r", "s", 0, 1, "running", 3, {"out": 2}),
              ev.DESStateChanged(4.0, "abc", "ok", "built", "running", ("t/1", "t/2")),
              ev.OpFinished(5.0, 7, "abc", "load", "w1", 0.25, 42)]
    frame = encode(Facts(5, events))
    out = io.StringIO()
    reporter = JsonReporter(out)
    for event in events:
        reporter(event)
    reporter.close()
    message = decode_reply(frame)
    assert FactReader().json_lines(message.facts) == out.getvalue().encode()
    assert FactReader().events(message.facts) == events


def test_a_printer_makes_the_json_logs_bytes_of_rows_whatever_their_batch():
    """A row whose values come out one for each key is keyed from the values' own encoding; one with a list or
    object of several items sends its batch the way of a dict per fact: the same bytes either way."""
    facts = _every_kind_of_fact()
    expected = "".join(map(_to_json_line, facts)).encode()
    rows = decode_reply(encode(Facts(len(facts), facts))).facts  # as they come off the socket
    reader = FactReader()
    for batches in ([rows], [[row] for row in rows], [rows[:4], rows[4:5], rows[5:]]):
        assert b"".join(reader.json_lines(batch) for batch in batches) == expected
    assert reader.json_lines([]) == b""


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


def _line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        buffer += chunk
    end = buffer.index(b"\n")
    line = bytes(buffer[:end])
    del buffer[:end + 1]
    return line


def _message(sock: socket.socket, incoming: Incoming, pending: deque[Any]) -> Any:
    """The next message the engine sends (a JSON line or a facts frame)."""
    while not pending:
        pending.extend(incoming.messages())
        if not pending:
            chunk = sock.recv(65536)
            assert chunk, "the engine closed the connection"
            incoming.feed(chunk)
    return pending.popleft()


def test_a_client_of_the_old_protocol_is_refused_in_one_clear_line_and_a_new_one_reads_facts_in_batches(
        tmp_path, inbox, harness, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    server = ControlServer(h.engine).start()
    try:
        with h:
            for version in (1, 3, 4):  # a fact per line; JSON lines made by the engine (`"form":"json"`); rows as JSON
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
                    old.settimeout(20)
                    old.connect(str(server.path))
                    old.sendall(encode(Hello(version, "tinyo attach")))
                    buffer = bytearray()
                    reply = decode(_line(old, buffer))
                    assert isinstance(reply, Error)
                    assert reply.message == (f"protocol {version} is not spoken here (this engine speaks {PROTOCOL}); "
                                             "use the tinyo that runs the engine")
                    assert _line(old, buffer) == b""  # and the connection ends
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as new:
                new.settimeout(20)
                new.connect(str(server.path))
                new.sendall(encode(Hello(PROTOCOL, "raw")) + b'{"type":"subscribe","id":1,"history":false}\n')
                incoming, pending = Incoming(1 << 24), deque()
                assert isinstance(_message(new, incoming, pending), Welcome)
                answer = _message(new, incoming, pending)
                reader = FactReader(answer.value["facts"], answer.value["texts"])
                assert answer.value["facts"]["event_received"][:4] == ["ts", "event_id", "name", "source"]
                assert answer.value["texts"] == {"op_finished": ["result"]}
                assert isinstance(_message(new, incoming, pending), Live)
                for i in range(50):
                    h.engine.inject(f"burst-{i}")
                names, lines, facts = [], 0, 0
                while len(names) < 50:
                    message = _message(new, incoming, pending)
                    assert isinstance(message, Facts)
                    lines += 1
                    facts += len(message.facts)
                    names += [e.name for e in reader.events(message.facts) if isinstance(e, ev.EventReceived)]
                assert names == [f"burst-{i}" for i in range(50)]
                assert facts > lines  # a cycle's facts (and more) share a frame
    finally:
        server.close()

# ------------------------------------------------------------------------------------------ hub history
def test_facts_published_before_a_subscribe_are_its_history_the_last_of_each_kind_numbered(monkeypatch):
    from tinyo.control import hub as hub_module

    keep = 50
    monkeypatch.setattr(hub_module, "HISTORY_MAX", keep)  # a short history: the burst below overflows it
    hub = hub_module.Hub(lambda _why: None)
    hub.start()
    facts: list[ev.BusEvent] = [ev.EngineState(1.0, "running")]
    hub.on_facts(facts)
    assert hub.running.wait(5), "the engine's state fact was read (requests wait for it)"
    for i in range(4 * keep):  # a burst: per file an event, a state change, a start, a finish, now and then a line
        facts.append(ev.EventReceived(1.0, i, f"/in/f{i}", "file"))
        facts.append(ev.DESStateChanged(1.0, f"d{i}", "queued", "never built"))
        facts.append(ev.OpStarted(1.0, i, f"d{i}", "load", "w1", 1, frozenset()))
        if i % 3 == 0:
            facts.append(ev.OpOutput(1.0, i, f"d{i}", "load", "w1", "stdout", f"line {i}"))
        facts.append(ev.OpFinished(1.0, i, f"d{i}", "load", "w1", 0.01, None))
    for start in range(1, len(facts), 90):  # the loop's cycles, a batch of facts each
        hub.on_facts(facts[start:start + 90])
    box = hub_module.Outbox()  # every fact above was published before the client subscribed: all are history
    hub.subscribe(box, history=True)
    history: list[object] = []
    line_ends: list[int] = []  # a history line's seq: the number of its last fact (the history has gaps)
    reader, live = FactReader(), False
    while not live:
        for line in box.take() or []:
            message = decode_reply(line)
            if isinstance(message, Live):
                live = True
                break
            assert isinstance(message, Facts) and message.history
            history.extend(reader.events(message.facts))
            line_ends.append(message.seq)
    hub.finish()
    runs = (ev.OpStarted, ev.OpFinished)
    numbered = list(enumerate(facts, start=1))  # the hub numbers facts from 1 as they come
    expected = sorted(
        [(n, f) for n, f in numbered if isinstance(f, runs)][-keep:]
        + [(n, f) for n, f in numbered if isinstance(f, ev.OpOutput)][-keep:]
        + [(n, f) for n, f in numbered if not isinstance(f, (*runs, ev.OpOutput))][-keep:],
        key=lambda r: r[0])
    assert history == [f for _, f in expected], "the last facts of each kind, in order"
    assert line_ends and line_ends[-1] == expected[-1][0], "each history line is numbered by its last fact"


class HubClient:
    """A real hub with one subscribed outbox, read on a thread: the event ids of the facts that reach it."""

    def __init__(self, hub_module: Any) -> None:
        self.hub = hub_module.Hub(lambda _why: None)
        self.hub.start()
        self.box = hub_module.Outbox()
        self.hub.subscribe(self.box, history=False)
        self.got: list[int] = []
        self._arrived, live = threading.Condition(), threading.Event()
        self.reader = threading.Thread(target=self._read, args=(live,), daemon=True)
        self.reader.start()
        assert live.wait(10)

    def _read(self, live: threading.Event) -> None:
        reader = FactReader()
        while (lines := self.box.take()) is not None:
            for line in lines:
                message = decode_reply(line)
                live.set()  # the first line is the Live marker: the hub has added the client
                if isinstance(message, Facts):
                    with self._arrived:
                        self.got.extend(event.event_id for event in reader.events(message.facts))
                        self._arrived.notify_all()

    def until(self, count: int, timeout: float) -> bool:
        """Whether ``count`` facts arrived within ``timeout`` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.got) >= count, timeout)


def test_a_flood_is_handed_on_at_the_hubs_pace_a_full_inbox_at_once_and_a_fact_after_quiet_first(monkeypatch):
    from tinyo.control import hub as hub_module

    monkeypatch.setattr(hub_module, "HUB_PACE", 60.0)  # while facts keep coming, the next pass waits a minute...
    monkeypatch.setattr(hub_module, "HUB_FULL", 200)  # ...unless this many wait
    monkeypatch.setattr(hub_module, "HUB_FLOOD", 1)  # (a pass of one fact counts as a flood here)
    client = HubClient(hub_module)
    hub, until = client.hub, client.until
    hub.on_facts([ev.EventReceived(1.0, 1, "/in/first", "file")])
    assert until(1, 10), "the first fact after a quiet spell goes out at once, not after a pace"
    hub.on_facts([ev.EventReceived(1.0, 2, "/in/second", "file")])
    assert not until(2, 0.5), "a fact right behind another waits for the hub's next paced pass"
    hub.on_facts([ev.EventReceived(1.0, 3 + i, f"/in/f{i}", "file") for i in range(199)])
    assert until(201, 10), "a full inbox is handed on at once, whatever the pace"
    hub.on_facts([ev.EventReceived(1.0, 300, "/in/last", "file")])
    hub.finish()
    assert until(202, 10) and client.got == [*range(1, 202), 300], \
        "finishing hands on what waits; nothing lost or reordered"
    client.box.close()
    client.reader.join(5)


def test_facts_the_hubs_full_inbox_drops_are_told_after_the_facts_it_kept_before_them(monkeypatch):
    """A client is told of a gap where it is: the facts kept ahead of it first, then "missed" with the whole
    count of what was dropped (over several cycles), then the facts kept after it, numbered on."""
    from tinyo.control import hub as hub_module

    monkeypatch.setattr(hub_module, "HUB_MAX", 100)
    monkeypatch.setattr(hub_module, "HUB_TICK", 0.3)  # the hub gathers while the cycles below come
    hub = hub_module.Hub(lambda _why: None)
    hub.start()
    box = hub_module.Outbox()
    hub.subscribe(box, history=False)
    assert decode_reply(box.take()[0]) == Live()
    cycle = [ev.EventReceived(1.0, i, f"/in/f{i}", "file") for i in range(1, 301)]
    hub.on_facts(cycle[:90])
    hub.on_facts(cycle[90:150])  # ten kept, fifty dropped
    hub.on_facts(cycle[150:170])  # twenty more dropped: the same gap
    got: list[object] = []

    def kept() -> int:
        return sum(len(m.facts) for m in got if isinstance(m, Facts))

    while kept() < 100 or not any(isinstance(m, Missed) for m in got):
        got.extend(decode_reply(line) for line in box.take() or [])
    hub.on_facts(cycle[170:180])  # the inbox is free again
    while kept() < 110:
        got.extend(decode_reply(line) for line in box.take() or [])
    hub.finish()
    told = [("facts", m.seq, [e.event_id for e in FactReader().events(m.facts)]) if isinstance(m, Facts)
            else ("missed", m.count) for m in got]
    assert told == [("facts", 100, list(range(1, 101))), ("missed", 70), ("facts", 110, list(range(171, 181)))]
