"""The floor program of ``bench_floor.py``: the least CPU per file an engine keeping README "Guarantees"
spends on issue 14's burst, as one straight pass per batch of watcher events, no abstraction.

    python benchmarks/floor_program.py INBOX STATE_DB MARKER RECIPE VARIANT

``VARIANT`` is ``process`` (tinyo's watcher process) or ``watchdog`` (an observer in this process, as
``bench_burst.PLAIN`` has it), with ``+sql-thread`` to write each transaction on a thread of its own. It
prints ``ready`` once it watches; on SIGTERM it writes its figures to ``floor-stats.json`` beside the state
file and exits. Per cycle:

1. the watcher's batches (tinyo's watcher process: close-write and moved-to events, each complete file
   stat'ed and hashed there; its pipe read by the main thread itself), or watchdog's paths stat'ed and
   hashed on the main thread;
2. intake: a file whose hash equals the one last taken in is no event (Guarantees 1); events held until no
   new one came for ``SETTLE`` seconds (at most ``SETTLE_MAX``, or ``BATCH`` events: Guarantees 2b);
3. the recipe's real ``@meta_task`` generator, called per event, building real ``tinyo.DES``;
4. registration: DES ids, a second producer or a cycle refused, readiness (all deps have versions, never
   built), run ids;
5. one transaction on tinyo's schema (``store_schema.SCHEMA``): the events, each file's document (seen state
   and version in one upsert), the DES, their consumers, each target's document (group, producer), the runs
   opened, the watermark, and the outcomes read since the last commit (the run's outcome, the DES's state and
   trace, the target's new version); COMMIT before any op is handed over (Guarantees 2);
6. hand-over to 2 forked worker processes in chunks, outcomes read back (one message per chunk);
7. the 4 ``tinyo.events`` dataclasses tinyo tells per file (the event's with its file's version, the DES's
   with its first state, the run's start, its end with its target's version) and a ``GroupsChanged`` per
   cycle, held until the commit, then handed to a bounded deque (nothing drains it).

The main thread's CPU is split by part (``PARTS``) with ``time.thread_time_ns``, the SQL by statement.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

SETTLE, SETTLE_MAX, BATCH = 0.01, 0.2, 1000
CHUNK, IN_FLIGHT, PIPE_SIZE = 250, 8, 1 << 20
"""Tasks per chunk, chunks a worker holds at most, and the pipes' size: a worker's chunks fit in its pipe, so
the main thread never waits on a write, and a worker has work for as long as one of the main thread's
cycles takes (up to BATCH events: a pipeline of one thread cannot hand over in the middle of one)."""
PARTS = ("read", "intake", "hash", "generator", "register", "sql", "handover", "outcomes", "facts")
READ, INTAKE, HASH, GENERATOR, REGISTER, SQL, HANDOVER, OUTCOMES, FACTS = range(len(PARTS))

FILE_DOC = ("INSERT INTO documents(name, version, hash, mtime_ns, size, updated, by, grp, seen_mtime_ns, seen_size, "
            "seen_hash) VALUES (?, ?, ?, ?, ?, ?, 'event', ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "version = excluded.version, hash = excluded.hash, mtime_ns = excluded.mtime_ns, size = excluded.size, "
            "updated = excluded.updated, by = excluded.by, grp = coalesce(grp, excluded.grp), "
            "seen_mtime_ns = excluded.seen_mtime_ns, seen_size = excluded.seen_size, seen_hash = excluded.seen_hash")
TARGET_DOC = ("INSERT INTO documents(name, grp, producer) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
              "grp = coalesce(grp, excluded.grp), producer = excluded.producer")
TARGET_VERSION = ("INSERT INTO documents(name, version, updated, by) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE "
                  "SET version = excluded.version, hash = NULL, mtime_ns = NULL, size = NULL, "
                  "updated = excluded.updated, by = excluded.by")
"""The document upserts ``store_schema.doc_statements`` makes for these parts, written out."""
DES_ROW = ("INSERT OR IGNORE INTO des(n, id, deps, targs, ops_desc, ops, generator, event, created, state) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'new')")
RUN_ROW = ("INSERT INTO runs(id, des_id, attempt, worker, start, status, dep_versions, des_n) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
"""tinyo's ``des`` and ``runs`` inserts, with the DES's number given (the engine looks it up by id)."""


def worker(inp: Any, out: Any, name: str, resolve: Any) -> None:
    """A forked worker: runs each chunk's ops as tinyo's worker calls them, one outcome message per chunk.
    A task carries its DES's ops as the bytes stored in its row (the same object for equal ops, so a chunk
    pickles them once), read once per distinct value."""
    from pickle import loads

    fns: dict[str, Any] = {}
    ops_of: dict[bytes, Any] = {}
    now = time.time
    while True:
        try:
            chunk = inp.recv()
        except EOFError:
            os._exit(0)
        done = []
        for run_id, des_id, attempt, blob, deps, targs in chunk:
            start = now()
            try:
                ops = ops_of.get(blob)
                if ops is None:
                    ops = ops_of[blob] = loads(blob)
                for ref, cfg in ops:
                    fn = fns.get(ref) or fns.setdefault(ref, resolve(ref))
                    fn({"deps": deps, "targs": targs, "config": cfg, "run_id": run_id, "attempt": attempt,
                        "des_id": des_id, "worker": name})
                done.append((run_id, None, start, now()))
            except Exception as exc:  # fails alone (Guarantees 4)
                done.append((run_id, f"raised {type(exc).__name__}: {exc}", start, now()))
        out.send(done)


def serve(inbox: str, db: str, marker: str, recipe_path: str, variant: str) -> None:
    """The floor: ``variant`` is ``process`` or ``watchdog`` (the watcher), with ``+sql-thread`` to write
    each cycle's transaction on a thread of its own while the main thread takes the next batch in."""
    import fcntl
    import gc
    import queue
    import select
    import signal
    import sqlite3
    import subprocess
    import threading
    from collections import deque
    from json.encoder import encode_basestring_ascii as jstr
    from pickle import HIGHEST_PROTOCOL, dumps

    from tinyo import events as ev
    from tinyo.filedigest import digest_file
    from tinyo.groups import GroupSummary, group_key
    from tinyo.model import DEFAULT_IGNORE, DES, canonical
    from tinyo.pipe import Pipe
    from tinyo.recipe import OpResolver, load_recipe
    from tinyo.store_schema import DEFERRED, SCHEMA

    recipe = load_recipe(recipe_path)
    roots = [(task.name, task.fn) for task in recipe.roots]
    resolver = OpResolver(recipe.module, recipe.path)
    pipes = []
    for w in (1, 2):  # forked before any thread or connection exists; the op's module is loaded already
        task_r, task_w = os.pipe()
        done_r, done_w = os.pipe()
        for fd in (task_w, done_w):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        if os.fork() == 0:
            os.close(task_w), os.close(done_r)
            worker(Pipe(task_r), Pipe(done_w), f"w{w}", resolver.resolve)
        os.close(task_r), os.close(done_w)
        pipes.append((Pipe(task_w), Pipe(done_r), f"w{w}"))
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA)
    poller = select.poll()
    wake_r = commit_r = -1
    watcher = variant.split("+")[0]
    if watcher == "process":
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        settings = {"dirs": [inbox], "recursive": False, "debounce": 0.2, "ignore": [], "hash": True,
                    "ignore_names": list(DEFAULT_IGNORE)}
        subprocess.Popen([sys.executable, "-m", "tinyo._watch_main", str(cmd_r), str(out_w), json.dumps(settings)],
                         pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL)
        os.close(cmd_r), os.close(out_w)
        watch = Pipe(out_r)
        assert watch.recv() == ("ready",)
        poller.register(out_r, select.POLLIN)
    else:
        from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        wake_r, wake_w = os.pipe()
        paths: list[str] = []
        lock = threading.Lock()

        class Handler(FileSystemEventHandler):
            def take(self, path: str) -> None:
                with lock:
                    paths.append(path)
                    if len(paths) == 1:
                        os.write(wake_w, b"x")

            def on_closed(self, event: Any) -> None:
                self.take(os.fsdecode(event.src_path))

            def on_moved(self, event: Any) -> None:
                self.take(os.fsdecode(event.dest_path))

        observer = Observer()
        observer.schedule(Handler(), inbox, event_filter=[FileClosedEvent, FileMovedEvent])
        observer.start()
        poller.register(wake_r, select.POLLIN)
    by_fd = {}
    for task_pipe, done_pipe, name in pipes:
        poller.register(done_pipe.fd, select.POLLIN)
        by_fd[done_pipe.fd] = (done_pipe, name)
    in_flight = {name: 0 for _, _, name in pipes}
    gc.freeze()  # as tinyo's heap.settle
    gc.set_threshold(10_000, 10, 10)

    seen: dict[str, tuple[int, int, str]] = {}  # file -> its state as last taken in (the intake's dedup)
    version: dict[str, int] = {}
    producer: dict[str, str] = {}
    groups: dict[str, list[Any]] = {}  # pattern -> [count, first]
    open_runs: dict[int, tuple[str, str, str, list[str], frozenset[str]]] = {}  # run id -> what its outcome writes
    ready: deque[tuple[Any, ...]] = deque()
    facts: deque[Any] = deque(maxlen=100_000)
    held: list[tuple[str, int, int, str]] = []
    first_held = last_seen = 0.0
    event_id, run_id, des_n = (conn.execute(f"SELECT coalesce(max({c}), 0) FROM {t}").fetchone()[0]
                               for c, t in (("id", "events"), ("id", "runs"), ("n", "des")))
    shapes: dict[tuple[Any, ...], tuple[bytes, tuple[str, ...], str, str]] = {}  # by the ops' callables and Configs
    known: set[str] = set()  # DES ids stored
    readers: set[str] = set()  # documents some DES reads

    def jlist(names: Any) -> str:
        return "[" + ", ".join(map(jstr, names)) + "]"

    parts = [0] * len(PARTS)
    sql_ns: dict[str, int] = {}  # the SQL part by statement
    stats = {"cycles": 0, "commits": 0, "events": 0, "runs_done": 0, "facts": 0, "chunks": 0}
    clock = time.thread_time_ns
    mono, now_ts = time.monotonic, time.time
    sql_finish, sql_des_state = DEFERRED["runs_finish"], DEFERRED["des_update"]

    def stop(*_: Any) -> None:
        stats["parts_ns"] = dict(zip(PARTS, parts))
        stats["sql_ns"] = sql_ns
        stats["main_thread_s"] = time.thread_time() - base
        if sql_queue is not None:
            stats["sql_thread_s"] = sum(sql_ns.values()) / 1e9
        Path(db).with_name("floor-stats.json").write_text(json.dumps(stats))
        os._exit(0)

    def write(batch: list[tuple[str, str, list[tuple[Any, ...]]]]) -> None:
        t0 = clock()
        conn.execute("BEGIN IMMEDIATE")
        for label, statement, rows in [("begin", "", None), *batch, ("commit", "COMMIT", None)]:
            if rows:
                conn.executemany(statement, rows)
            elif rows is None and statement:
                conn.execute(statement)
            t1 = clock()
            sql_ns[label] = sql_ns.get(label, 0) + t1 - t0
            t0 = t1
        stats["commits"] += 1

    sql_queue: queue.Queue[Any] | None = None
    committed: deque[tuple[list[Any], list[Any]]] = deque()
    if variant.endswith("+sql-thread"):
        sql_queue = queue.Queue(maxsize=2)
        commit_r, commit_w = os.pipe()
        poller.register(commit_r, select.POLLIN)

        def writer() -> None:  # the only user of the connection from here on
            while True:
                batch, new_tasks, told = sql_queue.get()
                write(batch)
                committed.append((new_tasks, told))
                os.write(commit_w, b"x")

        threading.Thread(target=writer, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    trail: list[tuple[float, int, int, int]] = []  # the first cycles: (when, events, outcomes, waiting to go)
    stats["trail"] = trail
    base = time.thread_time()  # the main thread's CPU from here on (the harness measures from a moment later)
    print("ready", flush=True)
    while True:
        timeout = -1
        if held:  # the settle window: wait for the rest of a change set
            timeout = max(0, int(1000 * min(last_seen + SETTLE, first_held + SETTLE_MAX) - 1000 * mono()) + 1)
        fds = poller.poll(timeout)
        t = clock()
        outcomes = []
        for fd, _ in fds:
            if fd == wake_r:
                os.read(wake_r, 64)
                with lock:
                    got, paths[:] = list(paths), []
                t1 = clock()
                parts[READ] += t1 - t
                if not held:
                    first_held = mono()
                for path in dict.fromkeys(got):
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    digest = digest_file(path, st.st_size)
                    if digest is not None:
                        held.append((path, st.st_mtime_ns, st.st_size, digest))
                t = clock()
                parts[HASH] += t - t1
                last_seen = mono()
            elif fd == commit_r:  # a transaction written: its runs go to the workers, its facts out
                os.read(commit_r, 4096)
                while committed:
                    new_tasks, told = committed.popleft()
                    ready.extend(new_tasks)
                    facts.extend(told)
            elif fd in by_fd:
                done_pipe, name = by_fd[fd]
                while True:  # every chunk done so far (each frees room for another)
                    outcomes.extend((name, *o) for o in done_pipe.recv())
                    in_flight[name] -= 1
                    if not in_flight[name] or not done_pipe.poll(0):
                        break
            else:
                while True:  # every batch sent so far, up to a cycle's worth
                    message = watch.recv()
                    if message[0] == "files":
                        if not held:
                            first_held = mono()
                        held.extend(message[1])
                        last_seen = message[2]
                    if len(held) >= BATCH or not watch.poll(0):
                        break
        t1 = clock()
        parts[READ] += t1 - t
        m = mono()
        take = held and (len(held) >= BATCH or m >= last_seen + SETTLE or m >= first_held + SETTLE_MAX)
        if not take and not outcomes and not (ready and min(in_flight.values()) < IN_FLIGHT):
            continue
        stats["cycles"] += 1
        now = now_ts()
        # ---- intake: events (and each file's seen state, written with its version below)
        events = []
        if take:
            batch, held = held[:BATCH], held[BATCH:]
            for item in batch:
                path = item[0]
                was = seen.get(path)
                if was is not None and was[2] == item[3]:
                    continue  # same content: no event (Guarantees 1)
                seen[path] = item[1:]
                event_id += 1
                events.append((event_id, item))
            stats["events"] += len(events)
        event_rows = [(eid, now, "file", item[0], None, None) for eid, item in events]
        t = clock()
        parts[INTAKE] += t - t1
        # ---- the generators
        emitted = []
        for eid, item in events:
            for gen, fn in roots:
                key, made = fn(item[0])
                if made.__class__ is not list or any(d.__class__ is not DES for d in made):
                    raise TypeError(f"{gen} returned {made!r}")  # the floor keeps no error path
                emitted.append((eid, item, gen, made))
        t1 = clock()
        parts[GENERATOR] += t1 - t
        # ---- registration, documents, readiness, run rows
        file_docs, des_rows, consumer_rows, target_docs, run_rows, counts, grouped = [], [], [], [], [], [], []
        registered, new_tasks = [], []
        for eid, (path, mtime_ns, size, digest), gen, made in emitted:
            v = version[path] = version.get(path, 0) + 1
            grp = group_key(path)
            grouped.append((grp, path))
            file_docs.append((path, v, digest, mtime_ns, size, now, grp, mtime_ns, size, digest))
            counts.append(str(len(made)))
            for des in made:
                des_id = des.id
                if des_id in known:
                    continue  # emitted again: nothing new to store
                targs = des.targs
                if any([producer.get(targ, des_id) != des_id or targ in readers for targ in targs]):
                    continue  # a second producer, or a target something reads (a cycle's walk): not in a burst
                known.add(des_id)
                deps_set = des.deps
                deps = sorted(deps_set) if len(deps_set) > 1 else list(deps_set)
                shape_key = tuple([(fn, canonical(cfg)) for fn, cfg in des.ops])
                shape = shapes.get(shape_key)
                if shape is None:  # the first DES with these ops: their refs, stored bytes, names
                    ops = [(resolver.ref(fn), cfg) for fn, cfg in des.ops]
                    names = tuple(ref.partition(":")[2] for ref, _ in ops)
                    shape = shapes[shape_key] = (dumps(ops, HIGHEST_PROTOCOL), names, "+".join(names), jlist(names))
                blob, names, op, ops_desc = shape
                des_n += 1
                sorted_targs = sorted(targs) if len(targs) > 1 else list(targs)
                des_rows.append((des_n, des_id, jlist(deps), jlist(sorted_targs), ops_desc, blob, gen, path, now))
                for dep in deps:
                    consumer_rows.append((dep, des_id))
                    readers.add(dep)
                for targ in targs:
                    producer[targ] = des_id
                    grp = group_key(targ)
                    grouped.append((grp, targ))
                    target_docs.append((targ, grp, des_id))
                queued = all([dep in version for dep in deps])  # ready: every dep has a version, never built
                registered.append((des, des_id, names, gen, path, queued))
                if queued:
                    run_id += 1
                    trace = "{" + ", ".join([f"{jstr(dep)}: {version[dep]}" for dep in deps]) + "}"
                    run_rows.append((run_id, des_id, 1, None, None, "queued", trace, des_n))
                    open_runs[run_id] = (des_id, op, trace, sorted_targs, targs)
                    new_tasks.append((run_id, des_id, 1, blob, deps_set, targs))
        t = clock()
        parts[REGISTER] += t - t1
        # ---- outcomes read since the last commit
        finish_rows, des_states, target_versions, finished = [], [], [], []
        for name, rid, error, start, end in outcomes:
            des_id, op, trace, targs, targ_set = open_runs.pop(rid)
            if error is not None:
                raise RuntimeError(f"op {op} {error}")  # the floor keeps no retry path
            finish_rows.append(("ok", end, None, None, "", None, name, start, rid))
            des_states.append(("ok", trace, None, 0, 1, rid, des_id))  # last_run: this run (schema 6)
            given = []
            for targ in targs:  # not a path: no file to stat (tinyo's run book stats a "/..." target)
                v = version[targ] = version.get(targ, 0) + 1
                target_versions.append((targ, v, now, des_id))
                given.append(v)
            finished.append((rid, des_id, op, name, end - start, targ_set, tuple(targs), tuple(given)))
        stats["runs_done"] += len(outcomes)
        t1 = clock()
        parts[OUTCOMES] += t1 - t
        # ---- facts, held until the commit (the bus tells nothing before it: Guarantees 1)
        told: list[Any] = []
        if events or outcomes:
            for (eid, (path, *_), gen, made), doc in zip(emitted, file_docs):  # its file's version told in it
                told.append(ev.EventReceived(now, eid, path, "file", now, len(made), 0, doc[1]))
            for des, des_id, names, gen, path, queued in registered:  # its first state told in it
                if queued:
                    told.append(ev.DESRegistered(now, des_id, des.deps, des.targs, names, gen, path, False, "queued",
                                                 "queued: never built"))
                else:
                    told.append(ev.DESRegistered(now, des_id, des.deps, des.targs, names, gen, path))
            for rid, des_id, op, name, duration, targ_set, made_names, made_versions in finished:
                told.append(ev.OpStarted(now, rid, des_id, op, name, 1, targ_set))
                told.append(ev.OpFinished(now, rid, des_id, op, name, duration, None, made_names, made_versions))
            touched = {}
            for key, name in grouped:  # the groups' counts for the console's tree: one fact per cycle
                g = groups.get(key)
                if g is None:
                    g = groups[key] = [0, name]
                g[0] += 1
                touched[key] = g
            if touched:
                told.append(ev.GroupsChanged(now, tuple(GroupSummary(key, count, first, (("source", count),))
                                                        for key, (count, first) in touched.items())))
            stats["facts"] += len(told)
        t = clock()
        parts[FACTS] += t - t1
        # ---- one transaction, committed before any op is handed over (Guarantees 2)
        if events or outcomes:
            batch = [("events", DEFERRED["events"], event_rows), ("file documents", FILE_DOC, file_docs),
                     ("des", DES_ROW, des_rows), ("consumers", DEFERRED["consumers"], consumer_rows),
                     ("target documents", TARGET_DOC, target_docs), ("runs opened", RUN_ROW, run_rows),
                     ("watermark", DEFERRED["processed"],
                      [(events[-1][0], events[0][0], ",".join(counts))] if events else []),
                     ("runs' outcomes", sql_finish, finish_rows), ("des states", sql_des_state, des_states),
                     ("target versions", TARGET_VERSION, target_versions)]
            if sql_queue is None:
                write(batch)
                ready.extend(new_tasks)
                facts.extend(told)
            else:
                sql_queue.put((batch, new_tasks, told))  # bounded: a writer behind holds the loop back
        t1 = clock()
        parts[SQL] += t1 - t
        # ---- hand-over: chunks to the workers with room
        for task_pipe, _, name in pipes:
            while ready and in_flight[name] < IN_FLIGHT:
                size = min(CHUNK, max(1, len(ready) // 2))
                task_pipe.send([ready.popleft() for _ in range(size)])
                in_flight[name] += 1
                stats["chunks"] += 1
        parts[HANDOVER] += clock() - t1
        if len(trail) < 500:
            trail.append((round(mono(), 4), len(events), len(outcomes), len(ready)))


if __name__ == "__main__":
    serve(*sys.argv[1:6])
