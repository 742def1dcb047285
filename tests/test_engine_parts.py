"""The engine's parts at their seams, without a loop thread, worker processes or sleeps: registration
and dispatch (readiness, run ids, the ready queue), the run book (outcomes, retry back-off on an
injected clock), and the outbox (facts held until the commit)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from tinyo import events as ev
from tinyo import dag
from tinyo.clock import ManualClock
from tinyo.core import loop as loop_module
from tinyo.core.loop import BATCHES_PER_CYCLE, Loop
from tinyo.core.runbook import retry_delay
from tinyo.core.inflow import STORE_PER_CYCLE
from tinyo.intake import FileState
from tinyo.model import BATCH_EVENTS, DES, Config, Execution
from tinyo.recipe import OpResolver, load_recipe
from tinyo.store import Store

RECIPE = '''
from tinyo import Execution, TinyOConfig, meta_task


def step(context):
    return None


@meta_task(root=True)
def nothing(event):
    return (None, [])


config = TinyOConfig(sql_conn=DB_PATH, dirs=[], execution=Execution.INLINE, retries=2, retry_delay=1.0,
                     retry_max_delay=3.0)
'''


def wire_loop(folder: Path, recipe_text: str) -> Loop:
    """A loop's parts wired as the engine wires them, on a real state file in ``folder``, never started;
    ``recipe_text`` names the state file DB_PATH. The facts it publishes are in ``loop.published``."""
    path = folder / "recipe.py"
    path.write_text(recipe_text.replace("DB_PATH", repr(str(folder / "state.db"))))
    recipe = load_recipe(path)
    store = Store(str(folder / "state.db"))
    bus = ev.Bus()
    published: list[ev.BusEvent] = []
    bus.subscribe(published.append)
    loop = Loop(recipe, store, bus, ManualClock(), OpResolver(recipe.module, recipe.path), Execution.INLINE, 1, None,
                watch=False)
    loop.published = published  # type: ignore[attr-defined]
    return loop


@pytest.fixture
def parts(tmp_path: Path):
    """A loop's parts wired as the engine wires them, on a real state file, never started."""
    loop = wire_loop(tmp_path, RECIPE)
    yield loop
    loop.store.close()


def _des(loop: Loop, deps: list[str], targs: list[str]) -> DES:
    des = DES(deps=deps, targs=targs, ops=[(loop.recipe.module.step, Config({}))])
    assert loop.registration.register(des, "nothing", "e1", "e1")
    return des


def _ready_tasks(loop: Loop, slots: int = 5):
    loop.dispatch.settle()
    return loop.dispatch.take(slots)


def _report(loop: Loop, run_id: int, ok: bool, error: str | None = None) -> None:
    loop.runbook.on_message("w1", "start", run_id, ("w1", loop.clock.time()))
    loop.runbook.on_message("w1", "done", run_id, (ok, error, "Traceback: boom" if error else None, None, 0.01))


def test_retry_back_off_doubles_from_the_first_delay_up_to_its_bound():
    assert [retry_delay(n, 1.0, 3.0) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 3.0, 3.0, 3.0]
    assert [retry_delay(n, 0.25, 300.0) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]


def test_dispatch_runs_a_chain_in_order_without_processes(parts):
    loop = parts
    first = _des(loop, ["raw"], ["clean"])
    second = _des(loop, ["clean"], ["report"])
    assert _ready_tasks(loop) == [], "nothing is ready while its input has no version"
    loop.documents.bump("raw", by="event")
    tasks = _ready_tasks(loop)
    assert [(t.des_id, t.attempt, t.deps, t.targs) for t in tasks] == [
        (first.id, 1, frozenset({"raw"}), frozenset({"clean"}))]
    assert tasks[0].op_label == "step" and tasks[0].ops[0][0].endswith(":step")
    assert loop.graph.nodes[second.id].state == "waiting"
    _report(loop, tasks[0].run_id, ok=True)
    assert loop.graph.version("clean") == 1
    then = _ready_tasks(loop)
    assert [t.des_id for t in then] == [second.id]
    assert then[0].run_id == tasks[0].run_id + 1
    assert set(loop.runbook.open) == {then[0].run_id}


def test_dispatch_takes_no_more_than_the_free_slots_and_keeps_the_rest_in_order(parts):
    loop = parts
    made = [_des(loop, ["raw"], [f"out{i}"]) for i in range(4)]
    loop.documents.bump("raw", by="event")
    assert [t.des_id for t in _ready_tasks(loop, slots=3)] == [d.id for d in made[:3]]
    assert list(loop.dispatch.ready) == [made[3].id]
    assert [t.des_id for t in _ready_tasks(loop, slots=3)] == [made[3].id]


def test_a_failed_run_is_retried_after_its_back_off_on_the_injected_clock(parts):
    loop = parts
    des = _des(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    for attempt, delay in ((1, 1.0), (2, 2.0)):
        (task,) = _ready_tasks(loop)
        assert task.attempt == attempt
        _report(loop, task.run_id, ok=False, error="boom")
        node = loop.graph.nodes[des.id]
        assert node.status == "retry" and f"in {delay:g}s after: boom" in node.reason
        loop.clock.advance(delay - 0.01)
        loop.runbook.due_retries(loop.clock.monotonic())
        assert _ready_tasks(loop) == [], "not before its back-off is over"
        loop.clock.advance(0.01)
        loop.runbook.due_retries(loop.clock.monotonic())
    (task,) = _ready_tasks(loop)
    assert task.attempt == 3
    _report(loop, task.run_id, ok=False, error="boom")
    assert loop.runbook.failures == 1 and loop.graph.nodes[des.id].failed_state == "failed"
    assert loop.runbook.retries == []


def test_facts_wait_in_the_outbox_until_it_is_released(parts):
    loop = parts
    _des(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    _ready_tasks(loop)
    assert loop.published == [], "nothing is announced before the commit"
    loop.outbox.release()
    kinds = [type(e) for e in loop.published]
    assert kinds.index(ev.DESRegistered) < kinds.index(ev.DocumentUpdated) and ev.DESStateChanged not in kinds
    (registered,) = [e for e in loop.published if isinstance(e, ev.DESRegistered)]
    assert registered.state == "queued"  # its first state, told in it while it waited in the outbox
    loop.outbox.emit(ev.EngineNotice(0.0, "info", "dropped"))
    loop.outbox.drop()
    loop.outbox.release()
    assert not [e for e in loop.published if isinstance(e, ev.EngineNotice)]


def test_a_release_hands_a_batch_subscriber_the_cycle_in_one_call_and_a_broken_subscriber_loses_nothing(parts):
    loop = parts
    batches: list[list[ev.BusEvent]] = []
    loop.outbox.bus.subscribe_batches(lambda facts: batches.append(list(facts)))
    seen: list[ev.BusEvent] = []

    def fragile(fact: ev.BusEvent) -> None:
        if isinstance(fact, ev.DESRegistered):
            raise RuntimeError("a subscriber bug")
        seen.append(fact)

    loop.outbox.bus.subscribe(fragile)
    _des(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    _ready_tasks(loop)
    loop.outbox.release()
    assert len(batches) == 1 and batches[0] == loop.published, "one call, every fact, in order"
    assert seen == [f for f in loop.published if not isinstance(f, ev.DESRegistered)], "the facts after the failure still came"
    assert len(loop.outbox.bus.errors) == 1
    loop.outbox.release()
    assert len(batches) == 1, "an empty release calls no one"


def test_group_counts_follow_a_des_from_never_built_through_queued_to_up_to_date(parts):
    loop = parts
    _des(loop, ["raw"], ["clean"])
    groups = loop.documents.groups
    assert groups.summary("clean").states == (("never built", 1),)
    loop.documents.bump("raw", by="event")
    (task,) = _ready_tasks(loop)
    assert groups.summary("clean").states == (("queued", 1),), "settled and queued in one settle: counted once"
    _report(loop, task.run_id, ok=True)
    loop.dispatch.settle()
    assert groups.summary("clean").states == (("up to date", 1),)
    assert groups.summary("raw").states == (("source", 1),)


def test_commands_change_the_run_state_and_a_second_stop_only_shortens_the_grace(parts):
    from tinyo.messages import Pause, Resume, Stop

    loop = parts
    loop.commands.apply(Pause())
    loop.commands.apply(Pause())  # already paused: nothing more to say
    assert loop.run.paused and loop.run.state == "paused"
    loop.commands.apply(Resume())
    assert not loop.run.paused and loop.run.state == "running"
    loop.commands.apply(Stop(10.0))
    loop.commands.apply(Stop(30.0))
    assert loop.run.stop_requested and loop.run.stop_grace == 10.0 and loop.runbook.stopping
    loop.commands.apply(Stop(0.0))
    assert loop.run.stop_grace == 0.0
    loop.outbox.release()
    states = [e.state for e in loop.published if isinstance(e, ev.EngineState)]
    assert states == ["paused", "running"]


def test_requests_from_other_processes_are_taken_in_by_the_loop_itself_within_its_room(parts):
    loop = parts
    for i in range(5):
        loop.store.add_request(0.0, "inject", f"asked_{i}")
    loop.commands.poll_requests(room=3)
    assert [name for _, name, _ in loop.inflow.own] == ["asked_0", "asked_1", "asked_2"]
    assert loop.inflow.queue.empty(), "never through the queue only the loop drains"
    assert len(loop.store.pending_requests()) == 2, "the rest wait in the state file for the next poll"


def store_until_the_watcher_is_done(loop, watcher: threading.Thread, want: int) -> int:
    """Run the loop's intake store until ``want`` events are stored and ``watcher`` (blocked on the full queue
    until then) has ended, or 10,000 rounds have passed; how many were stored."""
    stored = 0
    for _ in range(10_000):
        stored += loop.inflow.store_events(loop._take_many)
        if stored == want and not watcher.is_alive():
            break
        watcher.join(0.001)
    return stored


def _numbered_files(folder: Path, count: int) -> list[Path]:
    """``count`` files f0.csv, f1.csv ... in ``folder``, each holding its own number (distinct contents)."""
    files = [folder / f"f{i}.csv" for i in range(count)]
    for i, path in enumerate(files):
        path.write_text(str(i))
    return files


def test_intake_taken_in_bulk_frees_a_full_queue_and_leaves_no_item_unfinished(parts, tmp_path):
    """The loop takes a burst off the intake queue in one lock round: a watcher blocked on the full queue
    goes on, and the queue's count of unfinished items (what idleness is judged by) comes back to zero."""
    loop = parts
    files = _numbered_files(tmp_path, 6)
    intake: queue.Queue = queue.Queue(maxsize=2)
    loop.inflow.queue = intake
    for path in files[:2]:
        intake.put(("file", str(path), None))
    watcher = threading.Thread(target=lambda: [intake.put(("file", str(p), None)) for p in files[2:]], daemon=True)
    watcher.start()  # blocks on the full queue until the loop takes items off it
    stored = store_until_the_watcher_is_done(loop, watcher, len(files))
    assert stored == len(files), "every file put, including those that waited for room, is stored once"
    assert not watcher.is_alive()
    assert intake.unfinished_tasks == 0 and intake.empty()
    assert [name for _, _, name, *_ in loop.inflow.next_batch(10)] == [str(p) for p in files]


def test_a_watcher_batch_past_the_intake_s_room_waits_for_it_and_arrives_whole_in_order(parts, tmp_path):
    """``on_files`` puts as many of a batch as fit in one lock round and waits for room for the rest: nothing is
    dropped or reordered, a blocked watcher goes on once the loop takes, and no item is left unfinished."""
    loop = parts
    files = _numbered_files(tmp_path, 7)
    intake: queue.Queue = queue.Queue(maxsize=3)
    loop.inflow.queue = intake
    intake.put(("file", str(files[0]), None))  # room for two of the batch, then the watcher waits
    batch = [(str(p), FileState(p.stat().st_mtime_ns, p.stat().st_size, None)) for p in files[1:]]
    watcher = threading.Thread(target=loop.inflow.on_files, args=(batch,), daemon=True)
    watcher.start()
    watcher.join(0.2)
    assert watcher.is_alive() and intake.qsize() == 3, "the batch fills the room there is, then waits"
    stored = store_until_the_watcher_is_done(loop, watcher, len(files))
    assert stored == len(files) and not watcher.is_alive()
    assert intake.unfinished_tasks == 0 and intake.empty()
    assert [name for _, _, name, *_ in loop.inflow.next_batch(10)] == [str(p) for p in files]


def test_a_burst_s_files_are_stored_a_batch_at_a_time_with_their_first_version_in_one_document_row(parts, tmp_path,
                                                                                                   monkeypatch):
    """Under a burst the cycle stores intake a batch at a time, just before the generators get it: every file's
    event, seen state and first version are in the commit that processed it (one document row per file, no
    seen-only row), and what the cycle does not feed waits in the intake queue, in order, for the next."""
    loop = parts
    monkeypatch.setattr(loop_module, "BACKLOG_BUDGET", 3600.0)  # a slow machine still feeds all 8 batches
    n = BATCH_EVENTS * BATCHES_PER_CYCLE + 50
    files = [tmp_path / f"f{i:04d}.csv" for i in range(n)]
    for i, path in enumerate(files):
        path.write_text(str(i))
    loop.cycle()  # as an engine's first: it looks for events a last run stored and left
    assert not loop.inflow.backlog_in_store
    for path in files:
        loop.inflow.queue.put(("file", str(path), None))
    rows: list[str] = []
    loop.store.conn.set_trace_callback(rows.append)
    loop.cycle()
    seen_only = [r for r in rows if r.startswith("INSERT INTO documents(name, seen_mtime_ns")]
    assert not seen_only, "no file's seen state is written apart from its first version"
    assert loop.store.count("events") == BATCH_EVENTS * BATCHES_PER_CYCLE, "one cycle stores what it feeds"
    assert loop.inflow.queue.qsize() == 50 and not loop.inflow.has_backlog()
    loop.store.conn.set_trace_callback(None)
    loop.cycle()
    assert loop.store.count("events") == n and loop.inflow.queue.empty()
    assert loop.store.conn.execute("SELECT count(*) FROM documents WHERE version = 1 AND seen_size IS NOT NULL "
                                   "AND grp IS NOT NULL").fetchone()[0] == n
    assert [name for (name,) in loop.store.conn.execute("SELECT name FROM events ORDER BY id")] == [str(p) for p in files]


def test_intake_room_is_one_batch_only_while_the_cycle_feeds_a_burst_and_the_queue_is_less_than_half_full(parts):
    """What ``Inflow.room`` lets a cycle store before the generators' next batch: that batch (less what the
    backlog holds) while it feeds them; all that waits, up to STORE_PER_CYCLE, when it feeds none, while a
    backlog waits in the store, and once the intake queue is more than half full (a huge burst spills into
    the store)."""
    inflow = parts.inflow
    inflow.queue = queue.Queue(maxsize=40)
    inflow.next_batch(1)  # as an engine's first cycle: nothing left in the store by a last run
    assert not inflow.backlog_in_store
    for i in range(10):
        inflow.queue.put(("manual", f"e{i}", None))
    assert inflow.room(True, 30) == 30 and inflow.room(False, 30) == STORE_PER_CYCLE
    inflow.store_events(parts._take_many, 4)
    assert len(inflow.backlog) == 4 and inflow.queue.qsize() == 6, "no more than the room, the rest in order"
    assert inflow.room(True, 30) == 26 and inflow.room(True, 3) == 0
    for i in range(14):
        inflow.queue.put(("manual", f"x{i}", None))
    assert inflow.room(True, 30) == 26, "half full is not past half"
    inflow.queue.put(("manual", "one more", None))
    assert inflow.room(True, 30) == STORE_PER_CYCLE
    assert inflow.store_events(parts._take_many, inflow.room(True, 30)) == 21
    inflow.backlog_in_store = True
    assert inflow.room(True, 30) == STORE_PER_CYCLE


def test_an_event_a_command_put_is_stored_in_the_next_cycle_even_behind_a_burst(parts):
    """``tinyo inject`` is answered once its event is queued: it must not wait in memory behind a burst's
    files, a batch at a time (a crash then would lose what was acknowledged). A put from another thread
    makes the next store take all that waits, once."""
    inflow = parts.inflow
    inflow.queue = queue.Queue(maxsize=400)
    inflow.next_batch(1)
    for i in range(100):
        inflow.queue.put(("manual", f"file{i}", None))  # a burst queued as the watcher queues it
    assert inflow.room(True, 30) == 30
    sender = threading.Thread(target=inflow.put, args=(("manual", "asked", None), None))
    sender.start()
    sender.join()
    assert inflow.room(True, 30) == STORE_PER_CYCLE
    assert inflow.store_events(parts._take_many, STORE_PER_CYCLE) == 101 and inflow.queue.empty()
    assert inflow.room(True, 30) == 0, "once: the burst after it is stored a batch at a time again"


def test_intake_coalesces_a_burst_on_one_file_into_one_stored_event(parts, tmp_path):
    loop = parts
    path = tmp_path / "a.csv"
    path.write_text("1")
    for _ in range(3):
        loop.inflow.queue.put(("file", str(path), None))
    loop.inflow.queue.put(("manual", "by hand", None))
    stored = loop.inflow.store_events(loop._take_many)
    assert stored == 2
    batch = loop.inflow.next_batch(10)
    assert [(source, name) for _, source, name, *_ in batch] == [("file", str(path)), ("manual", "by hand")]
    path.write_text("1")  # the same content again: no new event
    loop.inflow.queue.put(("file", str(path), None))
    assert loop.inflow.store_events(loop._take_many) == 0


def _cycle(loop: Loop) -> list[tuple[str, ...]]:
    """Settle, dispatch and release as a cycle ends; the facts it published, as (kind, state, previous) for a state
    fact, (kind, first state) for a registration, (kind, targets given a new version) for a run's end."""
    loop.published.clear()
    _ready_tasks(loop)
    loop.outbox.release()
    return [(e.kind, e.state, e.previous) if isinstance(e, ev.DESStateChanged) else (e.kind, e.state)
            if isinstance(e, ev.DESRegistered) else (e.kind, e.made) if isinstance(e, ev.OpFinished) else (e.kind,)
            for e in loop.published if not isinstance(e, ev.GroupsChanged)]


def test_each_state_change_of_a_des_is_told_once(parts):
    """Ready as it is registered: its registration tells its first state, queued (no state fact beside it);
    ready later: one state fact, queued (not stale then queued); started and done: the run facts tell running
    and ok (and the run's end its target's new version), with no state or document fact beside them; a state
    the run facts do not tell (queued again because a dep changed while it ran, a retry) has its state fact,
    from the state the run facts told."""
    loop = parts
    des = _des(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    assert _cycle(loop) == [("des_registered", "queued"), ("document_updated",)]
    assert loop.graph.nodes[des.id].reason == "queued: never built"
    (run_id,) = loop.runbook.open
    loop.runbook.on_message("w1", "start", run_id, ("w1", loop.clock.time()))
    assert _cycle(loop) == [("op_started",)]
    loop.runbook.on_message("w1", "done", run_id, (True, None, None, None, 0.01))
    assert _cycle(loop) == [("op_finished", ("clean",))]
    assert loop.graph.nodes[des.id].state == "ok"

    loop.documents.bump("raw", by="event")  # a new version: queued again, from ok
    assert _cycle(loop) == [("document_updated",), ("des_state", "queued", "ok")]
    (run_id,) = loop.runbook.open
    loop.runbook.on_message("w1", "start", run_id, ("w1", loop.clock.time()))
    loop.documents.bump("raw", by="event")  # changed again while it runs
    loop.runbook.on_message("w1", "done", run_id, (True, None, None, None, 0.01))
    assert _cycle(loop) == [("op_started",), ("document_updated",), ("op_finished", ("clean",)),
                            ("des_state", "queued", "ok")]
    assert "dep changed" in loop.graph.nodes[des.id].reason

    (run_id,) = loop.runbook.open
    _report(loop, run_id, ok=False, error="boom")
    facts = _cycle(loop)
    assert facts == [("op_started",), ("op_failed",), ("des_state", "retry", "running")]
    assert loop.runbook.told == {}


def test_a_ran_report_is_taken_in_as_its_start_then_its_outcome(parts):
    """A process worker sends a fast op's start with its outcome (``ran``): the run facts, the DES's state and
    the run's row are those a start and a done would give, with the worker's start time and duration."""
    loop = parts
    des = _des(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    _cycle(loop)
    (run_id,) = loop.runbook.open
    start = loop.clock.time() - 0.5
    loop.runbook.on_reports("w2", [("ran", run_id, ("w2", start, True, None, None, "'made'", 0.25))])
    assert _cycle(loop) == [("op_started",), ("op_finished", ("clean",))]
    facts = [e for e in loop.published if isinstance(e, (ev.OpStarted, ev.OpFinished))]
    assert [(e.run_id, e.worker) for e in facts] == [(run_id, "w2")] * 2
    assert (facts[1].duration, facts[1].result) == (0.25, "'made'")
    assert loop.graph.nodes[des.id].state == "ok" and not loop.runbook.open
    loop._commit_and_publish([], trim=False)
    row = loop.store.conn.execute("SELECT status, worker, start FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert tuple(row) == ("ok", "w2", start)


def test_a_run_reported_done_without_its_start_is_told_running_first(parts):
    """A run whose start was never reported (one an executor held across a restart and reports finished):
    its DES was last told queued, so a state fact moves it to running before OpFinished tells ok, and a
    reader applying the run facts' moves (queued -> running -> ok) counts it right."""
    loop = parts
    des = _des(loop, ["raw"], ["clean"])
    loop.documents.bump("raw", by="event")
    _cycle(loop)
    (run_id,) = loop.runbook.open
    loop.runbook.on_message("w1", "done", run_id, (True, None, None, None, 0.01))
    assert _cycle(loop) == [("des_state", "running", "queued"), ("op_finished", ("clean",))]
    assert loop.graph.nodes[des.id].state == "ok"


def test_a_cycle_feeds_a_backlog_to_the_generators_in_several_batches_and_commits_once(parts, monkeypatch):
    """Under a backlog one commit covers several batches of ``maxevents`` (each still its own generator call):
    the pages a commit rewrites are written once for all of them. Each commit that processes events writes
    one ``processed`` row, so one row covering every batch says one commit did."""
    from tinyo.core import loop as loop_module
    from tinyo.core.loop import BATCHES_PER_CYCLE

    monkeypatch.setattr(loop_module, "BACKLOG_BUDGET", 3600.0)  # the batch bounds, not this machine's speed
    loop = parts
    size = loop.config.batch_events
    calls: list[int] = []
    run = loop.generators.run
    loop.generators.run = lambda events, take_over: calls.append(len(events)) or run(events, take_over)
    for i in range(3 * size):
        loop.inflow.own.append(("manual", f"e{i}", None))
    loop.cycle()
    assert calls == [size] * 3, "one generator call per batch, maxevents each"
    assert loop.store.pending_events() == 0
    rows = loop.store.conn.execute("SELECT first_id, last_id FROM processed").fetchall()
    assert rows == [(1, 3 * size)], "one commit for the three batches"
    # a longer backlog: a cycle takes no more than its bound, the next cycle goes on
    for i in range((BATCHES_PER_CYCLE + 2) * size):
        loop.inflow.own.append(("manual", f"more{i}", None))
    calls.clear()
    loop.cycle()
    assert calls == [size] * BATCHES_PER_CYCLE and loop.store.pending_events() == 2 * size
    while loop.store.pending_events():
        loop.cycle()
    assert sum(calls) == (BATCHES_PER_CYCLE + 2) * size
    # the time bound: once a cycle has spent it, the batches after wait for the next cycle
    monkeypatch.setattr(loop_module, "BACKLOG_BUDGET", 0.0)
    for i in range(2 * size):
        loop.inflow.own.append(("manual", f"late{i}", None))
    calls.clear()
    loop.cycle()
    assert calls == [size] and loop.store.pending_events() == size


def test_a_cycle_feeds_one_batch_only_while_many_des_wait_for_a_worker(parts, monkeypatch):
    """Once READY_FOR_MORE DES wait for a worker the engine is ahead of the workers: a cycle feeds one batch
    and commits, as it always did, instead of filling the ready queue further."""
    from tinyo.core import loop as loop_module
    from tinyo.core.loop import READY_FOR_MORE

    monkeypatch.setattr(loop_module, "BACKLOG_BUDGET", 3600.0)
    loop = parts
    size = loop.config.batch_events
    calls: list[int] = []
    run = loop.generators.run
    loop.generators.run = lambda events, take_over: calls.append(len(events)) or run(events, take_over)
    loop.dispatch.ready.extend(f"waiting{i}" for i in range(READY_FOR_MORE))  # no executor here: they stay
    for i in range(3 * size):
        loop.inflow.own.append(("manual", f"e{i}", None))
    loop.cycle()
    assert calls == [size]
    assert loop.store.pending_events() == 2 * size
    loop.dispatch.ready.clear()
    loop.cycle()
    assert calls == [size] * 3 and loop.store.pending_events() == 0


def test_a_recipe_s_own_maxevents_is_the_most_events_a_cycle_feeds_before_it_dispatches(tmp_path, monkeypatch):
    """SPEC: ``maxevents`` is the most events taken in one cycle before ready work is dispatched. Several
    batches per commit are the engine's choice only when the recipe leaves ``maxevents`` unset."""
    from tinyo.core import loop as loop_module

    monkeypatch.setattr(loop_module, "BACKLOG_BUDGET", 3600.0)
    loop = wire_loop(tmp_path, RECIPE.replace("retries=2,", "retries=2, maxevents=7,"))
    store = loop.store
    try:
        calls: list[int] = []
        run = loop.generators.run
        loop.generators.run = lambda events, take_over: calls.append(len(events)) or run(events, take_over)
        for i in range(30):
            loop.inflow.own.append(("manual", f"e{i}", None))
        loop.cycle()
        assert calls == [7] and store.pending_events() == 23
        commits = store.conn.execute("SELECT count(*) FROM processed").fetchone()[0]
        while store.pending_events():
            loop.cycle()
        assert calls == [7, 7, 7, 7, 2]
        assert store.conn.execute("SELECT count(*) FROM processed").fetchone()[0] == commits + 4
    finally:
        store.close()


def test_eviction_drops_the_documents_of_the_des_it_drops_and_sweeps_what_no_des_names(parts, monkeypatch):
    """An eviction drops the up-to-date DES with the cached facts of their documents, not those of a DES that
    stays; cached facts no DES names (lookups for events and queries) are swept once they outnumber the rest.
    What was dropped is read back from the state file."""
    monkeypatch.setattr(dag, "EVICT_MIN", 1)
    monkeypatch.setattr(dag, "EVICT_GROWTH", 0.0)
    loop = parts
    built = [_des(loop, [f"in{i}"], [f"out{i}"]) for i in range(3)]
    waits = [_des(loop, [f"never{i}"], [f"waits{i}"]) for i in range(3)]  # the hot part: more than what goes
    hot = {f"never{i}" for i in range(3)} | {f"waits{i}" for i in range(3)}
    for i in range(3):
        loop.documents.bump(f"in{i}", by="event")
    tasks = _ready_tasks(loop)
    loop.runbook.on_reports("w1", [m for t in tasks for m in (("start", t.run_id, ("w1", 1.0)),
                                                              ("done", t.run_id, (True, None, None, None, 0.1)))])
    loop._commit_and_publish([], trim=False)
    graph = loop.graph

    def cached() -> set[str]:
        return set(graph.versions) | set(graph.producer) | set(graph.consumers)

    assert graph.evict() == len(built)
    assert set(graph.nodes) == {d.id for d in waits}
    assert cached() == hot, "the dropped DES's documents went with them, the rest stayed"
    orphans = [f"asked{i}" for i in range(30)]
    for name in orphans:
        assert graph.version(name) is None
    assert graph.evict() == 0
    assert cached() == hot, "looked-up names no DES reads or makes were swept"
    assert [graph.version(f"out{i}") for i in range(3)] == [1, 1, 1], "read back from the state file"
    assert graph.node(built[0].id).state == "ok" and graph.readers("in1") == {built[1].id}
