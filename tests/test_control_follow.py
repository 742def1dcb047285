"""`tinyo events --follow --json` against a real engine's control channel (a real socket, the real command in
its own process): it writes the engine's JSON lines through as they came, byte for byte what `tinyo run --json`
prints for every kind of fact; whole lines whenever it attaches; and when it fell behind, a "missed" line, then
the facts again."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import write_recipe
from test_control_protocol import HubClient
from test_report import _every_kind_of_fact, _to_json_line
from tinyo import events as ev
from tinyo.control import factwire
from tinyo.control.hub import Outbox
from tinyo.control.factwire import FactReader
from tinyo.control.protocol import PROTOCOL, Error, Facts, Hello, Missed, Welcome, decode, decode_reply, encode
from tinyo.control.server import ControlServer

RECIPE = """
def load(context):
    print('loaded')

@meta_task(root=True)
def on_event(event):
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1, execution=Execution.THREADS)
"""


@pytest.fixture(autouse=True)
def _no_xdg(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # the socket goes beside the state file


class Follower:
    """`tinyo events RECIPE --follow --json` in its own process; what it prints is collected by a thread
    (not read while ``reading`` is clear: it then blocks writing, as under a reader that stops)."""

    def __init__(self, recipe: Path, db: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("XDG_RUNTIME_DIR", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "events", str(recipe), "--db", str(db),
                                      "--follow", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.out = bytearray()
        self.reading = threading.Event()
        self.reading.set()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while self.reading.wait() and (chunk := os.read(self.proc.stdout.fileno(), 1 << 16)):
            self.out += chunk

    def lines(self) -> list[bytes]:
        return bytes(self.out).splitlines(keepends=True)

    def wait(self, predicate, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; printed: {bytes(self.out[-600:])!r}"
            assert self.proc.poll() is None or predicate(), f"the follower ended: {self.proc.stderr.read()!r}"
            time.sleep(0.02)

    def end(self) -> tuple[int, bytes]:
        try:
            _, err = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        self._thread.join(10)
        return self.proc.returncode, err


@pytest.fixture
def served(tmp_path, inbox, harness):
    """An engine in this process serving its control channel; yields (engine, recipe, db, start the server)."""
    db = tmp_path / "s.db"
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox)
    h = harness(recipe)
    servers: list[ControlServer] = []

    def serve(**kw) -> ControlServer:
        servers.append(ControlServer(h.engine, **kw).start())
        return servers[-1]

    with h:
        yield h.engine, recipe, db, serve
        for server in servers:
            server.close()


def _received(i: int, name: str = "") -> ev.EventReceived:
    return ev.EventReceived(float(i), i, f"flood/{i:06d}{name}", "file", 1.0, 1, 0)


def _flood_ids(lines: list[bytes]) -> tuple[list[int], list[int]]:
    """The event ids of the flood's facts in ``lines`` (each line must be a whole JSON object), and the counts
    of the "missed" lines."""
    ids, missed = [], []
    for line in lines:
        assert line.endswith(b"\n")
        fact = json.loads(line)  # a cut or run-together line fails here
        if fact["type"] == "event_received" and fact["name"].startswith("flood/"):
            ids.append(fact["event_id"])
        elif fact["type"] == "missed":
            missed.append(fact["count"])
    return ids, missed


def test_a_json_follower_prints_every_kind_of_fact_byte_for_byte_as_tinyo_run_json(served):
    engine, recipe, db, serve = served
    server = serve()
    follower = Follower(recipe, db)  # it gets them as history or live, whichever comes first
    facts = _every_kind_of_fact()
    expected = [_to_json_line(fact).encode() for fact in facts]
    engine.bus.publish_many(facts)
    follower.wait(lambda: expected[-1] in follower.out, "the facts")
    server.close()
    code, err = follower.end()
    assert code == 0, err
    assert b"the engine stopped" in err
    printed = [line for line in follower.lines() if line in set(expected)]
    assert printed == expected  # each fact once, in order, the same bytes (a Path shown, a \udcff escaped)


def test_a_follower_that_attaches_mid_flood_prints_whole_lines_in_order_to_the_end(served):
    engine, recipe, db, serve = served
    serve()
    total = 30_000
    started = threading.Event()

    def flood() -> None:
        for i in range(0, total, 60):
            engine.bus.publish_many([_received(j, "-" + "x" * (j % 97)) for j in range(i, i + 60)])
            if i >= 6_000:
                started.set()
            time.sleep(0.001)

    publisher = threading.Thread(target=flood, daemon=True)
    publisher.start()
    assert started.wait(30)
    follower = Follower(recipe, db)  # attaches while the facts keep coming
    publisher.join(60)
    follower.wait(lambda: f'"event_id":{total - 1},'.encode() in follower.out, "the flood's last fact")
    engine.bus.publish(ev.EngineNotice(time.time(), "info", "after the flood"))
    follower.wait(lambda: b"after the flood" in follower.out, "the notice after the flood")
    follower.proc.terminate()
    follower.end()
    ids, missed = _flood_ids(follower.lines())
    assert ids[-1] == total - 1 and len(ids) > 1000  # its history (the last 1,000), then live to the end
    assert ids == sorted(set(ids))
    if not missed:  # (a busy machine may make it fall behind: then it says so, tested below)
        assert ids == list(range(ids[0], total))


def test_a_follower_that_fell_behind_says_how_many_it_missed_then_prints_whole_lines_again(served):
    engine, recipe, db, serve = served
    server = serve(outbox_bytes=1 << 20)
    follower = Follower(recipe, db)
    # subscribed once a fact published now is printed (the flood must not start before: what the engine keeps as
    # history for a client subscribing late is bounded, and facts before a subscription are not its missed ones)
    engine.bus.publish_many([ev.EventReceived(0.5, -2, "ready", "manual", 1.0, 0, 0)])
    follower.wait(lambda: b'"name":"ready"' in follower.out, "the follower's subscription")
    follower.reading.clear()  # its reader stops: it blocks printing, stops reading the socket
    total = 40_000
    for i in range(0, total, 200):  # ~12 MB: past the pipe, the socket's buffers and the 1 MB outbox
        engine.bus.publish_many([_received(j, "-" + "y" * 200) for j in range(i, i + 200)])
        time.sleep(0.002)
    deadline = time.monotonic() + 30
    while not [c for c in server.clients() if c.name == "tinyo events" and c.missed > 0]:
        assert time.monotonic() < deadline, "the engine never counted a missed fact"
        time.sleep(0.05)
    follower.reading.set()  # it reads again
    follower.wait(lambda: b'"type":"missed"' in follower.out, "the missed line")
    engine.bus.publish_many([_received(total + k) for k in range(3)])
    follower.wait(lambda: f'"event_id":{total + 2},'.encode() in follower.out, "the facts after the gap")
    server.close()
    code, err = follower.end()
    assert code == 0, err
    ids, missed = _flood_ids(follower.lines())
    assert ids == sorted(set(ids)) and ids[-3:] == [total, total + 1, total + 2]
    assert sum(missed) >= total - (len(ids) - 3) > 0  # every fact it did not print is counted


def test_a_long_batch_goes_in_frames_a_printer_makes_the_json_logs_bytes_of():
    long = [ev.GeneratorError(float(i), "g", f"e{i}", "boom \u00e9", "tb " * 20_000) for i in range(40)]  # ~60 KB each
    lines = factwire.facts_frames(40, factwire.packed_rows(long))
    assert len(lines) > 1 and sum(count for _, count in lines) == 40
    messages = [decode_reply(line) for line, _ in lines]
    assert all(isinstance(m, Facts) for m in messages) and [len(m.facts) for m in messages] == [c for _, c in lines]
    assert b"".join(FactReader().json_lines(m.facts) for m in messages) == "".join(map(_to_json_line, long)).encode()
    assert messages[-1].seq == 40


def test_a_subscription_in_a_form_the_engine_does_not_know_is_refused_by_name(served):
    _engine, _recipe, db, serve = served
    server = serve()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(20)
        raw.connect(str(server.path))
        raw.sendall(encode(Hello(PROTOCOL, "raw")) + b'{"type":"subscribe","id":1,"form":"xml"}\n')
        reader = raw.makefile("rb")
        assert isinstance(decode(reader.readline().rstrip()), Welcome)
        refusal = Error("subscribe: no such form of facts 'xml' (known: rows)", 1)
        assert decode(reader.readline().rstrip()) == refusal


def test_a_writer_waiting_on_an_empty_outbox_is_told_at_once_of_facts_that_did_not_fit():
    box = Outbox(limit=100)
    taken: list[list[bytes] | None] = []
    writer = threading.Thread(target=lambda: taken.append(box.take()), daemon=True)
    writer.start()
    time.sleep(0.05)  # the writer waits for something to send
    assert not box.offer(b"z" * 199 + b"\n", 5)  # a line past the limit: never queued, its facts missed
    writer.join(10)
    assert taken and [decode(line.rstrip()) for line in taken[0]] == [Missed(5)]  # said now, not at the next fact
    box.close()


def test_a_line_offered_to_an_idle_client_is_sent_at_once_and_what_its_socket_cannot_take_waits_in_order():
    mine, theirs = socket.socketpair()
    with mine, theirs:
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        box = Outbox(limit=1 << 20, sock=mine)
        assert box.offer(b"first\n")
        theirs.settimeout(5)
        assert theirs.recv(100) == b"first\n"  # no writer ran: the hub's thread sent it
        lines = [b"%06d" % i + b"." * 993 + b"\n" for i in range(200)]  # 200 KB: far past what the socket holds
        for line in lines:
            assert box.offer(line)
        assert 0 < box.load()[0] < 200_000  # the socket took a part, the rest waits for the writer
        writer = threading.Thread(target=lambda: [mine.sendall(b"".join(part)) for part in iter(box.take, None)],
                                  daemon=True)
        writer.start()
        got = bytearray()
        while len(got) < 200_000:
            got += theirs.recv(1 << 16)
        assert bytes(got) == b"".join(lines)  # whole and in order, whoever sent each part
        box.close()
        writer.join(5)


def test_a_pass_of_frames_reaches_an_idle_client_in_one_send_with_what_did_not_fit_counted_in_its_place():
    mine, theirs = socket.socketpair()
    with mine, theirs:
        box = Outbox(limit=100, sock=mine)
        small, large, last = b"a" * 39 + b"\n", b"b" * 119 + b"\n", b"c" * 9 + b"\n"
        assert box.offer_all([(small, 2), (large, 3), (last, 1)]) == 2  # the large frame's 3 facts missed
        theirs.settimeout(5)
        # no writer ran: the hub's thread sent it all at once, the gap told where it was
        assert theirs.recv(1000) == small + encode(Missed(3)) + last
        assert box.load() == (0, 3)
        box.close()


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if int(fh.read().rsplit(b")", 1)[1].split()[1]) == pid:
                    found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_json_followers_cost_the_engine_no_process_of_its_own(tmp_path, inbox):
    """The engine encodes each fact once, as rows, for every client; each follower makes its JSON lines in its
    own process: attaching two starts nothing in the engine (nothing to leave behind when it is killed)."""
    db = tmp_path / "s.db"
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox)
    env = {**os.environ}
    env.pop("XDG_RUNTIME_DIR", None)
    started = subprocess.run([sys.executable, "-m", "tinyo.cli", "start", str(recipe)], capture_output=True, text=True,
                             env=env, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    followers: list[Follower] = []
    try:
        before = _children(pid)
        followers = [Follower(recipe, db), Follower(recipe, db)]
        for follower in followers:
            follower.wait(lambda f=follower: b'"type":"engine_state"' in f.out, "the engine's history")
        (inbox / "a.txt").write_text("a")
        for follower in followers:
            follower.wait(lambda f=follower: b'"type":"event_received"' in f.out, "a live fact")
        assert _children(pid) == before
        os.kill(pid, 9)
        for follower in followers:
            assert follower.end()[0] == 0
    finally:
        for follower in followers:
            if follower.proc.poll() is None:
                follower.proc.kill()
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_a_commands_few_facts_go_out_at_once_only_a_flood_paces_the_hub(monkeypatch):
    from tinyo.control import hub as hub_module

    monkeypatch.setattr(hub_module, "HUB_PACE", 60.0)  # a paced pass would wait a minute
    client = HubClient(hub_module)
    hub, until = client.hub, client.until
    for i in range(3):  # one command after another, each a few facts: no pace between them
        hub.on_facts([_received(i)])
        assert until(i + 1, 10), "a command's facts waited for a paced pass"
    hub.on_facts([_received(3 + i) for i in range(hub_module.HUB_FLOOD)])  # a flood's pass ...
    assert until(3 + hub_module.HUB_FLOOD, 10)
    hub.on_facts([_received(1000)])
    assert not until(4 + hub_module.HUB_FLOOD, 0.5), "... paces the next"
    hub.finish()
    assert until(4 + hub_module.HUB_FLOOD, 10)
    client.box.close()
