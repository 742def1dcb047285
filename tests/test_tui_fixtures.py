"""Provides ScriptedEngine: a deterministic stand-in for tinyo's Engine that publishes scripted bus events.

Snapshot tests drive the console with it (every time comes from a ManualClock, every id is fixed), so
screenshots are byte-identical run after run. Pilot tests use the real engine instead.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tinyo import events as ev
from tinyo.clock import ManualClock
from tinyo.core.queries import name_matcher
from tinyo.engine_state import DESInfo, DocInfo, EngineStats
from tinyo.executors.base import WorkerInfo
from tinyo.groups import DES_TO_DOC, Groups
from tinyo.history import History

START = 1_730_000_000.0


@dataclass
class _Des:
    des_id: str
    deps: frozenset[str]
    targs: frozenset[str]
    ops: tuple[str, ...]
    generator: str
    event: str
    state: str = "waiting"
    reason: str = ""
    runs: list[SimpleNamespace] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    traceback: str | None = None


def des_id_of(*parts: str) -> str:
    """A stable 16-hex-digit id."""
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


class ScriptedEngine:
    """Implements the Engine surface the console uses; commands are recorded and scripted."""

    def __init__(self, name: str = "retail_dynamic_demo", timers: int = 2, clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock(START)
        self.bus = ev.Bus()
        timer_specs = [
            SimpleNamespace(name="ten_seconds", initial=datetime(2024, 10, 27), interval=timedelta(seconds=10)),
            SimpleNamespace(name="nightly", initial=datetime(2024, 10, 27), interval=timedelta(days=1)),
        ][:timers]
        self.recipe = SimpleNamespace(name=name, path=Path(f"/srv/recipes/{name}.py"),
                                      config=SimpleNamespace(max_workers=2), generators=[])
        self.timers = timer_specs
        self.calls: list[tuple[Any, ...]] = []
        self.past = History([], [])
        self.paused = False
        self.started = False
        self.stopped = False
        self._des: dict[str, _Des] = {}
        self._event_id = 0
        self._run_id = 0
        self._docs: dict[str, int] = {}
        self._groups = Groups()
        self._output: deque[ev.OpOutput] = deque(maxlen=1000)
        self._doc_states: dict[str, str] = {}
        self._producer: dict[str, str] = {}
        self._readers: dict[str, list[str]] = {}
        self._workers: dict[str, WorkerInfo] = {}

    # ------------------------------------------------------------ engine surface
    def start(self) -> None:
        self.started = True
        self.pub(ev.EngineState, state="running")
        for w in ("w1", "w2"):
            self.pub(ev.WorkerChanged, worker=w, pid=4100 + int(w[1]), state="idle")

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True
        self.pub(ev.EngineState, state="stopped")

    def inject(self, event: str) -> None:
        self.calls.append(("inject", event))

    def fire_timer(self, name: str) -> None:
        self.calls.append(("fire", name))

    def rerun(self, des_id: str, downstream: bool = False) -> None:
        self.calls.append(("rerun", des_id, downstream))

    def rerun_document(self, name: str, downstream: bool = False) -> None:
        self.calls.append(("rerun_document", name, downstream))

    def pause(self) -> None:
        self.calls.append(("pause",))

    def resume(self) -> None:
        self.calls.append(("resume",))

    def cancel(self, run_id: int) -> None:
        self.calls.append(("cancel", run_id))

    def documents(self, prefix: str | None = None, limit: int = 1000) -> list[Any]:
        return []

    def groups_summary(self) -> list[Any]:
        return self._groups.summaries()

    def _doc_info(self, name: str) -> DocInfo | None:
        if name not in self._doc_states:
            return None
        producer = self._producer.get(name)
        node = self._des.get(producer or "")
        detail = node.reason if node is not None and node.state in ("waiting", "stale", "failed") else ""
        readers = tuple(sorted(self._readers.get(name, ())))
        return DocInfo(name, self._docs.get(name), producer, self._doc_states[name], detail, readers, len(readers))

    def doc_infos(self, names: Any) -> list[DocInfo]:
        return [i for i in map(self._doc_info, names) if i is not None]

    def des_infos(self, ids: Any) -> list[DESInfo]:
        out = []
        for des_id in ids:
            d = self._des.get(des_id)
            if d is not None:
                run = d.runs[-1] if d.runs and d.state == "running" else None
                out.append(DESInfo(des_id, tuple(sorted(d.deps)), tuple(sorted(d.targs)), d.ops, d.generator, d.event,
                                   d.state, d.reason, "", run.run_id if run else None, run.worker if run else None))
        return out

    def group_members(self, pattern: str, offset: int = 0, limit: int = 200) -> list[DocInfo]:
        names = sorted(n for n in self._doc_states if self._groups.key(n) == pattern)
        return self.doc_infos(names[offset:offset + limit])

    def find_documents(self, pattern: str, limit: int = 1, regex: bool = False) -> list[str]:
        match = name_matcher(pattern, regex)  # the engine's own rule
        return [n for n in sorted(self._doc_states) if match(n)][:limit]

    def recent_output(self, limit: int = 1000) -> list[ev.OpOutput]:
        """The output lines published, as the engine keeps them (the last ``limit``)."""
        return list(self._output)[-limit:] if limit else []

    def locate(self, name: str) -> tuple[str, int] | None:
        if name not in self._doc_states:
            return None
        key = self._groups.key(name)
        return key, sorted(n for n in self._doc_states if self._groups.key(n) == key).index(name)

    def workers(self) -> list[WorkerInfo]:
        return list(self._workers.values())

    def stats(self) -> EngineStats:
        states = [d.state for d in self._des.values()]
        state = "stopped" if self.stopped else "paused" if self.paused else "running" if self.started else "starting"
        return EngineStats(state, START, self.clock.time() - START, self._event_id, 0.0, states.count("queued"),
                           states.count("running"), states.count("failed"), 0, len(self._des), len(self._docs))

    def history(self, events: int = 1000, runs: int = 1000, lines: int = 1000) -> History:
        """The recent past as a state file would give it: ``past`` (set by a test), or nothing."""
        return self.past

    def explain(self, name: str) -> str:
        node = self._des.get(name)
        if node is not None:
            if node.state == "failed":
                return f"failed: run {node.runs[-1].run_id} raised {node.runs[-1].error}"
            return f"{node.state}: {node.reason or 'all deps unchanged since the last success'}"
        if name in self._docs:
            return f"document {name} is at version {self._docs[name]}"
        return f"document {name} has no version yet"

    def des_details(self, des_id: str) -> Any:
        d = self._des[des_id]
        return SimpleNamespace(des_id=d.des_id, deps=d.deps, targs=d.targs,
                               ops=[(op, {"date": "20241027"} if "load" in op else {}) for op in d.ops],
                               state=d.state, reason=d.reason, generator=d.generator, event=d.event,
                               runs=list(d.runs), last_traceback=d.traceback, output=list(d.output))

    # ------------------------------------------------------------ scripting
    def pub(self, cls: type[ev.BusEvent], **fields: Any) -> None:
        event = cls(ts=self.clock.time(), **fields)
        self.bus.publish(event)
        if isinstance(event, ev.WorkerChanged):  # what `workers` answers, as the engine's executor would
            self._workers[event.worker] = WorkerInfo(event.worker, event.pid, event.state, None, None, None, None)
        elif isinstance(event, ev.OpOutput):
            self._output.append(event)
        elif isinstance(event, ev.OpStarted):
            old = self._workers.get(event.worker)
            self._workers[event.worker] = WorkerInfo(event.worker, old.pid if old else None, "busy", event.run_id,
                                                     event.des_id, event.op, event.ts)
        elif isinstance(event, (ev.OpFinished, ev.OpFailed, ev.OpCancelled)):
            old = self._workers.get(event.worker)
            if old is not None and old.run_id == event.run_id:
                self._workers[event.worker] = WorkerInfo(event.worker, old.pid, "idle", None, None, None, event.ts)
        groups = self._groups.take_touched()
        if groups:
            self.bus.publish(ev.GroupsChanged(ts=self.clock.time(), groups=groups))

    def _doc_to(self, name: str, state: str) -> None:
        """Count a document's state the way the engine does (the console's group counts come from it)."""
        old = self._doc_states.get(name)
        if old is None:
            self._groups.join(name, state)
        else:
            self._groups.move(name, old, state)
        self._doc_states[name] = state

    def document(self, name: str) -> None:
        """An input document gets a new version (no event row, no generators)."""
        self._docs[name] = self._docs.get(name, 0) + 1
        if name not in self._doc_states:
            self._doc_to(name, "source")
        self.pub(ev.DocumentUpdated, name=name, version=self._docs[name], by="event")

    def receive(self, name: str, source: str = "file", des: list[tuple[str, list[str], list[str], list[str]]] = (),
                error: tuple[str, str] | None = None) -> list[str]:
        """An event arrives; generators make ``des`` [(generator, deps, targs, ops)] or ``error``."""
        self._event_id += 1
        eid = self._event_id
        self._docs[name] = self._docs.get(name, 0) + 1
        if name not in self._producer:
            self._doc_to(name, "source")
        self.pub(ev.DocumentUpdated, name=name, version=self._docs[name], by="event")
        self.pub(ev.EventReceived, event_id=eid, name=name, source=source, des_count=len(des),
                 errors=1 if error else 0)
        if error is not None:
            self.pub(ev.GeneratorError, generator=error[0], event=name, error=error[1],
                     traceback=f"Traceback (most recent call last):\n  File \"recipe.py\", line 12, in {error[0]}\n{error[1]}\n")
        ids = []
        for generator, deps, targs, ops in des:
            des_id = des_id_of(generator, *deps, *targs)
            ids.append(des_id)
            node = _Des(des_id, frozenset(deps), frozenset(targs), tuple(ops), generator, name, state="new")
            self._des[des_id] = node
            for targ in targs:
                self._producer[targ] = des_id
                self._doc_to(targ, "never built")
            for dep in deps:
                self._readers.setdefault(dep, []).append(des_id)
                if dep not in self._doc_states:
                    self._doc_to(dep, "source" if dep in self._docs else "missing")
            self.pub(ev.DESRegistered, des_id=des_id, deps=node.deps, targs=node.targs, ops=node.ops,
                     generator=generator, event=name)
        return ids

    def state(self, des_id: str, state: str, reason: str = "", told: bool = True) -> None:
        """A DES moves to ``state``: a state fact, unless a run fact tells it (``told=False``: as the engine)."""
        node = self._des[des_id]
        previous = node.state
        node.state, node.reason = state, reason
        for targ in node.targs:
            self._doc_to(targ, DES_TO_DOC[state])
        if told:
            self.pub(ev.DESStateChanged, des_id=des_id, state=state, reason=reason, previous=previous,
                     targs=tuple(sorted(node.targs)))

    def told_by(self, des_id: str, fact: type[ev.BusEvent]) -> None:
        """The DES moves as the run fact ``fact`` (published next) tells it, with no state fact (as the engine)."""
        _, state, reason = ev.RUN_MOVES[fact]
        self.state(des_id, state, reason, told=False)

    def run(self, des_id: str, worker: str, lines: list[str], seconds: float = 0.4,
            error: str | None = None, finish: bool = True) -> int:
        """Run a DES on ``worker``: start, print ``lines``, then finish, fail (``error``), or stay running."""
        node = self._des[des_id]
        self._run_id += 1
        run_id = self._run_id
        self.state(des_id, "queued", "never built")
        run = SimpleNamespace(run_id=run_id, attempt=len(node.runs) + 1, worker=worker,
                              start=self.clock.time(), end=None, status="running", error=None)
        node.runs.append(run)
        self.told_by(des_id, ev.OpStarted)
        self.pub(ev.WorkerChanged, worker=worker, pid=4100 + int(worker[1]), state="busy")
        self.pub(ev.OpStarted, run_id=run_id, des_id=des_id, op=node.ops[0], worker=worker,
                 attempt=run.attempt, targs=node.targs)
        for line in lines:
            node.output.append(line)
            self.pub(ev.OpOutput, run_id=run_id, des_id=des_id, op=node.ops[0], worker=worker,
                     stream="stdout", line=line)
        if not finish:
            return run_id
        self.clock.advance(seconds)
        run.end = self.clock.time()
        if error is None:
            run.status = "ok"
            self.pub(ev.OpFinished, run_id=run_id, des_id=des_id, op=node.ops[0], worker=worker,
                     duration=seconds)
            for targ in sorted(node.targs):
                self._docs[targ] = self._docs.get(targ, 0) + 1
                self.pub(ev.DocumentUpdated, name=targ, version=self._docs[targ], by=des_id)
            self.told_by(des_id, ev.OpFinished)
        else:
            run.status, run.error = "failed", error
            node.traceback = (f"Traceback (most recent call last):\n  File \"recipe.py\", line 9, in "
                              f"{node.ops[0]}\n    raise ValueError({error!r})\nValueError: {error}")
            self.pub(ev.OpFailed, run_id=run_id, des_id=des_id, op=node.ops[0], worker=worker,
                     duration=seconds, error=f"ValueError: {error}", traceback=node.traceback)
            self.state(des_id, "failed", f"ValueError: {error}")
        self.pub(ev.WorkerChanged, worker=worker, pid=4100 + int(worker[1]), state="idle")
        return run_id


def flow_lanes(engine: ScriptedEngine) -> None:
    """An enrich flow running with two reader instances feeding one writer, one lookup miss."""
    for instance, rows in ((0, 2500), (1, 2430)):
        engine.pub(ev.FlowMetrics, run_id=7, flow="enrich_orders", flow_run="enrich_orders#7", step="read_orders",
                   instance=instance, instances=2, state="finished", rows_in=1, rows_out={"main": rows},
                   rows_per_s=0.0, buffer_fill=0.0, buffer_size=1000)
    engine.pub(ev.FlowMetrics, run_id=7, flow="enrich_orders", flow_run="enrich_orders#7", step="lookup_customer",
               instance=0, instances=1, state="running", rows_in=4100, rows_out={"main": 4090, "miss": 9},
               errors=1, rows_per_s=1830.0, buffer_fill=0.75, buffer_size=1000)
    engine.pub(ev.FlowMetrics, run_id=7, flow="enrich_orders", flow_run="enrich_orders#7", step="write_enriched",
               instance=0, instances=1, state="blocked", rows_in=4090, rows_out={"main": 4090},
               rows_per_s=1790.0, buffer_fill=1.0, buffer_size=1000)


def retail_scenario(engine: ScriptedEngine, *, fail: bool = False, leave_running: bool = False) -> dict[str, str]:
    """The retail demo: a dimensional file, two fact files, their loads and one facts transform."""
    ids: dict[str, str] = {}
    clock = engine.clock
    [ids["dim"]] = engine.receive("/tmp/data/dimensional_file.csv", des=[
        ("load_dimensional_file", ["/tmp/data/dimensional_file.csv"], ["dimensional_table"], ["load"])])
    engine.run(ids["dim"], "w1", ["Loading ['/tmp/data/dimensional_file.csv'] -> ['dimensional_table'] ..."])
    for day in ("20241027", "20241028"):
        clock.advance(1.0)
        [ids[f"fact_{day}"]] = engine.receive(f"/tmp/data/fact_file_{day}.csv", des=[
            ("load_fact_file", [f"/tmp/data/fact_file_{day}.csv"], [f"staging.fact_table_{day}"], ["load"])])
        ids[f"facts_{day}"] = engine.receive(day, source="manual", des=[
            ("create_facts", [f"staging.fact_table_{day}", "dimensional_table"], [f"facts_with_{day}"],
             ["transform"])])[0]
        engine.state(ids[f"facts_{day}"], "waiting", f"waiting on staging.fact_table_{day}")
        engine.run(ids[f"fact_{day}"], "w2", [f"Loading ['/tmp/data/fact_file_{day}.csv'] ..."])
    clock.advance(0.5)
    engine.run(ids["facts_20241027"], "w1", ["Transforming staging.fact_table_20241027, dimensional_table ..."])
    clock.advance(0.5)
    engine.receive("/tmp/data/notes.txt")
    engine.receive("/tmp/data/fact_file_2024.csv", error=("load_fact_file", "ValueError: time data '2024' does not match format '%Y%m%d'"))
    if fail:
        engine.run(ids["facts_20241028"], "w2", ["Transforming staging.fact_table_20241028 ..."],
                   error="column 'amount' is missing")
    elif leave_running:
        engine.run(ids["facts_20241028"], "w2", ["Transforming staging.fact_table_20241028 ..."], finish=False)
    return ids


def test_scripted_engine_publishes_a_consistent_story() -> None:
    """The scripted retail run publishes events the console model can fold without surprises."""
    from tinyo_tui.state import ConsoleState

    engine = ScriptedEngine()
    seen: list[ev.BusEvent] = []
    engine.bus.subscribe(seen.append)
    engine.start()
    ids = retail_scenario(engine, fail=True)
    state = ConsoleState()
    state.apply(seen)
    assert state.des[ids["facts_20241028"]].state == "failed"
    assert state.docs["facts_with_20241027"].state == "up to date"
    assert state.failed == 1 and state.running == 0


def shift_work(engine: ScriptedEngine) -> dict[str, int]:
    """Fifty seconds of two workers at work, for the run timeline and the rate sparklines.

    w1 loads a file every 4 s (3 s each; the one at ~21 s fails); w2 transforms for 8 s, fails after
    5 s, transforms for 10 s, then starts one that is still running. Events arrive with each load,
    more of them in the middle (the events/s sparkline rises and falls). Returns run ids by name.
    """
    clock = engine.clock
    runs: dict[str, int] = {}
    timeline: list[tuple[float, str, tuple[Any, ...]]] = []
    for index in range(12):
        at = 2.0 + 4.0 * index
        timeline.append((at, "start", ("w1", f"load_{index}", "load")))
        timeline.append((at + 3.0, "fail" if index == 5 else "end", ("w1", f"load_{index}", "load")))
        timeline.extend((at + 0.1 * burst, "event", (f"/srv/in/part_{index}_{burst}.csv",))
                        for burst in range(1 + min(index, 11 - index) * 2))
    for start, end, name, outcome in ((1.0, 9.0, "t_1", "end"), (10.0, 15.0, "t_2", "fail"),
                                      (17.0, 27.0, "t_3", "end"), (30.0, 36.0, "t_4", "end"),
                                      (42.0, None, "t_5", "running")):
        timeline.append((start, "start", ("w2", name, "transform")))
        if end is not None:
            timeline.append((end, outcome, ("w2", name, "transform")))
    begin = clock.time()
    started: dict[str, float] = {}
    for at, what, args in sorted(timeline, key=lambda item: item[0]):
        clock.set(begin + at)
        if what == "event":
            engine.receive(args[0])
            continue
        worker, name, op = args
        if what == "start":
            [des_id] = engine.receive(f"/srv/in/{name}.csv", des=[(f"make_{op}", [f"/srv/in/{name}.csv"],
                                                                   [f"out.{name}"], [op])])
            engine._run_id += 1
            runs[name] = engine._run_id
            started[name] = clock.time()
            engine.state(des_id, "queued", "queued: never built")
            engine.told_by(des_id, ev.OpStarted)
            engine.pub(ev.WorkerChanged, worker=worker, pid=4100 + int(worker[1]), state="busy")
            engine.pub(ev.OpStarted, run_id=runs[name], des_id=des_id, op=op, worker=worker, attempt=1,
                       targs=frozenset({f"out.{name}"}))
            continue
        des_id = des_id_of(f"make_{op}", f"/srv/in/{name}.csv", f"out.{name}")
        took = clock.time() - started[name]
        if what == "end":
            engine.told_by(des_id, ev.OpFinished)
            engine.pub(ev.OpFinished, run_id=runs[name], des_id=des_id, op=op, worker=worker, duration=took)
        else:
            engine.pub(ev.OpFailed, run_id=runs[name], des_id=des_id, op=op, worker=worker, duration=took,
                       error="OSError: disk full", traceback="Traceback (most recent call last):\nOSError: disk full")
            engine.state(des_id, "failed", "OSError: disk full")
        engine.pub(ev.WorkerChanged, worker=worker, pid=4100 + int(worker[1]), state="idle")
    clock.advance(begin + 50.0 - clock.time())
    return runs
