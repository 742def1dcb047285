"""Provides the control server inside the engine process: the socket, its connections, their requests.

One accept thread, and per client a reader thread (hello, then requests one at a time) and a writer
thread (drains the client's outbox). None of them touches engine state: commands are the engine's
thread-safe methods, queries are the typed queries ``Engine.ask`` answers (on the engine thread). A connection from
another user, a garbled or oversized line, or an unknown protocol version ends that connection; the
engine goes on.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TinyoError
from ..queries import ClientInfo, by_name
from . import factwire, index
from .hub import OUTBOX_BYTES, Hub, Outbox
from .paths import ControlError, private_dir, socket_path
from .protocol import (
    FORMS, MAX_LINE, PROTOCOL, Bye, Command, Error, Hello, ProtocolError, Query, Result, Subscribe, Welcome, check_args,
    decode, encode,
)

if TYPE_CHECKING:
    from ..engine import Engine

MAX_CLIENTS = 32
HELLO_TIMEOUT = 10.0
"""Seconds a new connection has to say hello."""
START_TIMEOUT = 300.0
"""Seconds a hello waits for the engine to finish starting (loading a large state file)."""
BAD_LINES_MAX = 20
"""Malformed requests tolerated on one connection before it is closed."""
_CRED = struct.Struct("3i")


class LineTooLong(ControlError):
    pass


class ControlServer:
    """Serves one engine on the control socket of its state file."""

    def __init__(self, engine: Engine, path: Path | None = None, grace: float = 10.0,
                 outbox_bytes: int = OUTBOX_BYTES) -> None:
        self.engine = engine
        self.grace = grace
        self.outbox_bytes = outbox_bytes
        """What may wait to be sent to one client; past it the facts are counted as missed for it."""
        self.path = path or socket_path(engine.store.path)
        self.hub = Hub(self._engine_stopped)
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._closed = threading.Event()
        self._unsubscribe: Any = None
        self._index_entry: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ControlServer:
        """Bind the socket (replacing a stale one) and start serving. The caller holds the state file's
        lock (the engine does), so a socket already at the path belongs to an engine that is gone."""
        private_dir(self.path.parent)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise ControlError(f"{self.path}: something that is not a socket is in the way; remove it")
            os.unlink(self.path)  # stale: left by an engine that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, 0o600)  # the folder is 0700, so nobody else could reach it before this
            listener.listen(16)
        except OSError as exc:
            listener.close()
            raise ControlError(f"{self.path}: cannot listen here ({exc.strerror})") from exc
        self._inode = os.stat(self.path).st_ino
        self._listener = listener
        self._record()
        if self.engine.state in ("running", "paused", "stopping"):
            self.hub.running.set()
        self.engine.loop.queries.channel = self.clients  # before any client could ask
        self._unsubscribe = self.engine.bus.subscribe_batches(self.hub.on_facts)
        self.hub.start()
        threading.Thread(target=self._accept, name="tinyo-control-accept", daemon=True).start()
        return self

    def close(self, reason: str = "the engine stopped") -> None:
        """Stop serving: every client is told why, the socket file is removed (if it is still ours)."""
        with self._lock:
            closing, self._closing = self._closing, True
            clients = list(self._clients)
        if closing:
            # Whoever came first finishes: the socket is gone when this returns. Not on the hub's own
            # thread (it closes when the engine's "stopped" fact passes): the first closer is joining it.
            if not self.hub.on_own_thread():
                self._closed.wait(5.0)
            return
        if self._index_entry is not None:
            index.forget(self._index_entry, os.getpid())
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.engine.loop.queries.channel = list
        self.hub.running.set()  # hellos waiting for the start are answered (with a bye)
        self.hub.finish()  # the last facts (the engine's "stopped") reach the clients before their bye
        listener = self._listener
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
            except OSError:
                pass
            listener.close()
            try:
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
        self._closed.set()
        for client in clients:
            client.bye(reason)
        # A reading client gets its bye before this process may exit (the writers are daemon threads);
        # one that stopped reading is not waited for past the bound.
        deadline = time.monotonic() + 1.0
        for client in clients:
            client.writer.join(max(0.0, deadline - time.monotonic()))
        if clients:  # a client that stopped reading is not waited for: its connection ends shortly
            timer = threading.Timer(2.0, lambda: [c.hang_up() for c in clients])
            timer.daemon = True
            timer.start()

    def _record(self) -> None:
        """Put this engine in the recipe index, so a CLI command finds it without loading the recipe."""
        engine = self.engine
        try:
            self._index_entry = index.record(str(engine.recipe.path), engine.recipe.config.sql_conn,
                                             engine.store.path, os.getpid())
        except (ControlError, OSError):
            pass  # commands then find the engine the long way, through the recipe's sql_conn

    def _engine_stopped(self, reason: str) -> None:
        self.close(reason)

    @property
    def closing(self) -> bool:
        return self._closing

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._closing:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed
            refusal = self._refusal(conn)
            if refusal is not None:
                _say_and_close(conn, Error(refusal))
                continue
            client = _Client(self, conn)
            with self._lock:
                if self._closing:
                    _say_and_close(conn, Bye("the engine is stopping"))
                    continue
                self._clients.add(client)
            client.start()

    def _refusal(self, conn: socket.socket) -> str | None:
        try:
            _pid, uid, _gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        except OSError as exc:
            return f"refused: cannot tell who is connecting ({exc.strerror})"
        if uid != os.getuid():
            return f"refused: uid {uid} is not the engine's user (uid {os.getuid()})"
        with self._lock:
            if len(self._clients) >= MAX_CLIENTS:
                return f"refused: {MAX_CLIENTS} clients are connected already"
        return None

    def _gone(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)
        self.hub.unsubscribe(client.outbox)

    # ------------------------------------------------------------------ requests (client reader threads)
    def welcome(self) -> Welcome:
        engine = self.engine
        return Welcome(PROTOCOL, os.getpid(), engine.store.path, str(engine.recipe.path), engine.state)

    def command(self, name: str, args: dict[str, Any]) -> None:
        """Do command ``name`` (its arguments checked by ``protocol.check_args``)."""
        handler = self.HANDLERS.get(name)
        if handler is None:
            raise ProtocolError(f"command {name!r} has no handler in this engine")
        handler(self, **args)

    def _inject(self, event: str) -> None:
        self.engine.inject(event)

    def _fire(self, timer: str) -> None:
        self.engine.fire_timer(timer)

    def _rerun(self, target: str, downstream: bool) -> None:
        engine = self.engine
        if engine.des_infos([target]):
            engine.rerun(target, downstream)
        elif engine.doc_infos([target]):
            engine.rerun_document(target, downstream)
        else:
            raise TinyoError(f"rerun: no DES or document named {target!r} in {engine.store.path}")

    def _cancel(self, run_id: int) -> None:
        problem = cancel_problem(run_id, self.engine.run_status(run_id), self.engine.store.path)
        if problem is not None:
            raise TinyoError(problem)
        self.engine.cancel(run_id)

    def _stop(self, now: bool) -> None:
        grace = 0.0 if now else self.grace
        threading.Thread(target=self.engine.stop, args=(grace,), name="tinyo-control-stop", daemon=True).start()

    HANDLERS: dict[str, Callable[..., None]] = {
        "inject": _inject, "fire": _fire, "rerun": _rerun, "cancel": _cancel, "stop": _stop,
        "pause": lambda self: self.engine.pause(), "resume": lambda self: self.engine.resume(),
        "rescan": lambda self: self.engine.rescan(),
    }
    """Each wire command (``protocol.commands()``, from the typed requests) and what the engine does for it."""

    def query(self, name: str, args: dict[str, Any]) -> Any:
        """The answer to query ``name`` (its arguments checked by ``protocol.check_args``): the same typed
        query an in-process caller asks, answered by the engine the same way."""
        return self.engine.ask(by_name()[name](**args))

    def clients(self) -> list[ClientInfo]:
        """The connected clients (the ``clients`` query's answer, on the asking thread)."""
        with self._lock:
            clients = list(self._clients)
        return [client.describe() for client in clients]


class _Client:
    """One connection: its reader and writer threads and its outbox."""

    def __init__(self, server: ControlServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.outbox = Outbox(server.outbox_bytes, conn)
        self._buffer = bytearray()
        self._bad = 0
        self._lock = threading.Lock()
        self._ended = 0
        self.name = ""
        self.pid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))[0]

    def describe(self) -> ClientInfo:
        buffered, missed = self.outbox.load()
        return ClientInfo(self.name, self.pid, buffered, missed)

    def start(self) -> None:
        threading.Thread(target=self._read, name="tinyo-control-read", daemon=True).start()
        self.writer = threading.Thread(target=self._write, name="tinyo-control-write", daemon=True)
        self.writer.start()

    def bye(self, reason: str) -> None:
        self.outbox.force(encode(Bye(reason)))
        self.outbox.close()

    def _send(self, message: Any) -> bool:
        return self.outbox.put(encode(message))

    def _write(self) -> None:
        try:
            while True:
                lines = self.outbox.take()
                if lines is None:
                    break
                self.conn.sendall(b"".join(lines))
        except OSError:
            pass  # the client went away
        finally:
            self.outbox.close()
            self.hang_up()  # ends the reader's recv too
            self._done()

    def _read(self) -> None:
        try:
            self._converse()
        except (OSError, LineTooLong):
            pass
        finally:
            self.outbox.close()  # the writer sends what is queued (an error, a bye), then ends
            self.server._gone(self)
            self._done()

    def _done(self) -> None:
        """Each thread calls this once at its end; the second one closes the socket."""
        with self._lock:
            self._ended += 1
            last = self._ended == 2
        if last:
            self.conn.close()

    def hang_up(self) -> None:
        """End a connection whose client stopped reading (its writer may wait in a send)."""
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _converse(self) -> None:
        server = self.server
        self.conn.settimeout(HELLO_TIMEOUT)
        line = self._line()
        if line is None:
            return
        try:
            hello = decode(line)
        except ProtocolError as exc:
            self._send(Error(f"expected hello: {exc}"))
            return
        if not isinstance(hello, Hello):
            self._send(Error(f"expected hello first, got {type(hello).__name__.lower()}"))
            return
        if hello.protocol != PROTOCOL:
            self._send(Error(f"protocol {hello.protocol} is not spoken here (this engine speaks {PROTOCOL}); "
                             "use the tinyo that runs the engine"))
            return
        self.name = hello.client[:100]
        self.conn.settimeout(None)
        server.hub.running.wait(START_TIMEOUT)
        if server.closing:
            return
        self._send(server.welcome())
        while not server.closing:
            line = self._line()
            if line is None:
                return
            message: Any = None
            try:
                message = decode(line)
                self._handle(message)
            except ProtocolError as exc:
                self._bad += 1
                self._send(Error(str(exc), getattr(message, "id", None)))
                if self._bad >= BAD_LINES_MAX:
                    self._send(Error(f"{BAD_LINES_MAX} malformed requests: connection closed"))
                    return

    def _handle(self, message: Any) -> None:
        server = self.server
        if isinstance(message, (Command, Query)):
            kind = "command" if isinstance(message, Command) else "query"
            args = check_args(kind, message.name, message.args)
            try:
                value = server.command(message.name, args) if kind == "command" else server.query(message.name, args)
            except TinyoError as exc:
                self._send(Error(str(exc), message.id))
            except Exception as exc:  # a query that failed on the engine thread: the client is told, the engine goes on
                self._send(Error(f"{kind} {message.name} failed: {type(exc).__name__}: {exc}", message.id))
            else:
                self._send(Result(message.id, value))
        elif isinstance(message, Subscribe):
            if message.form not in FORMS:
                raise ProtocolError(f"subscribe: no such form of facts {message.form!r} (known: {', '.join(FORMS)})")
            # how to read the facts frames that follow
            self._send(Result(message.id, {"facts": factwire.SCHEMA, "texts": factwire.TEXTS}))
            server.hub.subscribe(self.outbox, message.history)
        else:
            raise ProtocolError(f"a client may not send {type(message).__name__.lower()} here")

    def _line(self) -> bytes | None:
        """The next line (without its newline); None at the end of the stream (a half line is dropped)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                if len(line) > MAX_LINE:
                    self._too_long()
                return line
            if len(self._buffer) > MAX_LINE:
                self._too_long()
            chunk = self.conn.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk

    def _too_long(self) -> None:
        self._buffer.clear()
        self._send(Error(f"a line longer than {MAX_LINE} bytes: connection closed"))
        raise LineTooLong("line too long")


def cancel_problem(run_id: int, status: str | None, db: str) -> str | None:
    """Why run ``run_id`` (its status, None: unknown) cannot be cancelled; None when it can."""
    if status is None:
        return f"cancel: there is no run {run_id} in {db} (`tinyo status` lists the runs)"
    if status not in ("queued", "running"):
        return f"cancel: run {run_id} is not queued or running: it ended ({status})"
    return None


def _say_and_close(conn: socket.socket, message: Any) -> None:
    try:
        conn.settimeout(1.0)
        conn.sendall(encode(message))
    except OSError:
        pass
    finally:
        conn.close()


def serve(engine: Engine, grace: float = 10.0) -> ControlServer | None:
    """Serve ``engine``'s control channel; on failure say why on stderr and go on without it."""
    try:
        return ControlServer(engine, grace=grace).start()
    except (ControlError, OSError) as exc:
        print(f"tinyo: warning: no control channel (commands fall back to the state file): {exc}", file=sys.stderr)
        return None
