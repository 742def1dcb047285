"""Provides the worker-process side of a process-mode step instance (``python -m tinyo.flow.procworker``).

Protocol (pickles over two pipes whose descriptors are given on the command line): the parent sends
``("init", {...})``, then ``("rows", chunk)`` any number of times, then ``("finish",)``; the worker
answers ``("ready",)``, then for every chunk its output as ``("out", gate, rows)`` messages and an
``("ack", errors)``, and at the end ``("done", errors)``. A failure is ``("fail", message, traceback)``.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any


class _PipeOutlet:
    def __init__(self, out: Any) -> None:
        self.out = out

    def send(self, gate: str, rows: list[Any]) -> None:
        if rows:
            pickle.dump(("out", gate, rows), self.out, protocol=pickle.HIGHEST_PROTOCOL)


class _NoMeter:
    def tick(self) -> None:
        """The parent samples metrics; nothing to do here."""


class _ChildInstance:
    """What ``instance.deliver`` needs: an outlet, a context, a meter and a name."""

    def __init__(self, ctx: Any, outlet: _PipeOutlet) -> None:
        self.ctx = ctx
        self.outlet = outlet
        self.meter = _NoMeter()

    @property
    def where(self) -> str:
        return f"{self.ctx.where} (worker process {os.getpid()})"


def main(argv: list[str]) -> int:
    """Serve one step instance until ``finish`` or end of input."""
    inp = os.fdopen(int(argv[1]), "rb", buffering=1 << 16)
    out = os.fdopen(int(argv[2]), "wb", buffering=1 << 16)

    def send(message: Any) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        kind, init = pickle.load(inp)
    except EOFError:
        return 0
    for path in reversed(init["sys_path"]):
        if path not in sys.path:
            sys.path.insert(0, path)
    where = f"flow {init['flow']!r} step {init['step_name']!r} instance {init['index']}/{init['count']}"
    try:
        from tinyo.flow.context import FlowInfo, InstanceInfo, StepContext
        from tinyo.flow.errors import RowFailure
        from tinyo.flow.instance import finish_step, process_chunk
        from tinyo.flow.modules import import_module_or_file, loads_with_modules

        modules = dict(init["modules"])
        main_file = modules.pop("__main__", None)
        if main_file:
            sys.modules["__main__"] = import_module_or_file("__mp_main__", main_file)
        step = loads_with_modules(init["step"], modules)
        ctx = StepContext(
            flow=FlowInfo(init["flow"], init["run_id"]), step=init["step_name"],
            instance=InstanceInfo(init["index"], init["count"]), params=init["params"],
            variables=init["variables"], services=init["services"], error_hopped=init["error_hopped"],
            hopped=init["hopped"], chunk_size=init["chunk_size"], result=None,
            has_input=init["has_input"],
        )
        inst = _ChildInstance(ctx, _PipeOutlet(out))
        opened = step.open(ctx)
    except BaseException as exc:
        send(("fail", f"{where} could not start in its worker process: {type(exc).__name__}: {exc}",
              "".join(traceback.format_exception(exc))))
        return 1
    send(("ready",))
    try:
        try:
            while True:
                try:
                    message = pickle.load(inp)
                except EOFError:
                    return 0
                if message[0] == "rows":
                    process_chunk(opened, inst, message[1])  # type: ignore[arg-type]
                    send(("ack", ctx.errors, ctx.counters))
                elif message[0] == "finish":
                    finish_step(opened, inst)  # type: ignore[arg-type]
                    break
        finally:
            opened.close()
        send(("done", ctx.errors, ctx.counters))
    except RowFailure as failure:
        send(("fail", failure.message, failure.traceback_text))
        return 1
    except BaseException as exc:
        send(("fail", f"{inst.where} raised {type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
