"""The engine as a service: `tinyo start|stop|events` and the control socket, with real processes and sockets."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import drop, write_recipe
from tinyo.control.client import ControlClient, NotRunning, running_engine
from tinyo.control.paths import socket_path
from tinyo.control.factwire import FactReader
from tinyo.control.protocol import MAX_LINE, PROTOCOL, Error, Fact, Facts, Incoming, Live, Missed, Result, decode

RECIPE = """
def load(context):
    print('loaded', sorted(context['deps'])[0].rsplit('/', 1)[-1])

@meta_task(root=True)
def on_event(event):
    if event.endswith('.csv') or event.startswith('go'):
        return ('k', [DES(deps=frozenset([event]), targs=frozenset(['out/' + event.rsplit('/', 1)[-1]]),
                          ops=[(load, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1, timers=[{'name': 'tick', 'initial': datetime(2024, 1, 1), 'interval': timedelta(hours=1)}])
"""


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out.pop("XDG_RUNTIME_DIR", None)  # the socket goes beside the state file, inside the test's folder
    return out


def tinyo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.fixture(autouse=True)
def _no_xdg(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


@pytest.fixture
def recipe(tmp_path, inbox):
    return write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)


@pytest.fixture
def service(recipe, tmp_path):
    """`tinyo start` on the recipe; yields the engine's pid; stopped (or killed) afterwards."""
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    yield pid
    if alive(pid):
        tinyo("stop", str(recipe), "--now")
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def facts_until(client: ControlClient, stream, match, timeout: float = 20.0):
    """Read a subscription until a fact matching ``match`` arrives; returns it."""
    client._sock.settimeout(timeout)
    for message in stream:
        if isinstance(message, Fact) and match(message.fact):
            return message.fact
    raise AssertionError("the stream ended before the fact came")


# ------------------------------------------------------------------------------------------ start / stop
def test_start_serves_a_private_socket_events_and_stop_ends_every_process(recipe, tmp_path):
    db = tmp_path / "s.db"
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    assert f"log: {db}.log" in result.stdout and (tmp_path / "s.db.log").exists()
    try:
        again = tinyo("start", str(recipe))
        assert again.returncode == 0 and f"already running on {db} (pid {pid})" in again.stdout
        sock = socket_path(db)
        assert sock.parent == Path(f"{db}.ctl")
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert os.getsid(pid) == pid  # its own session: a logout's hang-up does not reach it
        os.kill(pid, signal.SIGHUP)
        assert tinyo("inject", str(recipe), "go1").returncode == 0
        with running_engine(db) as client:
            assert client.pid == pid
            workers = [w["pid"] for w in client.query("workers")]
            wait_for(lambda: any("loaded go1" in str(f.fact) for f in _history(client)), what="the op's output")
        events = tinyo("events", str(recipe), "--json")
        kinds = [json.loads(line)["type"] for line in events.stdout.splitlines()]
        assert events.returncode == 0 and "event_received" in kinds and "op_finished" in kinds
        text = tinyo("events", str(recipe))
        assert "load[w1] | loaded go1" in text.stdout
        stopped = tinyo("stop", str(recipe))
        assert stopped.returncode == 0 and f"(pid {pid}) stopped" in stopped.stdout
        assert not alive(pid) and not any(alive(w) for w in workers if w)
        assert not sock.exists()
        assert "nothing to stop" in tinyo("stop", str(recipe)).stdout
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def _history(client: ControlClient) -> list[Fact]:
    # a fresh connection per look: the subscription's history is what the engine remembers now
    with ControlClient.connect(client.welcome.db) as look:
        out = []
        for message in look.subscribe(history=True):
            if isinstance(message, Live):
                return out
            out.append(message)
    return out


def test_start_that_fails_says_why_in_one_line_and_exits_2(tmp_path, inbox):
    db = tmp_path / "s.db"
    db.write_text("this is not a state file, and not SQLite either" * 100)
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox)
    result = tinyo("start", str(recipe))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "the engine did not start" in result.stderr and "not a SQLite database" in result.stderr


def test_start_on_a_state_file_in_a_folder_not_made_yet_makes_it_and_starts(tmp_path, inbox):
    db = tmp_path / "new" / "deeper" / "s.db"  # as the demo's state folder before its first run
    recipe = write_recipe(tmp_path, RECIPE, db=db, inbox=inbox)
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    try:
        assert (tmp_path / "new" / "deeper" / "s.db.log").exists()
        assert tinyo("stop", str(recipe)).returncode == 0
        wait_for(lambda: not alive(pid), what="the engine's exit")
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_tinyo_run_serves_the_channel_and_stops_through_it(recipe, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    try:
        client = wait_for(lambda: _try_connect(tmp_path / "s.db"), what="the control socket")
        assert client.pid == proc.pid
        client.close()
        stopped = tinyo("stop", str(recipe), "--now")
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _try_connect(db: Path) -> ControlClient | None:
    try:
        return ControlClient.connect(db)
    except NotRunning:
        return None


def test_a_stale_socket_after_sigkill_is_replaced(recipe, tmp_path, service):
    db = tmp_path / "s.db"
    sock = socket_path(db)
    os.killpg(service, signal.SIGKILL)  # the engine and its workers, without a chance to clean up
    wait_for(lambda: not alive(service), what="the engine to die")
    assert sock.exists()  # left behind
    with pytest.raises(NotRunning):
        ControlClient.connect(db)
    assert running_engine(db) is None
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    try:
        assert pid != service
        with ControlClient.connect(db) as client:  # the new engine answers on the same path
            assert client.pid == pid
    finally:
        tinyo("stop", str(recipe), "--now")
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------ clients
def test_two_clients_at_once_see_the_same_live_facts(recipe, tmp_path, service):
    db = tmp_path / "s.db"
    with ControlClient.connect(db) as a, ControlClient.connect(db) as b:
        streams = [a.subscribe(history=False), b.subscribe(history=False)]
        for stream in streams:
            assert isinstance(next(stream), Live)
        a.command("inject", event="go-both")  # commands share the connection with the stream
        for client, stream in zip((a, b), streams):
            fact = facts_until(client, stream, lambda f: getattr(f, "kind", "") == "event_received")
            assert fact.name == "go-both" and fact.source == "manual"


def test_inject_through_the_channel_reaches_the_bus_without_the_requests_table(recipe, tmp_path, service):
    db = tmp_path / "s.db"
    with ControlClient.connect(db) as client:
        stream = client.subscribe(history=False)
        assert isinstance(next(stream), Live)
        result = tinyo("inject", str(recipe), "go-now")
        assert result.returncode == 0 and "it took the request" in result.stdout
        fact = facts_until(client, stream, lambda f: getattr(f, "kind", "") == "event_received")
        assert fact.name == "go-now"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 0  # not the 1 s poll


def test_commands_the_engine_refuses_exit_2_with_its_reason(recipe, service):
    result = tinyo("fire", str(recipe), "nope")
    assert result.returncode == 2 and "no timer named 'nope'" in result.stderr
    result = tinyo("rerun", str(recipe), "no/such/thing")
    assert result.returncode == 2 and "no DES or document named 'no/such/thing'" in result.stderr


def test_status_and_why_ask_the_running_engine(recipe, service):
    assert tinyo("inject", str(recipe), "go-why").returncode == 0
    status = tinyo("status", str(recipe), "--json")
    info = json.loads(status.stdout)
    assert info["engine"]["pid"] == service and info["engine"]["state"] in ("running", "paused")
    assert f"(pid {service})" in tinyo("status", str(recipe)).stdout
    why = wait_for(lambda: (w := tinyo("why", str(recipe), "out/go-why")).returncode == 0 and "ok" in w.stdout and w,
                   what="why to answer")
    assert "produced by DES" in why.stdout


# ------------------------------------------------------------------------------------------ hostile clients
HELLO = b'{"type":"hello","protocol":%d}\n' % PROTOCOL


def raw(db: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(socket_path(db)))
    return sock


def read_message(sock: socket.socket):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return decode(data.splitlines()[0])


def closed(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True


def test_fuzzed_clients_are_answered_or_dropped_and_the_engine_goes_on(recipe, tmp_path, service):
    db = tmp_path / "s.db"
    rng = random.Random(15)
    # random bytes before a hello: an error, then the connection ends
    with raw(db) as sock:
        sock.sendall(bytes(rng.randrange(256) for _ in range(4000)).replace(b"\n", b"") + b"\n")
        assert isinstance(read_message(sock), Error) and closed(sock)
    # an unknown protocol version
    with raw(db) as sock:
        sock.sendall(b'{"type":"hello","protocol":999}\n')
        reply = read_message(sock)
        assert isinstance(reply, Error) and "protocol 999" in reply.message and closed(sock)
    # a request before the hello
    with raw(db) as sock:
        sock.sendall(b'{"type":"command","id":1,"name":"stop","args":{}}\n')
        assert "expected hello" in read_message(sock).message and closed(sock)
    # a 10 MB line: refused once it passes the cap, without the engine reading it all
    with raw(db) as sock:
        sock.sendall(HELLO)
        assert read_message(sock).__class__.__name__ == "Welcome"
        try:
            sock.sendall(b"x" * (10 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_message(sock)
        assert isinstance(reply, Error) and str(MAX_LINE) in reply.message
    # after the hello: garbage lines get errors and the connection stays usable
    with raw(db) as sock:
        sock.sendall(HELLO)
        read_message(sock)
        for line in (b"[1,2]", b"{not json", b'{"type":"nope"}', b'{"type":"query","id":2,"name":"stats","args":{"x":1}}',
                     b'{"type":"command","id":3,"name":"cancel","args":{"run_id":"1"}}', b"\xff\xfe",
                     b"[" * (MAX_LINE // 2)):  # nested past what the JSON parser takes
            sock.sendall(line + b"\n")
            assert isinstance(read_message(sock), Error)
        sock.sendall(b'{"type":"query","id":4,"name":"stats","args":{}}\n')
        assert read_message(sock).value["state"] in ("running", "paused")
    # truncated messages, then the client disconnects mid-message
    for cut in (5, 17, 30):
        with raw(db) as sock:
            sock.sendall((HELLO + b'{"type":"command","id":1,"name":"inject","args":{"ev')[:len(HELLO) - 1 + cut])
    # the engine goes on: a real client still gets work done
    assert tinyo("inject", str(recipe), "go-after-fuzz").returncode == 0
    with ControlClient.connect(db) as client:
        wait_for(lambda: any(getattr(f.fact, "line", "") == "loaded go-after-fuzz" for f in _history(client)),
                 what="the op after the fuzzing")
        assert client.pid == service


def test_another_user_is_refused(recipe, tmp_path_factory):
    if not Path("/usr/bin/setpriv").exists() or os.getuid() != 0:
        pytest.skip("needs setpriv and root to connect as another user")
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tinyo-uid-"))  # in /tmp, which every user may enter
    folder.chmod(0o755)
    db = folder / "s.db"
    started = tinyo("start", str(recipe), "--db", str(db))
    assert started.returncode == 0, started.stderr
    try:
        _connect_as_another_user(db)
    finally:
        tinyo("stop", str(recipe), "--db", str(db), "--now")


def _connect_as_another_user(db: Path) -> None:
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n"
             "    s.connect(sys.argv[1])\n"
             "except OSError as exc:\n"
             "    print('connect failed:', exc.strerror); sys.exit(0)\n"
             "print(s.recv(4096).decode())\n")
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # the 0700 folder stops another user at the door
    plain = subprocess.run([*user, "/usr/bin/python3", "-c", probe, str(socket_path(db))], capture_output=True, text=True,
                           timeout=20)
    assert "connect failed: Permission denied" in plain.stdout, plain.stderr
    # a process of another user that gets past the file permissions is refused by its peer uid
    capable = subprocess.run([*user, "--inh-caps=+dac_override", "--ambient-caps=+dac_override", "/usr/bin/python3",
                              "-c", probe, str(socket_path(db))], capture_output=True, text=True, timeout=20)
    if "Operation not permitted" in capable.stderr:
        pytest.skip(f"ambient capabilities are not available here: {capable.stderr.strip()}")
    assert "refused: uid 65534 is not the engine's user" in capable.stdout, capable.stdout + capable.stderr
    with ControlClient.connect(db) as client:  # the engine's own user still gets in
        assert client.query("stats")["state"] in ("running", "paused")


# ------------------------------------------------------------------------------------------ backpressure
def test_a_client_that_stops_reading_misses_facts_while_the_engine_memory_stays_flat(recipe, tmp_path, inbox,
                                                                                     service):
    db = tmp_path / "s.db"
    stalled = raw(db)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b'{"type":"hello","protocol":%d,"client":"stalled"}\n{"type":"subscribe","id":1,"history":false}\n'
                    % PROTOCOL)
    watcher = ControlClient.connect(db)

    def flood(prefix: str, n: int) -> None:
        long = "x" * 230  # long names: each file's facts are ~1 KB, so a few thousand files overflow a client
        for i in range(n):
            drop(inbox, f"{prefix}{i:05d}-{long}.dat")
        wait_for(lambda: watcher.query("stats")["events_total"] >= n_total[0] + n, timeout=60,
                 what=f"the engine to take {n} files")
        n_total[0] += n

    n_total = [0]
    # warm-up: the engine's bounded caches fill (8,192 group keys, 4,096 file states: ~10 MB with these long
    # names), and the allocator and the stalled client's outbox
    flood("a", 10000)
    warm = rss_kb(service)
    flood("b", 14000)  # more, with nobody reading the stalled client's facts
    grown_mb = (rss_kb(service) - warm) / 1024
    (stalled_view,) = [c for c in watcher.query("clients") if c["name"] == "stalled"]
    assert stalled_view["buffered_bytes"] <= 4 << 20  # what waits for it stays within its 4 MB buffer ...
    assert stalled_view["missed"] > 0  # ... the rest is counted, not kept
    # the process as a whole stays flat too (loosely: the engine's own caches move by a few MB under load,
    # and the ~20 MB of facts flood b made for this client are not in it)
    assert grown_mb < 13, f"the engine grew {grown_mb:.1f} MB during the flood"
    # the stalled client resumes reading: what fitted, then how much it missed, then live facts again
    stalled.settimeout(20)
    incoming = Incoming(1 << 24)
    missed = 0
    injected = False
    facts = FactReader()
    seen = False
    while not seen:
        chunk = stalled.recv(1 << 16)
        assert chunk, "the engine dropped the slow client instead of telling it what it missed"
        incoming.feed(chunk)
        for message in incoming.messages():
            if isinstance(message, Result):
                facts = FactReader(message.value["facts"], message.value["texts"])  # how the facts frames read
            elif isinstance(message, Missed):
                missed += message.count
                if not injected:  # it has read what waited for it: a live fact now has room (one sent before it
                    watcher.command("inject", event="after-the-flood")  # had none, and was missed too)
                    injected = True
            elif isinstance(message, Facts) and any(getattr(f, "name", "") == "after-the-flood"
                                                    for f in facts.events(message.facts)):
                seen = True
                break
    assert missed >= stalled_view["missed"] > 0  # told all of it, before the live facts went on
    stalled.close()
    watcher.close()


def test_undecodable_file_names_pass_through_the_channel(recipe, tmp_path, inbox, service):
    """A file whose name is not UTF-8 dropped into a service's folder: the engine, the channel's facts and
    `tinyo events` (JSON and text) carry it; JSON as \\udcNN escapes, text as \\xNN."""
    name = bytes(inbox) + b"/bad\xff\xfe.csv"
    with open(name, "wb") as fh:
        fh.write(b"x")
    with running_engine(tmp_path / "s.db") as client:
        wait_for(lambda: any("loaded bad" in str(f.fact) for f in _history(client)), what="the op's output")
    events = tinyo("events", str(recipe), "--json")
    assert events.returncode == 0, events.stderr
    received = [json.loads(line) for line in events.stdout.splitlines()]
    assert [os.fsencode(e["name"]) for e in received if e["type"] == "event_received"] == [name]
    text = tinyo("events", str(recipe))
    assert text.returncode == 0 and "bad\\xff\\xfe.csv" in text.stdout, text.stdout + text.stderr


def test_events_follow_ends_by_itself_when_the_engine_stops(recipe, tmp_path, service):
    follow = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "events", str(recipe), "--follow"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        with ControlClient.connect(tmp_path / "s.db") as look:  # connected before the stop (a busy machine starts it late)
            wait_for(lambda: any(c["name"] == "tinyo events" for c in look.query("clients")) or follow.poll() is not None,
                     what="the follower to connect")
        assert tinyo("inject", str(recipe), "go-followed").returncode == 0
        assert tinyo("stop", str(recipe)).returncode == 0
        out, err = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert "loaded go-followed" in out and "engine stopped" in out
    assert "tinyo: the engine stopped" in err


def test_events_json_prints_every_fact_as_tinyo_run_json_does(recipe, tmp_path, inbox):
    """A follower passes the engine's JSON through: line for line what the engine's own `--json` prints."""
    run = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env())
    follow = None
    try:
        wait_for(lambda: socket_path(tmp_path / "s.db").exists(), what="the control socket")
        follow = subprocess.Popen([sys.executable, "-m", "tinyo.cli", "events", str(recipe), "--follow", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        with open(bytes(inbox) + b"/bad\xff.csv", "wb") as fh:
            fh.write(b"x")
        assert tinyo("inject", str(recipe), 'go "quoted", \u00e9\\n').returncode == 0
        assert tinyo("fire", str(recipe), "tick").returncode == 0
        with ControlClient.connect(tmp_path / "s.db") as client:
            wait_for(lambda: sum("loaded" in str(f.fact) for f in _history(client)) == 2, what="both ops' output")
        assert tinyo("stop", str(recipe)).returncode == 0
        followed, _ = follow.communicate(timeout=30)
        printed, _ = run.communicate(timeout=30)
    finally:
        for proc in (run, follow):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert followed.splitlines() == printed.splitlines() and len(printed.splitlines()) > 10


def test_start_refuses_to_leave_an_engine_without_its_control_channel(recipe, tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to make a folder owned by another user")
    runtime = tmp_path / "run"
    (runtime / "tinyo").mkdir(parents=True, mode=0o700)
    os.chown(runtime / "tinyo", 65534, 65534)  # someone else's folder where ours should be
    result = subprocess.run([sys.executable, "-m", "tinyo.cli", "start", str(recipe)], capture_output=True,
                            text=True, timeout=60, env={**env(), "XDG_RUNTIME_DIR": str(runtime)})
    assert result.returncode == 2
    assert "without its control channel" in result.stderr and "belongs to uid 65534" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    lock = os.open(tmp_path / "s.db.lock", os.O_RDWR)
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the engine it started is gone: the lock is free
    finally:
        os.close(lock)
