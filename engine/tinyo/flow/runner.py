"""Provides the execution of a flow run: instances wired by bounded buffers, threads, failure and stop."""

from __future__ import annotations

import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import runtime
from .binding import ThreadBinding
from .channel import Inbox, StopSignal
from .context import FlowInfo, InstanceInfo, StepContext, Values
from .errors import FlowError
from .instance import Instance, run_thread_instance
from .meter import InstanceMetrics, Meter
from .routing import Outlet, Route

if TYPE_CHECKING:
    from .plan import FlowPlan as Flow
    from .plan import HopDef

STOP_GRACE = 10.0
"""Seconds a failed run waits for its other instances to stop before it returns anyway."""


@dataclass
class FlowRun:
    """The outcome of one run of a flow."""

    flow: str
    """The flow's name."""
    run_id: str
    """This run's id (``${flow.run_id}``)."""
    params: dict[str, Any]
    """The parameters the run used (defaults and overrides)."""
    ok: bool = False
    """True when every step finished without error."""
    result: Any = None
    """The flow result (Set Flow Result); always None when the run failed."""
    error: str | None = None
    """On failure: the message (naming step and instance) followed by the traceback text."""
    message: str | None = None
    """On failure: the one-paragraph message alone."""
    traceback: str | None = None
    """On failure: the traceback text alone."""
    failed_step: str | None = None
    """The step whose instance failed first (None for a parameter error)."""
    failed_instance: int | None = None
    """The index of the instance that failed first."""
    metrics: dict[str, list[InstanceMetrics]] = field(default_factory=dict)
    """The final metrics sample of every step instance: ``metrics[step][index]``."""
    duration: float = 0.0
    """Seconds from start to end."""
    warnings: list[str] = field(default_factory=list)
    """Things that ran but look wrong, e.g. a Lookup that matched no row (also written to stderr)."""

    def rows_in(self, step: str) -> int:
        """Rows that ``step`` received, over all its instances."""
        return sum(m.rows_in for m in self.metrics.get(step, []))

    def rows_out(self, step: str, gate: str = "out") -> int:
        """Rows that ``step`` sent through ``gate``, over all its instances."""
        return sum(m.rows_out.get(gate, 0) for m in self.metrics.get(step, []))

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"failed: {self.message}"
        return f"FlowRun({self.flow!r}, run_id={self.run_id!r}, {state}, result={self.result!r})"


class ResultHolder:
    """The flow result being set by Set Flow Result steps (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._set = False
        self._lists: dict[int, list[Any]] = {}

    def set(self, value: Any) -> None:
        """The result is ``value`` (the last call wins)."""
        with self._lock:
            self._value = value
            self._set = True

    def append(self, index: int, values: list[Any]) -> None:
        """Add to the list result; lists of instances are joined in instance order."""
        with self._lock:
            self._lists.setdefault(index, []).extend(values)

    def get(self) -> Any:
        """The result as set so far."""
        with self._lock:
            if self._set:
                return self._value
            if self._lists:
                return [v for i in sorted(self._lists) for v in self._lists[i]]
            return None


class Runner:
    """One run of a flow: builds the instances, starts them, waits, and stops them on failure."""

    def __init__(
        self,
        flow: Flow,
        info: FlowInfo,
        params: Values,
        variables: dict[str, Any],
        services: dict[str, Any],
        counts: dict[str, int],
        on_metrics: Callable[[dict[str, Any]], None] | None,
        report: bool = True,
    ) -> None:
        self.flow = flow
        self.info = info
        self.params = params
        self.variables = Values(variables, "variables")
        self.services = Values(services, "services")
        self.counts = counts
        self.binding = ThreadBinding()
        self.stop = StopSignal()
        self.result = ResultHolder()
        self.instances: list[Instance] = []
        self._cond = threading.Condition(threading.Lock())
        self._remaining = 0
        self._finished: set[int] = set()
        self.failure: tuple[Instance | None, str, str] | None = None
        self.processes: list[Any] = []
        self.sinks: list[Callable[[dict[str, Any]], None]] = [self._to_runtime] if report else []
        if on_metrics is not None:
            self.sinks.append(self._guard(on_metrics))

    # -- metrics sinks -----------------------------------------------------------------------------

    @staticmethod
    def _to_runtime(sample: dict[str, Any]) -> None:
        runtime.emit_metrics(**sample)

    def _guard(self, sink: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def guarded(sample: dict[str, Any]) -> None:
            try:
                sink(sample)
            except Exception as exc:
                self.fail(None, f"flow {self.flow.name!r}: the on_metrics callback raised {type(exc).__name__}: {exc}",
                          "".join(traceback.format_exception(exc)))

        return guarded

    # -- building ----------------------------------------------------------------------------------

    def build(self) -> None:
        """Create every instance with its inbox, routes, context and meter."""
        flow = self.flow
        incoming: dict[str, list[HopDef]] = {name: [] for name in flow.steps}
        outgoing: dict[str, list[HopDef]] = {name: [] for name in flow.steps}
        for hop in flow.hops:
            incoming[hop.target].append(hop)
            outgoing[hop.source].append(hop)
        counts = self.counts

        def lanes(hop: HopDef) -> bool:
            return hop.partition is None and counts[hop.source] == counts[hop.target]

        inboxes: dict[str, list[Inbox | None]] = {}
        slot_of: dict[int, int] = {}
        for name, hops in incoming.items():
            if not hops:
                inboxes[name] = [None] * counts[name]
                continue
            caps = []
            for slot, hop in enumerate(hops):
                slot_of[id(hop)] = slot
                caps.append(hop.buffer or flow.buffer)
            producers = sum(1 if lanes(h) else counts[h.source] for h in hops)
            inboxes[name] = [Inbox(caps, producers, self.stop) for _ in range(counts[name])]

        for name, spec in flow.steps.items():
            n = counts[name]
            hopped = frozenset(h.gate for h in outgoing[name])
            for i in range(n):
                inbox = inboxes[name][i]
                ctx = StepContext(
                    flow=self.info, step=name, instance=InstanceInfo(i, n), params=self.params,
                    variables=self.variables, services=self.services, error_hopped="error" in hopped,
                    hopped=hopped, chunk_size=flow.chunk_size, result=self.result, has_input=inbox is not None,
                )
                meter = Meter(flow=flow.name, flow_run=self.info.run_id, step=name, index=i, count=n,
                              has_input=inbox is not None, sinks=self.sinks, buffer=inbox)
                meter.counters = ctx.counters
                routes: dict[str, list[Route]] = {}
                for hop in outgoing[name]:
                    targets = [inboxes[hop.target][i]] if lanes(hop) else list(inboxes[hop.target])
                    route = Route(
                        targets,  # type: ignore[arg-type]
                        [slot_of[id(hop)]] * len(targets),
                        hop.partition,
                        f"flow {flow.name!r} hop {name!r}.{hop.gate} -> {hop.target!r}",
                    )
                    routes.setdefault(hop.gate, []).append(route)
                self.instances.append(Instance(spec, i, n, ctx, meter, inbox, Outlet(routes, meter)))

    # -- running -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every instance at once (all steps run concurrently)."""
        from .process import process_chains, start_process_instance

        self._remaining = len(self.instances)
        by_key = {(inst.spec.name, inst.index): inst for inst in self.instances}
        lanes: dict[str, list[tuple[str, str]]] = {}
        for chain in process_chains(self.flow, self.counts):
            lanes[chain[0][0]] = chain
            for name, _gate in chain[1:]:
                lanes[name] = []
        for inst in self.instances:
            chain = lanes.get(inst.spec.name)
            if chain == []:
                continue  # runs in the worker of the lane's first step
            if inst.spec.mode == "process":
                start_process_instance(self, inst, [(by_key[(name, inst.index)], gate) for name, gate in chain]
                                       if chain else None)
            else:
                thread = threading.Thread(
                    target=run_thread_instance, args=(self, inst), daemon=True,
                    name=f"flow:{self.flow.name}:{inst.spec.name}#{inst.index}",
                )
                inst.threads.append(thread)
                thread.start()

    def instance_done(self, inst: Instance) -> None:
        """Called once by every instance when it ends, however it ends."""
        with self._cond:
            if id(inst) in self._finished:
                return
            self._finished.add(id(inst))
            self._remaining -= 1
            self._cond.notify_all()

    def fail(self, inst: Instance | None, message: str, tb: str) -> None:
        """Record the first failure and stop every other instance."""
        with self._cond:
            if self.failure is None:
                self.failure = (inst, message, tb)
            self._cond.notify_all()
        self.stop.set()

    def wait(self) -> list[str]:
        """Block until every instance ended (or, after a failure, until the grace time is over).

        Returns the instances that did not stop in time.
        """
        deadline: float | None = None
        try:
            with self._cond:
                while self._remaining > 0:
                    if self.failure is not None:
                        now = time.monotonic()
                        deadline = deadline or now + STOP_GRACE
                        if now >= deadline:
                            break
                        self._cond.wait(deadline - now)
                    else:
                        self._cond.wait()
        except BaseException:
            self.fail(None, f"flow {self.flow.name!r} was interrupted", "".join(traceback.format_stack()))
            raise
        finally:
            if self.failure is not None:
                for proc in self.processes:
                    proc.kill_now()
        with self._cond:
            stuck = [inst.where for inst in self.instances if id(inst) not in self._finished]
        if not stuck:
            for inst in self.instances:
                for thread in inst.threads:
                    thread.join(STOP_GRACE)
        return stuck

    def outcome(self, started: float, stuck: list[str]) -> FlowRun:
        """The FlowRun of this run."""
        metrics: dict[str, list[InstanceMetrics]] = {name: [] for name in self.flow.steps}
        for inst in self.instances:
            metrics[inst.spec.name].append(inst.meter.final_sample)
        run = FlowRun(self.flow.name, self.info.run_id, dict(self.params), metrics=metrics,
                      duration=time.monotonic() - started)
        for name, spec in self.flow.steps.items():
            totals: dict[str, int] = {}
            for sample in metrics[name]:
                for counter, value in sample.counters.items():
                    totals[counter] = totals.get(counter, 0) + value
            warning = spec.impl.warning(totals) if totals else None
            if warning:
                run.warnings.append(f"flow {self.flow.name!r} step {name!r}: {warning}")
                print(f"warning: {run.warnings[-1]}", file=sys.stderr, flush=True)
        if self.failure is None:
            run.ok = True
            run.result = self.result.get()
            return run
        inst, message, tb = self.failure
        if stuck:
            message += f"\n(still running {STOP_GRACE:.0f}s after the stop: {', '.join(stuck)})"
        run.message = message
        run.traceback = tb
        run.error = f"{message}\n\n{tb}".rstrip()
        if inst is not None:
            run.failed_step = inst.spec.name
            run.failed_instance = inst.index
        return run


def execute(
    flow: Flow, given: Mapping[str, Any], on_metrics: Callable[[dict[str, Any]], None] | None, report: bool = True
) -> FlowRun:
    """Run ``flow`` with the ``given`` parameters (see ``Flow.run``); ``report=False`` keeps its metrics
    from ``tinyo.runtime`` (only ``on_metrics`` gets them)."""
    started = time.monotonic()
    info = FlowInfo(flow.name, uuid.uuid4().hex[:12])
    try:
        params = Values(flow.resolve_params(given), "params")
        variables = flow.compute("variables", flow.variables, params, {}, info)
        services = flow.compute("services", flow.services, params, variables, info)
        counts = {name: flow.instance_count(step, params, variables, info) for name, step in flow.steps.items()}
        if not flow.steps:
            raise FlowError(f"flow {flow.name!r} has no steps")
        runner = Runner(flow, info, params, variables, services, counts, on_metrics, report)
        runner.build()
    except FlowError as exc:
        message = str(exc)
        tb = "".join(traceback.format_exception(exc))
        return FlowRun(flow.name, info.run_id, dict(given), ok=False, error=f"{message}\n\n{tb}".rstrip(),
                       message=message, traceback=tb, duration=time.monotonic() - started)
    runner.start()
    stuck = runner.wait()
    return runner.outcome(started, stuck)
