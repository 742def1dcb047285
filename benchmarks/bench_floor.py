"""The floor of issue 14's burst: the least CPU per file an engine keeping README "Guarantees" spends.

    python benchmarks/bench_floor.py [--files N] [--rounds R] [--cases plain,floor,floor_watchdog,text] [--json PATH]
    python benchmarks/bench_floor.py --quick          # 1,000 files, 1 round

The floor is the program below (``serve``), run as its own process on ``bench_burst``'s burst (the same
recipe, writer, marker file, lag and CPU accounting, by import): no abstraction, one straight pass per batch
of watcher events, written to be as cheap as it can be while doing what the Guarantees need:

1. the watcher: tinyo's own watcher process (``python -m tinyo._watch_main``: close-write and moved-to
   events, each complete file stat'ed and hashed there, batches through a pipe), its pipe read by the main
   thread itself; or (``floor_watchdog``) a watchdog observer in the process, as ``PLAIN`` has it, each file
   stat'ed and hashed on the main thread;
2. intake: a file whose hash equals the one last taken in is no event (Guarantees 1); events held until no
   new one came for ``SETTLE`` seconds (at most ``SETTLE_MAX``, or ``BATCH`` events: Guarantees 2b);
3. the recipe's real ``@meta_task`` generator, called per event, building real ``tinyo.DES`` (their ids);
4. registration: a second producer of a target refused, readiness (all deps have versions, never built);
5. one transaction per cycle on tinyo's schema (``store_schema.SCHEMA``): the events rows, each file's
   document (seen state and version in one upsert), the DES rows, their consumers, each target's document
   (group, producer), the run rows opened before hand-over (tinyo's own statement), the watermark row,
   and the outcomes read since the last commit (the run's outcome, the DES's state and trace, the target's
   new version); COMMIT before any op is handed over (Guarantees 2);
6. hand-over to 2 forked worker processes in chunks (up to ``IN_FLIGHT`` chunks of ``CHUNK`` each), outcomes read back
   (one message per chunk: run id, error, start, end), committed in the next cycle;
7. facts: the 7 ``tinyo.events`` dataclasses tinyo tells per file (``EventReceived``, ``DocumentUpdated``
   twice, ``DESRegistered``, ``DESStateChanged``, ``OpStarted``, ``OpFinished``) and a ``GroupsChanged``
   per cycle, built after the commit and handed to a bounded deque (no consumer drains it).

The main thread's CPU is split by part with ``time.thread_time_ns``; each process's CPU comes from
``/proc`` (``bench_burst.burst_case``). Cases, rounds interleaved: ``plain`` (the baseline), ``floor``,
``floor_watchdog`` and ``text`` (``tinyo run``, its text log on a pty). Medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

bb: Any = None
"""``bench_burst`` (its harness), imported by the harness only: importing it makes a compiled-module folder,
which the floor's own process (``--serve``, stopped by a signal) would leave behind."""

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
    import queue
    import gc
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
    open_runs: dict[int, tuple[str, str, str, str, frozenset[str]]] = {}
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
            des_states.append(("ok", trace, None, 0, 1, des_id))
            finished.append((rid, des_id, op, name, end - start, targ_set))
            for targ in targs:  # not a path: no file to stat (tinyo's run book stats a "/..." target)
                v = version[targ] = version.get(targ, 0) + 1
                target_versions.append((targ, v, now, des_id))
        stats["runs_done"] += len(outcomes)
        t1 = clock()
        parts[OUTCOMES] += t1 - t
        # ---- facts, held until the commit (the bus tells nothing before it: Guarantees 1)
        told: list[Any] = []
        if events or outcomes:
            for (eid, (path, *_), gen, made), doc in zip(emitted, file_docs):
                told.append(ev.DocumentUpdated(now, path, doc[1], "event"))
                told.append(ev.EventReceived(now, eid, path, "file", now, len(made), 0))
            for des, des_id, names, gen, path, queued in registered:
                told.append(ev.DESRegistered(now, des_id, des.deps, des.targs, names, gen, path))
                if queued:
                    told.append(ev.DESStateChanged(now, des_id, "queued", "queued: never built", "new",
                                                   tuple(sorted(des.targs))))
            for rid, des_id, op, name, duration, targ_set in finished:
                told.append(ev.OpStarted(now, rid, des_id, op, name, 1, targ_set))
                told.append(ev.OpFinished(now, rid, des_id, op, name, duration, None))
            told.extend(ev.DocumentUpdated(now, targ, v, des_id) for targ, v, _, des_id in target_versions)
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
                     ("watermark", DEFERRED["processed"], [(events[-1][0], events[0][0], ",".join(counts))] if events else []),
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


# ============================================================================ the harness


def floor_script(variant: str) -> Any:
    def script(inbox: Path, db: Path, marker: Path, recipe: Path) -> list[str]:
        return [bb.PY, __file__, "--serve", str(inbox), str(db), str(marker), str(recipe), variant]
    return script


def state_rows(work: Path) -> dict[str, int]:
    """Rows in each table of the case's state file (the floor's and tinyo's alike)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("events", "documents", "des", "consumers", "runs", "processed")}
    finally:
        conn.close()


def floor_stats(work: Path) -> dict[str, Any] | None:
    path = work / "floor-stats.json"
    for _ in range(50):  # written by its SIGTERM handler
        if path.exists():
            try:
                return {**json.loads(path.read_text()), "rows": state_rows(work)}
            except ValueError:
                pass
        time.sleep(0.02)
    return None


CASES = {
    "plain": {},
    "floor": {"script": floor_script("process"), "collect": floor_stats},
    "floor_watchdog": {"script": floor_script("watchdog"), "collect": floor_stats},
    "floor_sqlthread": {"script": floor_script("process+sql-thread"), "collect": floor_stats},
    "text": {"collect": lambda work: {"rows": state_rows(work)}},
}
"""The cases: the plain pipeline (the baseline), the floor with tinyo's watcher process or with watchdog in
its process (as the plain pipeline has it), or with each transaction written on a thread of its own (not in
the default cases: a lever for lag, not for CPU), and ``tinyo run`` with its text log on a pty."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="plain,floor,floor_watchdog,text")
    parser.add_argument("--quick", action="store_true", help="1,000 files, 1 round")
    parser.add_argument("--json", default=None)
    parser.add_argument("--serve", nargs=5, metavar=("INBOX", "DB", "MARKER", "RECIPE", "VARIANT"),
                        help="run the floor program itself (what the harness starts)")
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    global bb
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_burst as bb
    if args.quick:
        args.files, args.rounds = 1000, 1
    cases = args.cases.split(",")
    res: dict[str, Any] = {"files": args.files, "rounds": args.rounds, "load_before": os.getloadavg(),
                           "cpus": os.cpu_count()}
    rounds: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for case in cases:  # interleaved: the machine's load falls on every case alike
            kind = "text" if case == "text" else case
            rounds[case].append(bb.burst_case(kind, args.files, 300, **CASES[case]))
    res["load_after"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - t0
    res["cases"] = {case: summary(r, args.files) for case, r in rounds.items()}
    res["rounds_detail"] = rounds
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def summary(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Medians of the rounds, CPU in microseconds per file."""
    us = 1e6 / n
    out: dict[str, Any] = {"lag_s": statistics.median(r["lag_s"] for r in rows),
                           "cpu_us": statistics.median(r["cpu_s"] for r in rows) * us,
                           "exactly_once": all(r["exactly_once"] for r in rows)}
    for label in ("main", "watcher", "workers"):
        out[f"{label}_us"] = statistics.median(r["procs"].get(label, 0.0) for r in rows) * us
    stats = [r["collected"] for r in rows if r.get("collected")]
    if stats:
        out["rows"] = stats[0]["rows"]
    stats = [s for s in stats if "parts_ns" in s]
    if stats:
        out["main_thread_us"] = statistics.median(s["main_thread_s"] for s in stats) * us
        if "sql_thread_s" in stats[0]:
            out["sql_thread_us"] = statistics.median(s["sql_thread_s"] for s in stats) * us
        for part in PARTS:
            out[f"{part}_us"] = statistics.median(s["parts_ns"][part] for s in stats) / 1e3 / n
        for key in ("cycles", "commits", "chunks"):
            out[key] = statistics.median(s[key] for s in stats)
        out["facts_per_file"] = statistics.median(s["facts"] for s in stats) / n
        out["sql_by_statement_us"] = {label: statistics.median(s["sql_ns"].get(label, 0) for s in stats) / 1e3 / n
                                      for label in stats[0]["sql_ns"]}
    return out


def report(res: dict[str, Any]) -> None:
    print(f"load average before {res['load_before'][0]:.1f}, after {res['load_after'][0]:.1f} on {res['cpus']} CPUs; "
          f"{res['files']:,} files at once on tmpfs, {res['rounds']} rounds interleaved (medians); "
          f"{res['seconds']:.0f} s in all")
    cases = res["cases"]
    base = cases.get("plain")
    cols = list(cases)
    rows = [("lag s", "lag_s", "{:.2f}"), ("  x plain", None, None), ("CPU, all processes, us/file", "cpu_us", "{:.0f}"),
            ("  x plain", None, None), ("  main process", "main_us", "{:.0f}"), ("  watcher process", "watcher_us", "{:.0f}"),
            ("  worker processes", "workers_us", "{:.0f}"), ("  main thread (floor)", "main_thread_us", "{:.0f}")]
    rows += [(f"    {part}", f"{part}_us", "{:.1f}") for part in PARTS]
    rows += [("  SQL thread (floor_sqlthread)", "sql_thread_us", "{:.0f}")]
    rows += [("cycles (commits)", "commits", "{:.0f}"), ("facts per file", "facts_per_file", "{:.2f}"),
             ("exactly once", "exactly_once", "{}")]
    print(f"\n{'per file':<30}" + "".join(f"{c:>16}" for c in cols))
    last = None
    for label, key, fmt in rows:
        cells = []
        for c in cols:
            if key is None:  # the ratio of the row above to the baseline
                v = cases[c].get(last) if base else None
                cells.append(f"{v / base[last]:.2f}x" if v is not None else "")
            else:
                v = cases[c].get(key)
                cells.append("" if v is None else fmt.format(v))
        print(f"{label:<30}" + "".join(f"{x:>16}" for x in cells))
        last = key or last
    print("goals (issue 14): tinyo run lag <= 2x, CPU <= 3x the plain pipeline's")
    if base and "floor" in cases:
        f = cases["floor"]
        print(f"\nwhat the floor says: its CPU is {f['cpu_us']:.0f} us per file, {f['cpu_us'] / base['cpu_us']:.2f}x the plain "
              f"pipeline's; CPU <= 3x ({3 * base['cpu_us']:.0f} us) leaves {3 * base['cpu_us'] - f['cpu_us']:.0f} us per file "
              f"for everything an engine does beyond the floor")
        if "text" in cases:
            t = cases["text"]
            print(f"tinyo run spends {t['cpu_us'] - f['cpu_us']:.0f} us per file above it: its main process "
                  f"{t['main_us'] - f['main_us']:+.0f}, watcher {t['watcher_us'] - f['watcher_us']:+.0f}, workers "
                  f"{t['workers_us'] - f['workers_us']:+.0f}")
        print(f"the floor's lag is {f['lag_s'] / base['lag_s']:.2f}x the plain pipeline's: a burst is bound by one thread "
              f"(its main thread {f.get('main_thread_us', 0):.0f} us per file, the plain pipeline's process "
              f"{base['main_us']:.0f} us) and, on 2 CPUs, by the CPU of every process")
    floors = [c for c in cols if "sql_by_statement_us" in cases[c]]
    if floors:
        print(f"\nthe floor's SQL by statement, us per file{'':<4}" + "".join(f"{c:>16}" for c in floors))
        for label in cases[floors[0]]["sql_by_statement_us"]:
            print(f"  {label:<42}" + "".join(f"{cases[c]['sql_by_statement_us'].get(label, 0):>16.1f}" for c in floors))


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        if bb is not None:
            import shutil

            shutil.rmtree(bb.PYCACHE, ignore_errors=True)
