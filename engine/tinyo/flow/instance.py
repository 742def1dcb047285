"""Provides the life of one thread-mode step instance: open, read chunks, process, route, finish."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import FlowError, RowFailure, Stopped

if TYPE_CHECKING:
    from .base import Step
    from .channel import Inbox
    from .context import Row, StepContext
    from .meter import Meter
    from .plan import RunnerPort as Runner
    from .plan import StepDef
    from .routing import Outlet

class Instance:
    """One running copy of a step: its context, input buffer, routes and meter."""

    __slots__ = ("spec", "index", "count", "ctx", "meter", "inbox", "outlet", "threads")

    def __init__(
        self, spec: StepDef, index: int, count: int, ctx: StepContext, meter: Meter, inbox: Inbox | None, outlet: Outlet
    ) -> None:
        self.spec = spec
        self.index = index
        self.count = count
        self.ctx = ctx
        self.meter = meter
        self.inbox = inbox
        self.outlet = outlet
        self.threads: list[Any] = []

    @property
    def where(self) -> str:
        """``flow 'f' step 's' instance i/n``."""
        return self.ctx.where


def deliver(out: Any, inst: Instance, rows: list[Row] | None) -> None:
    """Send a step's output (list, gate dict, or iterator of those) downstream, then its error rows.

    An exception raised while a lazy output is produced fails the chunk's input rows (error gate) or
    the flow, like an exception from ``process``.
    """
    outlet = inst.outlet
    if out is None:
        pass
    elif type(out) is list:
        if out:
            outlet.send("out", out)
    elif isinstance(out, dict):
        _send_gates(out, outlet)
    else:
        meter = inst.meter
        try:
            for item in out:
                if item is None:
                    continue
                if type(item) is list:
                    if item:
                        outlet.send("out", item)
                elif isinstance(item, dict):
                    _send_gates(item, outlet)
                else:
                    raise TypeError(f"yielded {type(item).__name__}; a step yields lists of rows or {{gate: rows}}")
                if inst.ctx.pending_errors:
                    outlet.send("error", inst.ctx.take_errors())
                meter.tick()
        except (Stopped, RowFailure):
            raise
        except Exception as exc:
            chunk_failed(inst, rows, exc)
    if inst.ctx.pending_errors:
        outlet.send("error", inst.ctx.take_errors())


def _send_gates(out: dict[str, Any], outlet: Outlet) -> None:
    for gate, rows in out.items():
        if rows:
            outlet.send(gate, rows if type(rows) is list else list(rows))


def chunk_failed(inst: Instance, rows: list[Row] | None, exc: Exception) -> None:
    """A whole chunk raised: each of its rows goes to the error gate, or the flow fails."""
    ctx = inst.ctx
    if ctx.error_hopped and rows:
        for row in rows:
            ctx.row_failed(row, exc)
        return
    size = f" while handling a chunk of {len(rows)} rows (first {rows[0]!r})" if rows else ""
    raise RowFailure(f"{inst.where} raised {type(exc).__name__}: {exc}{size}", "".join(traceback.format_exception(exc))) from exc


def _call_and_deliver(call: Callable[[], Any], inst: Instance, rows: list[Row] | None) -> None:
    """Run ``call`` (a step's process or finish) and deliver its output; a failure goes to the rows' error gate."""
    try:
        out = call()
    except (Stopped, RowFailure):
        raise
    except Exception as exc:
        chunk_failed(inst, rows, exc)
        out = None
    deliver(out, inst, rows)


def process_chunk(step: Step, inst: Instance, rows: list[Row]) -> None:
    """``step.process(rows)`` and deliver the output."""
    _call_and_deliver(lambda: step.process(rows), inst, rows)


def finish_step(step: Step, inst: Instance) -> None:
    """``step.finish()`` and deliver what it flushes."""
    _call_and_deliver(step.finish, inst, None)


def run_thread_instance(runner: Runner, inst: Instance) -> None:
    """The body of a thread-mode instance's thread."""
    runner.binding.apply()
    meter = inst.meter
    ctx = inst.ctx
    state = "done"
    try:
        try:
            step = inst.spec.impl.open(ctx)
        except FlowError:
            raise
        except Exception as exc:
            raise RowFailure(
                f"{inst.where} could not start ({inst.spec.impl.describe()}): {type(exc).__name__}: {exc}",
                "".join(traceback.format_exception(exc)),
            ) from exc
        try:
            meter.set_state("running")
            inbox = inst.inbox
            if inbox is None:
                meter.rows_in += 1
                process_chunk(step, inst, kickstart())
            else:
                get = inbox.get
                while True:
                    rows = get(meter)
                    if rows is None:
                        break
                    meter.rows_in += len(rows)
                    process_chunk(step, inst, rows)
                    meter.errors = ctx.errors
                    meter.tick()
            finish_step(step, inst)
        finally:
            step.close()
        inst.outlet.close()
    except Stopped:
        state = "stopped"
    except RowFailure as failure:
        state = "failed"
        runner.fail(inst, failure.message, failure.traceback_text)
    except FlowError as exc:
        state = "failed"
        runner.fail(inst, str(exc), "".join(traceback.format_exception(exc)))
    except BaseException as exc:  # a failing step must fail the run, whatever it raised
        state = "failed"
        runner.fail(inst, f"{inst.where} raised {type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)))
    finally:
        meter.errors = ctx.errors
        try:
            meter.finish(state)  # type: ignore[arg-type]
        finally:
            runner.instance_done(inst)


def kickstart() -> list[dict[str, Any]]:
    """A fresh kickstart chunk (one empty row) for a step with no incoming hop."""
    return [{}]
