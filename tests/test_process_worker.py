"""The process pool at its seam: real worker processes, their pipes, and what they report.

A worker runs short ops on the thread that reads its task pipe; its watch thread keeps, for an op that runs
long, what the engine relies on: the op's start and output while it runs, a cancel or a withdraw of the tasks
queued behind it, and its exit when the orchestrator is gone. Tasks carry their recipe path and ops only
when they differ from the last sent to that worker. Each test runs twice: with the pool's reader thread
reading the reports, and attached to a waker whose waiting thread reads them (as the engine's loop does).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tinyo.executors.prefetch import PREFETCH, PREFETCH_MAX
from tinyo.executors.process import ProcessExecutor
from tinyo.messages import Requeue, WorkerLost, WorkerReports
from tinyo.model import Config
from tinyo.waker import Waker
from tinyo.worker import Task

RECIPE = """
import os, time
from tinyo import TinyOConfig

HOLD_IMPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'hold-import')
while os.path.exists(HOLD_IMPORT):  # a worker started now stays 'starting' until the test lets it go
    time.sleep(0.005)

def hold(context):
    print('halfway', flush=True)
    flag = context['config']['flag']
    while not os.path.exists(flag):
        time.sleep(0.005)
    return 'held'

def tag(context):
    return context['config']['tag']

def say(context):
    print('said')
    return context['config']['tag']

class Unreadable(Exception):
    def __str__(self):
        raise RuntimeError('no text for this one')

def unreadable(context):
    raise Unreadable()

def chatty(context):
    print('halfway', flush=True)
    for name, line in (('flag', 'later'), ('then', None)):
        while not os.path.exists(context['config'][name]):
            time.sleep(0.005)
        if line:
            print(line, flush=True)
    return 'chatted'

config = TinyOConfig(sql_conn=':memory:', dirs=[])
"""

WAIT = 20.0
"""Seconds a test waits for a report before it fails (never reached when the pool works)."""


class Pool:
    """A real ProcessExecutor, its reports gathered in a queue; ``attached``: read by a thread waiting on a
    Waker, as the engine's loop does, instead of by the pool's reader thread."""

    def __init__(self, tmp_path: Path, workers: int, attached: bool) -> None:
        self.recipe = tmp_path / "recipe.py"
        self.recipe.write_text(RECIPE)
        self.flag = tmp_path / "flag"
        self.reports: queue.Queue[Any] = queue.Queue()
        self.executor = ProcessExecutor(str(self.recipe), workers, self.report, time.time)
        self.seen: list[tuple[str, int, Any]] = []
        """The reports read, a ``ran`` one seen as its start and its outcome."""
        self.raw: list[tuple[str, int, Any]] = []
        """The reports read, as sent."""
        self.other: list[Any] = []
        self.next_id = 1
        self.loop: threading.Thread | None = None
        self.stopping = False
        self.waker = Waker()
        self.read_on: set[str] = set()
        """The threads reports came from."""
        if attached:
            self.executor.attach(self.waker)
            self.loop = threading.Thread(target=self.wait_loop, name="the-loop", daemon=True)
            self.loop.start()

    def report(self, item: Any) -> None:
        if isinstance(item, WorkerReports) and any(kind in ("start", "done", "ran") for kind, _, _ in item.messages):
            self.read_on.add(threading.current_thread().name)
        self.reports.put(item)

    def wait_loop(self) -> None:
        while not self.stopping:
            self.waker.wait(0.05)
            self.waker.clear()

    def stop(self) -> None:
        self.flag.touch()
        self.stopping = True
        self.waker.set()
        if self.loop is not None:
            self.loop.join(10)
        self.executor.shutdown(grace=2.0)  # on this thread, as the engine's loop does once it stops waiting
        self.waker.close()

    def task(self, op: str, **config: Any) -> Task:
        run_id, self.next_id = self.next_id, self.next_id + 1
        return Task(run_id, f"des{run_id}", 1, str(self.recipe), ((f"<recipe>:{op}", Config(config)),),
                    frozenset(), frozenset([f"t{run_id}"]))

    def hold(self) -> Task:
        return self.task("hold", flag=str(self.flag))

    def run(self, task: Task) -> Any:
        """Submit ``task`` alone and wait for its outcome (its "done" report's payload)."""
        self.executor.submit([task])
        return self.wait_for("done", task.run_id)

    def wait_for(self, kind: str, run_id: int) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            for k, rid, payload in self.seen:
                if (k, rid) == (kind, run_id):
                    return payload
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind!r} for run {run_id} in {WAIT}s; saw {self.seen} and {self.other}"
            self.wait_any(left)

    def ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while not all(info.state == "idle" for info in self.executor.workers()):
            assert time.monotonic() < deadline, "the workers did not start"
            self.wait_any()

    def wait_any(self, timeout: float = 0.05) -> None:
        try:
            item = self.reports.get(timeout=timeout)
        except queue.Empty:
            return
        if isinstance(item, WorkerReports):
            self.raw += item.messages
            for kind, run_id, payload in item.messages:
                if kind == "ran":  # an op's start and outcome in one message: seen as both
                    self.seen += [("start", run_id, payload[:2]), ("done", run_id, payload[2:])]
                else:
                    self.seen.append((kind, run_id, payload))
        else:
            self.other.append(item)


@pytest.fixture(params=["reader thread", "attached"])
def pool(tmp_path: Path, request):
    def make(workers: int = 1) -> Pool:
        made = Pool(tmp_path, workers, attached=request.param == "attached")
        made.executor.start()
        made.ready()
        pools.append(made)
        return made

    pools: list[Pool] = []
    yield make
    for made in pools:
        made.stop()
        # attached: the reports were read on the thread waiting on the waker (or on the one that stopped the
        # pool, as the engine's loop does at its end), none on the pool's reader
        if made.loop is not None:
            assert "the-loop" in made.read_on and "tinyo-pool-reader" not in made.read_on
        else:
            assert made.read_on == {"tinyo-pool-reader"}


def test_a_long_op_s_start_and_output_reach_the_engine_while_it_runs(pool):
    p = pool()
    held = p.hold()
    p.executor.submit([held])
    p.wait_for("start", held.run_id)
    assert p.wait_for("out", held.run_id) == ("stdout", "halfway")
    assert ("done", held.run_id) not in [(k, r) for k, r, _ in p.seen]  # still running: it waits for the flag
    assert held.run_id in p.executor.running()
    p.flag.touch()
    assert p.wait_for("done", held.run_id)[:4] == (True, None, None, "'held'")


def test_a_fast_op_s_start_goes_with_its_outcome_and_one_that_prints_sends_its_start_first(pool):
    p = pool()
    before = time.time()
    fast, printing, held = p.task("tag", tag="x"), p.task("say", tag="y"), p.hold()
    for task in (fast, printing):
        p.run(task)
    p.executor.submit([held])
    p.wait_for("start", held.run_id)
    p.flag.touch()
    p.wait_for("done", held.run_id)
    kinds = {run_id: [kind for kind, rid, _ in p.raw if rid == run_id] for run_id in (fast.run_id, printing.run_id,
                                                                                        held.run_id)}
    assert kinds == {fast.run_id: ["ran"], printing.run_id: ["start", "out", "done"],
                     held.run_id: ["start", "out", "done"]}
    ran = next(payload for kind, rid, payload in p.raw if rid == fast.run_id)
    worker, start, ok, error, tb, result, duration = ran
    assert (worker, ok, error, tb, result) == ("w1", True, None, None, "'x'")
    assert before <= start <= time.time() and 0 <= duration < 5  # a real start time, a real duration


def test_a_withdrawn_task_s_ops_go_to_the_task_after_it_that_came_without_them(tmp_path: Path):
    # the pool sends a task's ops only when they change: handing back the task that carried them must not leave
    # the tasks sent after it without ops (at the seam: a worker process spoken to in its wire format)
    from tinyo import pipe
    from tinyo.worker_launch import Worker, popen_worker

    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE)
    flag = tmp_path / "flag"
    worker = Worker("w1")
    popen_worker(worker, str(recipe))
    seen: list[tuple[str, int, Any]] = []

    def wait_for(kind: str, run_id: int) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            for k, rid, payload in seen:
                if (k, rid) == (kind, run_id) or (kind in ("start", "done") and (k, rid) == ("ran", run_id)):
                    return payload if k == kind else (payload[:2] if kind == "start" else payload[2:])
            assert time.monotonic() < deadline, f"no {kind!r} for run {run_id}; saw {seen}"
            if pipe.wait([worker.result_conn], 0.05):
                for message in worker.result_conn.recv_all():
                    seen.extend(message)

    def ops(op: str, **config: Any) -> tuple[Any, ...]:
        return ((f"<recipe>:{op}", Config(config)),)

    def wire(run_id: int, head: Any) -> tuple[Any, ...]:
        return (run_id, f"des{run_id}", 1, frozenset(), frozenset([f"t{run_id}"]), head)

    try:
        wait_for("ready", 0)
        worker.task_conn.send(("run", [wire(1, ops("hold", flag=str(flag))), wire(2, ops("tag", tag="a")),
                                       wire(3, None)]))
        wait_for("start", 1)
        worker.task_conn.send(("withdraw", [2]))  # it carried the ops run 3 came without
        wait_for("withdrawn", 2)
        worker.task_conn.send(("run", [wire(4, ops("tag", tag="b"))]))
        worker.task_conn.send(("withdraw", [4]))  # nothing held behind it: the next task sent takes its ops
        wait_for("withdrawn", 4)
        worker.task_conn.send(("run", [wire(5, None)]))
        flag.touch()
        assert [wait_for("done", run_id)[3] for run_id in (1, 3, 5)] == ["'held'", "'a'", "'b'"]
        assert not [rid for kind, rid, _ in seen if kind in ("start", "ran", "done") and rid in (2, 4)]
    finally:
        worker.task_conn.send(("stop",))
        worker.process.wait(10)
        for conn in (worker.task_conn, worker.result_conn):
            conn.close()
        os.close(worker.stdio)


def test_a_task_cancelled_while_the_op_before_it_runs_is_never_started(pool):
    p = pool()
    held, queued, after = p.hold(), p.task("tag", tag="queued"), p.task("tag", tag="after")
    p.executor.submit([held, queued, after])
    p.wait_for("start", held.run_id)
    assert p.executor.cancel(queued.run_id)  # queued behind the running op: the worker is told, not killed
    time.sleep(0.05)  # the watch thread reads the cancel while the op runs
    p.flag.touch()
    assert p.wait_for("done", queued.run_id)[:2] == (False, "cancelled before it started")
    assert p.wait_for("done", after.run_id)[:4] == (True, None, None, "'after'")
    assert ("start", queued.run_id) not in [(k, r) for k, r, _ in p.seen]


def test_a_task_queued_behind_a_stalled_op_is_handed_back_while_it_runs(pool):
    p = pool(workers=2)
    # fast ops first: the pool then prefetches several tasks per worker, and counts an op that takes 20x
    # their mean (50 ms at least) as stalled
    warm = [p.task("tag", tag=str(i)) for i in range(30)]
    for task in warm:
        p.run(task)
    held, *queued = [p.hold(), *(p.task("tag", tag=f"q{i}") for i in range(3))]
    p.executor.submit([held, *queued])  # two per worker: one task waits behind the op that holds
    deadline = time.monotonic() + WAIT
    while not any(isinstance(o, Requeue) for o in p.other):
        assert time.monotonic() < deadline, f"nothing handed back; saw {p.seen} and {p.other}"
        p.wait_any()
    back = [t.run_id for o in p.other if isinstance(o, Requeue) for t in o.tasks]
    assert len(back) == 1 and back[0] in [t.run_id for t in queued]
    assert ("start", back[0]) not in [(k, r) for k, r, _ in p.seen]
    assert ("done", held.run_id) not in [(k, r) for k, r, _ in p.seen]  # handed back while the op still runs


def test_a_worker_exits_when_the_orchestrator_s_pipe_closes_while_an_op_runs(pool):
    p = pool()
    held = p.hold()
    p.executor.submit([held])
    p.wait_for("start", held.run_id)
    worker = p.executor._workers[0]
    pid = worker.pid
    worker.task_conn.close()  # as when the orchestrator's process is gone
    deadline = time.monotonic() + WAIT
    while not any(isinstance(o, WorkerLost) for o in p.other):
        assert time.monotonic() < deadline, "the worker did not exit"
        p.wait_any()
    lost = next(o for o in p.other if isinstance(o, WorkerLost))
    assert (lost.pid, lost.running_run_id) == (pid, held.run_id)
    assert lost.reason.endswith("exited with status 1")
    assert not p.flag.exists()  # the op was still waiting: the worker did not wait for it to end


def test_tasks_carry_their_ops_only_when_they_change_and_each_runs_its_own(pool):
    p = pool()
    tasks = [p.task("tag", tag="a"), p.task("tag", tag="a"), p.task("tag", tag="b"), p.task("tag", tag="a")]
    for task in tasks:  # one at a time, so each is its own message
        p.run(task)
    p.executor.submit(tasks_two := [p.task("tag", tag="b"), p.task("tag", tag="b"), p.task("tag", tag="c")])
    results = [p.wait_for("done", t.run_id)[3] for t in (*tasks, *tasks_two)]
    assert results == ["'a'", "'a'", "'b'", "'a'", "'b'", "'b'", "'c'"]


def test_a_respawned_worker_is_sent_the_ops_its_predecessor_already_had(pool):
    p = pool()
    first = p.task("tag", tag="x")
    p.run(first)
    pid = p.executor._workers[0].pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while not any(isinstance(o, WorkerLost) for o in p.other) or p.executor.workers()[0].pid == pid:
        assert time.monotonic() < deadline, "the worker was not replaced"
        p.wait_any()
    p.ready()
    again = p.task("tag", tag="x")  # the same ops as the last task the dead worker was sent
    assert p.run(again)[:4] == (True, None, None, "'x'")


def test_a_worker_runs_its_ops_on_the_thread_that_reads_its_pipe_beside_one_watch_thread(pool):
    p = pool()
    task = p.task("tag", tag="x")
    p.run(task)
    pid = p.executor._workers[0].pid
    names = sorted((Path(f"/proc/{pid}/task") / tid / "comm").read_text().strip()
                   for tid in os.listdir(f"/proc/{pid}/task"))
    assert len(names) == 2, names  # no receiver or sender thread handing each task and report over


def test_a_task_and_a_run_context_made_by_their_own_init_stay_frozen_equal_picklable_dataclasses():
    # both have an __init__ of their own (made per op run); they must stay the dataclasses they were
    import dataclasses
    import pickle

    from tinyo.runtime import RunContext

    ops = (("<recipe>:tag", Config({"tag": "x"})),)
    task = Task(7, "des7", 2, "/r.py", ops, frozenset({"a"}), frozenset({"b"}))
    same = Task(run_id=7, des_id="des7", attempt=2, recipe_path="/r.py", ops=ops, deps=frozenset({"a"}),
                targs=frozenset({"b"}))
    assert task == same and hash(task) == hash(same) and pickle.loads(pickle.dumps(task)) == task
    assert [f.name for f in dataclasses.fields(task)] == ["run_id", "des_id", "attempt", "recipe_path", "ops",
                                                          "deps", "targs"]
    assert (task.run_id, task.des_id, task.attempt, task.deps, task.targs) == (7, "des7", 2, {"a"}, {"b"})
    assert repr(task).startswith("Task(run_id=7, des_id='des7', attempt=2,")
    assert task != dataclasses.replace(task, attempt=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.run_id = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        Task(7, "des7", 2, "/r.py", ops, frozenset())  # type: ignore[call-arg]

    ctx = RunContext(7, "des7", "w1", print)
    assert ctx == RunContext(run_id=7, des_id="des7", worker="w1", emit=print)
    assert (ctx.run_id, ctx.des_id, ctx.worker, ctx.emit) == (7, "des7", "w1", print)
    assert repr(ctx).startswith("RunContext(run_id=7, des_id='des7', worker='w1',")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.worker = "w2"  # type: ignore[misc]


def test_run_task_binds_the_run_and_its_output_for_the_op_alone_and_gives_the_thread_back_what_it_had():
    from tinyo import runtime
    from tinyo.worker import install_routers, run_task

    install_routers()
    seen: list[Any] = []

    def op(context: dict[str, Any]) -> str:
        seen.append(runtime.current_run())
        seen.append(runtime.current_run())  # made when first asked for, the same object after
        print("line one\npartial", end="")  # the partial line is sent when the op ends
        return "ok"

    reports: list[tuple[str, int, Any]] = []
    outer = runtime.RunContext(1, "outer", "w0", lambda *a: None)
    outer_sink = object()
    previous = runtime.enter(outer, outer_sink)
    try:
        task = Task(9, "des9", 1, "", (("m:op", Config({})),), frozenset({"a"}), frozenset({"b"}))
        run_task(task, {"m:op": op}.__getitem__, lambda *r: reports.append(r), "w1")
        assert runtime.current_run() is outer and runtime.capture() is outer_sink
    finally:
        runtime.leave(previous)
    assert (seen[0].run_id, seen[0].des_id, seen[0].worker) == (9, "des9", "w1") and seen[1] is seen[0]
    assert isinstance(seen[0], runtime.RunContext)
    assert [(kind, run_id) for kind, run_id, _ in reports] == [("start", 9), ("out", 9), ("out", 9), ("done", 9)]
    assert [payload for kind, _, payload in reports if kind == "out"] == [("stdout", "line one"), ("stdout", "partial")]
    assert reports[-1][2][:4] == (True, None, None, "'ok'")


def test_tasks_sent_one_at_a_time_all_go_to_the_same_worker_and_two_at_once_to_both(pool):
    # a chain's links go one at a time: the worker the last link left warm takes the next (ties go to the first
    # least-loaded worker, not round robin); tasks sent together still spread over the idle workers
    p = pool(2)
    chain = [p.task("tag", tag=str(i)) for i in range(6)]
    for task in chain:
        p.run(task)
    assert [p.wait_for("start", t.run_id)[0] for t in chain] == ["w1"] * 6
    both = [p.hold(), p.hold()]
    p.executor.submit(both)
    assert sorted(p.wait_for("start", t.run_id)[0] for t in both) == ["w1", "w2"]
    p.flag.touch()
    for task in both:
        assert p.wait_for("done", task.run_id)[0] is True


def test_a_task_goes_to_a_ready_worker_before_an_idle_one_still_starting(pool):
    p = pool(2)
    hold = p.recipe.with_name("hold-import")
    hold.touch()  # the replacement of w1, below, imports the recipe until this is gone
    pid = p.executor._workers[0].pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while p.executor.workers()[0].pid in (pid, None) or p.executor.workers()[0].state != "starting":
        assert time.monotonic() < deadline, "w1 was not replaced"
        p.wait_any()
    tasks = [p.task("tag", tag=str(i)) for i in range(3)]
    for task in tasks:  # one at a time: w1 and w2 both hold none, and only w2 can run one now
        p.executor.submit([task])
        assert p.wait_for("start", task.run_id)[0] == "w2"
        p.wait_for("done", task.run_id)
    hold.unlink()
    p.ready()
    again = p.task("tag", tag="warm")
    assert p.run(again)[3] == "'warm'"


def test_a_worker_holds_a_few_milliseconds_of_fast_ops_and_one_slow_op_at_a_time(pool):
    # a report then carries many outcomes, so the engine runs one cycle for many files; one slow op brings the
    # worker back to a task at a time (what waits behind it could run elsewhere)
    p = pool(1)
    assert p.executor.free_slots() == 1  # no op seen yet: taken as slow
    for i in range(40):  # one at a time: each outcome moves the pool's mean op time
        task = p.task("tag", tag=str(i))
        p.run(task)
    held = p.executor.free_slots()
    assert PREFETCH < held <= PREFETCH_MAX, held
    slow = p.hold()
    p.executor.submit([slow])
    p.wait_for("start", slow.run_id)
    time.sleep(0.1)
    p.flag.touch()
    p.wait_for("done", slow.run_id)
    assert p.executor.free_slots() == 1


def test_a_worker_holds_five_milliseconds_of_fast_ops_between_its_bounds_and_one_slow_op():
    from tinyo.executors.prefetch import FAST_OP, QUEUED_WORK, tasks_held

    assert tasks_held(1.0) == tasks_held(FAST_OP) == 1
    assert tasks_held(FAST_OP / 2) == PREFETCH  # 1 ms ops: 5 of them would be fewer than the least held
    assert tasks_held(QUEUED_WORK / 100) == 100
    assert tasks_held(1e-6) == tasks_held(0.0) == PREFETCH_MAX


def test_a_worker_fed_one_task_at_a_time_runs_each_once_whether_it_comes_early_on_time_or_late(pool):
    # a chain's worker runs out after each link and waits for the next: a task that comes at once, soon or
    # late (and a way of waiting that depends on the gap, as one tried for the hand-over's wake-up did) is
    # each run once, in order
    p = pool()
    tasks = [p.task("tag", tag=str(i)) for i in range(120)]
    gaps = [0.0] * 60 + [0.0002, 0.0, 0.002, 0.0001, 0.0006, 0.0] * 10
    for i, (task, gap) in enumerate(zip(tasks, gaps)):
        assert p.run(task)[:4] == (True, None, None, repr(str(i)))  # its own op's result (the tag, as its repr)
        time.sleep(gap)
    runs = [run_id for kind, run_id, _ in p.raw if kind in ("ran", "done")]
    assert runs == [t.run_id for t in tasks]


def test_the_reports_due_in_a_moment_are_those_of_workers_holding_fast_ops_none_stalled(tmp_path: Path):
    # what the loop, woken by one worker's report alone, waits a few milliseconds for (``Waker.linger``): a
    # chain's link, the only op held, waits for nothing; nor does a report beside a slow or stalled op
    import threading as th

    from tinyo.executors.prefetch import FAST_OP, REPORT_DUE, reports_due, stall_limit
    from tinyo.pipe import Pipe
    from tinyo.worker_launch import Worker

    fds = [os.pipe() for _ in range(3)]
    try:
        workers = [Worker(f"w{i + 1}") for i in range(3)]
        for worker, (r, _) in zip(workers, fds):
            worker.result_conn = Pipe(r)
        lock = th.Lock()
        fast = FAST_OP / 10
        assert reports_due(workers, fast, lock) == ([], 0.0)  # none holds a task: a chain's link just ended
        workers[1].inflight[7] = None  # type: ignore[assignment]
        workers[2].inflight[8] = None  # type: ignore[assignment]
        assert reports_due(workers, fast, lock) == ([fds[1][0], fds[2][0]], REPORT_DUE)
        workers[2].started_mono[8] = time.monotonic() - 2 * stall_limit(fast)  # its op runs far longer than ops do
        workers[1].dead = True
        assert reports_due(workers, fast, lock) == ([], REPORT_DUE)
        workers[1].dead = False
        assert reports_due(workers, fast, lock) == ([fds[1][0]], REPORT_DUE)
        workers[1].eof = True  # its pipe is at its end (the worker is gone): nothing comes on it
        assert reports_due(workers, fast, lock) == ([], REPORT_DUE)
        workers[1].eof = False
        workers[1].result_conn = Pipe(-1)  # closed (the worker being replaced): no descriptor to wait on
        assert reports_due(workers, fast, lock) == ([], REPORT_DUE)
        workers[1].result_conn = Pipe(fds[1][0])
        assert reports_due(workers, FAST_OP, lock) == ([], 0.0)  # slow ops: a worker holds one, reported when done
    finally:
        for r, w in fds:
            os.close(r)
            os.close(w)


def test_an_attached_pool_gives_the_loop_s_wake_up_the_reports_it_may_wait_for(tmp_path: Path):
    # the loop, woken by one report alone, lingers only for what this pool says is due: attached, the waker
    # asks it; the pool's own reader thread (not attached) leaves the waker alone
    from tinyo.executors.prefetch import NONE_DUE

    attached = Pool(tmp_path, 2, attached=True)
    try:
        assert attached.waker.linger is not None
        assert attached.waker.linger() == NONE_DUE  # no worker holds a task
    finally:
        attached.stop()
    plain = Pool(tmp_path, 2, attached=False)
    try:
        assert plain.waker.linger is None
    finally:
        plain.stop()
