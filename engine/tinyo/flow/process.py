"""Provides process-mode step instances: a worker process per instance, fed chunks through pipes (``wire``).

The parent keeps two threads per instance: a *feeder* reads the instance's inbox and sends chunks
to the worker (at most ``window`` chunks ahead of the results), and a *collector* reads what the
worker sends back (output chunks per gate, then an acknowledgement with the worker's counters) and
routes it downstream like a thread-mode instance would, so back-pressure and metrics work the same
way. Samples are emitted from the parent. What the worker prints is relayed line by line to the
parent's stdout/stderr (so it reaches the orchestrator console).

Workers are started as ``python -m tinyo.flow.procworker`` (not with ``multiprocessing``, whose
daemonic pool workers may not have children), and import the step's module by name, or by file for
recipes loaded by path; hence a process-mode step function must be defined at module level.

A *lane of process steps* runs in one worker: when a process-mode step's only hop leads, without a
partition, to a process-mode step with as many instances whose only input it is, instance i of both
shares a worker, which hands the first step's chunks straight to the second. Rows between them are
never pickled, and a source such as a split CsvInput then reads its part of the file in the same
process that works on it. The parent keeps a meter per step, updated from the worker's counters.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

from ..children import child_env
from .base import FunctionStep, Step, function_name
from .binding import ThreadBinding
from .channel import Window
from .errors import ProcessModeError, Stopped
from .modules import dumps_with_modules
from .wire import decode, encode

if TYPE_CHECKING:
    from .instance import Instance
    from .plan import FlowPlan
    from .plan import RunnerPort as Runner


def process_chains(flow: FlowPlan, counts: dict[str, int]) -> list[list[tuple[str, str]]]:
    """Lanes of process steps that share a worker: ``[[(step, gate to the next), ...], ...]``,
    each at least two steps long (the last one's gate is ``""``)."""
    outgoing: dict[str, list[Any]] = {name: [] for name in flow.steps}
    incoming: dict[str, list[Any]] = {name: [] for name in flow.steps}
    for hop in flow.hops:
        outgoing[hop.source].append(hop)
        incoming[hop.target].append(hop)

    def fused_hop(name: str) -> Any:
        hops = outgoing[name]
        if len(hops) != 1:
            return None
        hop = hops[0]
        a, b = flow.steps[hop.source], flow.steps[hop.target]
        if (a.mode == b.mode == "process" and hop.partition is None and counts[a.name] == counts[b.name]
                and len(incoming[b.name]) == 1):
            return hop
        return None

    fused_into = {hop.target for name in flow.steps if (hop := fused_hop(name)) is not None}
    chains = []
    for name in flow.steps:
        if name in fused_into or fused_hop(name) is None:
            continue
        chain = []
        while (hop := fused_hop(name)) is not None:
            chain.append((name, hop.gate))
            name = hop.target
        chain.append((name, ""))
        chains.append(chain)
    return chains



def check_importable(step: Step, where: str) -> None:
    """Raise ProcessModeError unless ``step`` can be pickled and found again by a worker process."""
    functions = [step.fn] if isinstance(step, FunctionStep) else [v for v in vars(step).values() if callable(v)]
    for fn in functions:
        qual = getattr(fn, "__qualname__", "")
        if "<lambda>" in qual or "<locals>" in qual:
            raise ProcessModeError(
                f"{where} runs in processes, so its function must be importable: define "
                f"{function_name(fn)} with def at module level (lambdas and nested functions cannot be "
                "sent to a worker process)"
            )
    try:
        dumps_with_modules(step)
    except Exception as exc:
        raise ProcessModeError(
            f"{where} runs in processes, but its step ({step.describe()}) cannot be sent to a worker: "
            f"{type(exc).__name__}: {exc}. Use module-level functions and picklable settings."
        ) from exc


class ProcHandle:
    """One worker process and the pipes to it."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.proc: subprocess.Popen[bytes] | None = None
        self.to_child: Any = None
        self.from_child: Any = None
        self.stderr_tail: list[str] = []
        self._lock = threading.Lock()
        self.killed = False

    def spawn(self) -> None:
        """Start the worker with a pair of pipes for the chunk protocol."""
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        env = child_env()
        try:
            with self._lock:
                if self.killed:
                    raise Stopped()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "tinyo.flow.procworker", str(down_r), str(up_w)],
                    pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=env, close_fds=True,
                )
        finally:
            os.close(down_r)
            os.close(up_w)
        self.to_child = os.fdopen(down_w, "wb", buffering=1 << 16)
        self.from_child = os.fdopen(up_r, "rb", buffering=1 << 16)

    def send(self, message: Any) -> None:
        """Write one message and flush it."""
        pickle.dump(message, self.to_child, protocol=pickle.HIGHEST_PROTOCOL)
        self.to_child.flush()

    def abort(self) -> None:
        """Stop signal: kill the worker so that blocked pipe reads and writes return."""
        self.kill_now()

    def kill_now(self) -> None:
        """Kill the worker if it still runs."""
        with self._lock:
            self.killed = True
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def exit_reason(self) -> str:
        """Why the worker went away (exit status and the end of its stderr)."""
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = "still running"
        tail = "".join(self.stderr_tail[-20:]).rstrip()
        return f"exit status {code}" + (f"; its stderr ended with:\n{tail}" if tail else "")


def _pump(stream: Any, target: str, handle: ProcHandle, binding: ThreadBinding) -> None:
    """Relay a worker's stdout or stderr to ours, line by line."""
    binding.apply()
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        if target == "stderr":
            handle.stderr_tail.append(line)
            del handle.stderr_tail[:-50]
        out = sys.stderr if target == "stderr" else sys.stdout
        out.write(line)
        out.flush()
    stream.close()


def start_process_instance(runner: Runner, inst: Instance, chain: list[tuple[Instance, str]] | None = None) -> None:
    """Start the collector thread of a process-mode instance (it starts the worker and the feeder);
    ``chain`` lists the instances (with the gate that feeds the next) that share its worker, itself first."""
    thread = threading.Thread(target=_collector, args=(runner, inst, chain or [(inst, "")]), daemon=True,
                              name=f"flow:{runner.flow.name}:{inst.spec.name}#{inst.index}:collect")
    inst.threads.append(thread)
    thread.start()


def _member(inst: Instance, gate: str, modules: dict[str, Any]) -> dict[str, Any]:
    step_bytes, needed = dumps_with_modules(inst.spec.impl)
    modules.update(needed)
    ctx = inst.ctx
    return {
        "step": step_bytes,
        "step_name": ctx.step,
        "index": inst.index,
        "count": inst.count,
        "error_hopped": ctx.error_hopped,
        "hopped": ctx.hopped,
        "chunk_size": ctx.chunk_size,
        "has_input": ctx.has_input,
        "gate": gate,
    }


def _init_message(runner: Runner, chain: list[tuple[Instance, str]]) -> dict[str, Any]:
    modules: dict[str, Any] = {}
    members = [_member(inst, gate, modules) for inst, gate in chain]
    main = sys.modules.get("__main__")
    if "__main__" in modules:
        modules["__main__"] = getattr(main, "__file__", None)
    ctx = chain[0][0].ctx
    inst = chain[0][0]
    message = {
        "sys_path": [p if p else os.getcwd() for p in sys.path],
        "modules": modules,
        "members": members,
        "flow": ctx.flow.name,
        "run_id": ctx.flow.run_id,
        "params": dict(ctx.params),
        "variables": dict(ctx.variables),
        "services": dict(ctx.services),
    }
    try:
        pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ProcessModeError(
            f"{inst.where} runs in processes, but its parameters, variables or services cannot be sent "
            f"to a worker: {type(exc).__name__}: {exc}"
        ) from exc
    return message


def _feeder(runner: Runner, inst: Instance, handle: ProcHandle, window: Window) -> None:
    runner.binding.apply()
    meter = inst.meter
    try:
        if inst.inbox is None:
            window.acquire()
            meter.rows_in += 1
            handle.send(("rows", encode([{}])))
        else:
            get = inst.inbox.get
            while True:
                rows = get(meter)
                if rows is None:
                    break
                window.acquire()
                try:
                    handle.send(("rows", encode(rows)))
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    raise ProcessModeError(
                        f"{inst.where} runs in processes, and a row it was sent cannot be pickled: {exc}"
                    ) from exc
                meter.rows_in += len(rows)
                meter.tick()
        handle.send(("finish",))
    except Stopped:
        return
    except (BrokenPipeError, OSError, ValueError) as exc:
        if not runner.stop.is_set:
            runner.fail(inst, f"{inst.where}: lost its worker process ({exc}); {handle.exit_reason()}", "")
    except Exception as exc:
        runner.fail(inst, f"{inst.where} could not feed its worker process: {type(exc).__name__}: {exc}",
                    "".join(traceback.format_exception(exc)))


def _apply_stats(chain: list[tuple[Instance, str]], stats: list[tuple[int, dict[str, int], int, dict[str, int]]]) -> None:
    """The worker's counters of every step it runs: rows in (but the first's, counted by the feeder),
    rows out (but the last's, counted as they are routed here), errors and step counters."""
    last = len(chain) - 1
    for k, ((member, _gate), (rows_in, rows_out, errors, counters)) in enumerate(zip(chain, stats)):
        meter = member.meter
        if k > 0:
            meter.rows_in = rows_in
        if k < last:
            meter.rows_out = rows_out
        meter.errors = errors
        meter.counters = counters
        if k > 0:
            meter.tick()


def _collector(runner: Runner, inst: Instance, chain: list[tuple[Instance, str]]) -> None:
    runner.binding.apply()
    meter = inst.meter
    handle = ProcHandle(inst.where)
    state = "failed"
    feeder: threading.Thread | None = None
    try:
        runner.stop.register(handle)
        runner.processes.append(handle)
        window = Window(inst.spec.window, runner.stop)
        init = _init_message(runner, chain)
        handle.spawn()
        assert handle.proc is not None
        for stream, target in ((handle.proc.stdout, "stdout"), (handle.proc.stderr, "stderr")):
            pump = threading.Thread(target=_pump, args=(stream, target, handle, runner.binding), daemon=True,
                                    name=f"flow:{runner.flow.name}:{inst.spec.name}#{inst.index}:{target}")
            pump.start()
            inst.threads.append(pump)
        handle.send(("init", init))
        for member, _gate in chain:
            member.meter.set_state("running")
        feeder = threading.Thread(target=_feeder, args=(runner, inst, handle, window), daemon=True,
                                  name=f"flow:{runner.flow.name}:{inst.spec.name}#{inst.index}:feed")
        inst.threads.append(feeder)
        feeder.start()
        outlet = chain[-1][0].outlet
        reader = handle.from_child
        while True:
            try:
                message = pickle.load(reader)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                if runner.stop.is_set:
                    raise Stopped() from None
                runner.fail(inst, f"{inst.where}: its worker process ended unexpectedly ({type(exc).__name__}); "
                            f"{handle.exit_reason()}", "")
                return
            kind = message[0]
            if kind == "out":
                outlet.send(message[1], decode(message[2]))
            elif kind == "ack":
                _apply_stats(chain, message[1])
                window.release()
                meter.tick()
            elif kind == "done":
                _apply_stats(chain, message[1])
                break
            elif kind == "fail":
                runner.fail(chain[message[3]][0], message[1], message[2])
                return
            elif kind == "ready":
                continue
            else:
                raise ProcessModeError(f"{inst.where}: unexpected message {kind!r} from its worker process")
        outlet.close()
        if handle.proc is not None:
            handle.proc.wait(timeout=30)
        state = "done"
    except Stopped:
        state = "stopped"
    except ProcessModeError as exc:
        runner.fail(inst, str(exc), "".join(traceback.format_exception(exc)))
    except BaseException as exc:  # the run must learn of any failure of this instance
        runner.fail(inst, f"{inst.where} (process mode) raised {type(exc).__name__}: {exc}",
                    "".join(traceback.format_exception(exc)))
    finally:
        if state != "done":
            handle.kill_now()
            if handle.proc is not None:
                try:
                    handle.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    runner.fail(inst, f"{inst.where}: worker process {handle.proc.pid} did not exit after kill", "")
        if feeder is not None:
            feeder.join(30)
        for stream in (handle.to_child, handle.from_child):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # the worker is gone; the pipe's buffered bytes are moot
        for member, _gate in chain:
            try:
                member.meter.finish(state)  # type: ignore[arg-type]
            finally:
                runner.instance_done(member)
