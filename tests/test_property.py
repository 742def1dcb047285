"""Property tests: random document DAGs (fan-in and fan-out), random event sequences, random op
failures (with and without retries) and random restarts, checked against the engine's promises:

- after the engine goes quiet, every DES whose deps are available is up to date (its trace is the
  current dep versions) or failed with those versions; a DES that waits has a reason upstream;
- no DES ran twice for the same dep versions, unless the earlier run failed (a retry) or was
  interrupted by a stop; every run the op really executed is recorded, once;
- document versions only grow, across restarts;
- the persisted state reloads to the same in-memory state (a restart after a quiet stop runs nothing
  and evaluates every DES the same way; the offline view of the file agrees).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyo import dag
from tinyo import events as ev
from tinyo.engine import Engine
from tinyo.groups import Groups, doc_state
from tinyo.offline import load_graph
from tinyo.store import Store

from conftest import write_recipe

RECIPE = """
import json

HERE = os.path.dirname(os.path.abspath(__file__))
PLAN = json.load(open(os.path.join(HERE, 'plan.json')))
ALL = [(frozenset(d), frozenset(t)) for d, t in PLAN['des']]
FAILS = {(i, n) for i, n in PLAN['fails']}
LEDGER = os.path.join(HERE, 'ledger')

def step(context):
    i = context['config']['i']
    try:
        with open(LEDGER) as fh:
            n = sum(1 for line in fh if line.split()[0] == str(i))
    except FileNotFoundError:
        n = 0
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{i} {context['run_id']}\\n".encode())
    os.close(fd)
    time.sleep(PLAN['sleeps'][i])
    if (i, n) in FAILS:
        raise RuntimeError(f'planned failure of DES {i}, execution {n}')

def make(i):
    deps, targs = ALL[i]
    return DES(deps=deps, targs=targs, ops=[(step, Config({'i': i}))])

def downstream(doc):
    seen, frontier, out = {doc}, [doc], []
    while frontier:
        d = frontier.pop()
        for i, (deps, targs) in enumerate(ALL):
            if d in deps and i not in out:
                out.append(i)
                for t in targs:
                    if t not in seen:
                        seen.add(t)
                        frontier.append(t)
    return out

@meta_task()
def deeper(key):
    return (None, [make(i) for i in downstream(key) if key not in ALL[i][0]])

@meta_task(root=True, download=[deeper])
def root(event):
    direct = [make(i) for i, (deps, _) in enumerate(ALL) if event in deps]
    return (event, direct)

config = TinyOConfig(sql_conn=os.path.join(HERE, 'state.db'), dirs=[], max_workers=2,
                     execution=Execution.{execution}, retries={retries}, retry_delay=0.01, maxevents={maxevents})
"""


# ---------------------------------------------------------------------------- strategies


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    inputs = [f"in{k}" for k in range(draw(st.integers(1, 4)))]
    docs = list(inputs)
    des = []
    for j in range(draw(st.integers(1, 8))):
        deps = draw(st.lists(st.sampled_from(docs), min_size=1, max_size=3, unique=True))
        targs = [f"d{j}"] if draw(st.integers(0, 4)) else [f"d{j}a", f"d{j}b"]  # sometimes two targets
        des.append((sorted(deps), targs))
        docs.extend(targs)
    return inputs, des


@st.composite
def scenarios(draw: st.DrawFn, executions: list[str]) -> dict[str, Any]:
    inputs, des = draw(dags())
    step = st.one_of(
        st.tuples(st.just("inject"), st.sampled_from(inputs), st.sampled_from(["quiet", "now", "soon"])),
        st.tuples(st.just("restart"), st.booleans(), st.sampled_from([0.0, 5.0])),  # (restart, quiet first, grace)
        st.tuples(st.just("crash"), st.sampled_from(inputs), st.floats(0.0, 0.03)),  # inject, wait, stop at once
    )
    steps = draw(st.lists(step, min_size=1, max_size=8))
    fails = draw(st.lists(st.tuples(st.integers(0, len(des) - 1), st.integers(0, 2)), max_size=10, unique=True))
    sleeps = draw(st.lists(st.sampled_from([0.0, 0.01, 0.03]), min_size=len(des), max_size=len(des)))
    return {
        "inputs": inputs, "des": des, "steps": steps, "fails": sorted(fails), "sleeps": sleeps,
        "retries": draw(st.sampled_from([0, 0, 1])), "maxevents": draw(st.integers(1, 5)),
        "execution": draw(st.sampled_from(executions)),
        "evict": draw(st.booleans()),
    }


# ---------------------------------------------------------------------------- running


class Run:
    """Engines started one after another on one state file, with every bus event kept."""

    def __init__(self, folder: Path, scenario: dict[str, Any]) -> None:
        self.folder = folder
        self.scenario = scenario
        (folder / "plan.json").write_text(json.dumps({"des": scenario["des"], "fails": scenario["fails"],
                                                      "sleeps": scenario["sleeps"]}))
        self.recipe = write_recipe(folder, RECIPE, execution=scenario["execution"], retries=scenario["retries"],
                                   maxevents=scenario["maxevents"])
        self.events: list[ev.BusEvent] = []
        self.engine: Engine | None = None
        self.lock = threading.Lock()
        self.generation = 0

    def _record(self, event: ev.BusEvent) -> None:
        with self.lock:
            self.events.append(event)

    def start(self) -> Engine:
        engine = Engine.from_path(self.recipe)
        engine.bus.subscribe(self._record)
        engine.start()
        assert engine.fatal is None, engine.fatal
        self.engine = engine
        self.generation += 1
        return engine

    def stop(self, grace: float = 5.0) -> None:
        assert self.engine is not None
        self.engine.stop(timeout=grace)
        assert self.engine.fatal is None, self.engine.fatal
        self.engine = None

    def quiet(self, timeout: float = 20.0, hold: float = 0.08) -> None:
        engine = self.engine
        assert engine is not None
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        while time.monotonic() < deadline:
            since = engine.idle_since
            if since is not None and time.monotonic() - max(since, start) >= hold:
                return
            time.sleep(0.01)
        raise AssertionError(f"the engine did not go quiet; stats {engine.stats()}")

    def of(self, kind: type) -> list[Any]:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def snapshot(engine: Engine) -> dict[str, Any]:
    """The engine's in-memory document DAG, read on its own thread."""

    def read() -> dict[str, Any]:
        # every DES and document the engine knows, whether it is in memory or only in the store
        # (looking one up brings it back, as any event touching it would)
        graph = engine.graph
        ids = [row.id for row in engine.store.load_des()]
        names = [name for name, *_ in engine.store.all_names()]
        nodes = {nid: graph.node(nid) for nid in ids}
        # the group counts the engine keeps move by move, beside a recount of every stored document
        recount = Groups()
        for name, pattern, version, producer in engine.store.all_names():
            node = nodes.get(producer) if producer is not None else None
            recount.join(name, doc_state(node.state if node is not None else None, version is not None)
                         if producer is None or node is not None else "up to date", pattern)
        return {
            "groups": engine.groups.summaries(),
            "recounted groups": recount.summaries(),
            "versions": {d: v for d in names if (v := graph.version(d)) is not None},
            "nodes": {
                nid: (frozenset(n.deps), frozenset(n.targs), n.trace, n.failed_trace, n.failed_state, n.forced,
                      n.state)
                for nid, n in nodes.items() if n is not None
            },
        }

    return engine.call(read)


# ---------------------------------------------------------------------------- checks


def check_quiet_state(snap: dict[str, Any]) -> None:
    assert snap["groups"] == snap["recounted groups"], "the group counts kept move by move differ from a recount"
    versions = snap["versions"]
    nodes = snap["nodes"]
    producer = {t: nid for nid, node in nodes.items() for t in node[1]}
    for nid, (deps, targs, trace, failed_trace, failed_state, forced, state) in nodes.items():
        assert not forced, f"{nid}: still forced after going quiet"
        current = {d: versions[d] for d in deps if d in versions}
        available = len(current) == len(deps) and all(
            nodes[producer[d]][6] == "ok" for d in deps if d in producer)
        if available:
            assert state in ("ok", "failed"), f"{nid}: deps available but state {state}"
            if state == "ok":
                assert trace == current, f"{nid}: ok but built from {trace}, deps now {current}"
                assert all(t in versions for t in targs), f"{nid}: ok but a target has no version"
            else:
                assert failed_state == "failed" and failed_trace == current
        else:
            assert state == "waiting", f"{nid}: deps not available but state {state}"


def check_runs(run: Run) -> None:
    store = Store(str(run.folder / "state.db"), lock=False)
    try:
        rows = store.conn.execute("SELECT id, des_id, attempt, status, dep_versions FROM runs ORDER BY id").fetchall()
    finally:
        store.close()
    by_des: dict[str, list[tuple[int, int, str, dict[str, int]]]] = defaultdict(list)
    for run_id, des_id, attempt, status, dep_versions in rows:
        assert status in ("ok", "failed", "interrupted"), (run_id, status)
        by_des[des_id].append((run_id, attempt, status, json.loads(dep_versions)))
    for des_id, history in by_des.items():
        for k, (run_id, attempt, status, deps) in enumerate(history):
            for prev_id, prev_attempt, prev_status, prev_deps in history[:k]:
                if prev_deps != deps:
                    continue
                retry = prev_status == "failed" and attempt == prev_attempt + 1
                assert prev_status == "interrupted" or retry, \
                    f"DES {des_id} ran again (run {run_id}) with the dep versions of run {prev_id} ({prev_status})"
    ledger = run.folder / "ledger"
    executed = [int(line.split()[1]) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    assert len(executed) == len(set(executed)), "a run id was executed twice"
    statuses = {r[0]: r[3] for r in rows}
    assert set(executed) <= set(statuses), "an op ran for a run the store does not know"
    finished = {rid for rid, s in statuses.items() if s in ("ok", "failed")}
    assert finished <= set(executed), f"runs stored as finished that never ran: {sorted(finished - set(executed))}"


def check_versions_grow(run: Run) -> None:
    last: dict[str, int] = {}
    with run.lock:
        told = [e for e in ev.unfold(run.events) if type(e) is ev.DocumentUpdated]
    for event in told:
        assert event.version > last.get(event.name, 0), f"{event.name}: version {event.version} after {last[event.name]}"
        last[event.name] = event.version


def check_no_event_lost(run: Run, scenario: dict[str, Any]) -> None:
    store = Store(str(run.folder / "state.db"), lock=False)
    try:
        stored = Counter(name for (name,) in store.conn.execute("SELECT name FROM events WHERE source = 'manual'"))
        pending = store.pending_events()
    finally:
        store.close()
    injected = Counter(arg for kind, arg, _ in scenario["steps"] if kind in ("inject", "crash"))
    assert stored == injected, f"injected {dict(injected)} but the store holds {dict(stored)}"
    assert pending == 0


def play(scenario: dict[str, Any]) -> None:
    # with "evict", the engine drops every up-to-date DES and cached fact from memory after every commit,
    # so every later look goes to the store: the promises must hold the same
    saved = dag.EVICT_MIN, dag.EVICT_GROWTH
    if scenario.get("evict"):
        dag.EVICT_MIN, dag.EVICT_GROWTH = 1, 0.0
    try:
        _play(scenario)
    finally:
        dag.EVICT_MIN, dag.EVICT_GROWTH = saved


def _play(scenario: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), scenario)
        engine = run.start()
        try:
            for kind, arg, flag in scenario["steps"]:  # flag: what to wait for (inject), grace (restart)
                if kind == "inject":
                    engine.inject(arg)
                    if flag == "quiet":
                        run.quiet()
                    elif flag == "soon":  # let ops start, so a restart next may interrupt them
                        time.sleep(0.015)
                    continue
                if kind == "crash":
                    engine.inject(arg)
                    time.sleep(flag)
                    kind, arg, flag = "restart", False, 0.0
                # restart
                before = None
                if arg:
                    run.quiet()
                    before = snapshot(engine)
                started = len(run.of(ev.OpStarted))
                run.stop(grace=flag)
                engine = run.start()
                run.quiet()
                if before is not None:
                    after = snapshot(engine)
                    assert after == before, "the state reloaded from the file differs from the one in memory"
                    assert len(run.of(ev.OpStarted)) == started, "a restart after a quiet stop ran something"
            run.quiet()
            final = snapshot(engine)
            check_quiet_state(final)
        finally:
            if run.engine is not None:
                run.stop()
        store = Store(str(run.folder / "state.db"), lock=False)
        try:
            offline = load_graph(store)
        finally:
            store.close()
        assert dict(offline.versions) == final["versions"]
        assert {nid: n.state for nid, n in offline.nodes.items()} == {nid: n[6] for nid, n in final["nodes"].items()}
        check_runs(run)
        check_versions_grow(run)
        check_no_event_lost(run, scenario)


@settings(max_examples=int(os.environ.get("TINYO_PROPERTY_EXAMPLES", 30)), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(["THREADS", "INLINE"]))
def test_random_dags_events_failures_and_restarts_keep_the_promises(scenario):
    play(scenario)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(["PROCESSES"]))
def test_random_scenarios_under_processes(scenario):
    play(scenario)
