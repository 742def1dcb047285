"""Provides the worker-process side of a process-mode step instance (``python -m tinyo.flow.procworker``).

Protocol (pickles over two pipes whose descriptors are given on the command line): the parent sends
``("init", {...})`` (with one member per step of the lane this worker runs), then ``("rows", chunk)``
any number of times, then ``("finish",)``; the worker answers ``("ready",)``, then for every chunk
the last step's output as ``("out", gate, rows)`` messages and an ``("ack", stats)`` (per member:
rows in, rows out per gate, errors, counters), and at the end ``("done", stats)``. A failure is
``("fail", message, traceback, member)``.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any


class _PipeOutlet:
    """The last step's outlet: chunks go to the parent, which routes them (and counts them)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.rows_out: dict[str, int] = {}

    def send(self, gate: str, rows: list[Any]) -> None:
        if rows:
            from tinyo.flow.wire import encode

            pickle.dump(("out", gate, encode(rows)), self.out, protocol=pickle.HIGHEST_PROTOCOL)


class _LaneOutlet:
    """A step's outlet inside a lane that shares this worker: the hopped gate's chunks go straight
    into the next step; other gates are not hopped, so their rows are only counted."""

    def __init__(self, gate: str, following: _Member, current: list[int]) -> None:
        self.gate = gate
        self.following = following
        self.current = current
        self.rows_out: dict[str, int] = {}

    def send(self, gate: str, rows: list[Any]) -> None:
        n = len(rows)
        if not n:
            return
        self.rows_out[gate] = self.rows_out.get(gate, 0) + n
        if gate == self.gate:
            self.following.process(rows, self.current)


class _NoMeter:
    def tick(self) -> None:
        """The parent samples metrics; nothing to do here."""


class _Member:
    """One step of the lane this worker runs: what ``instance.deliver`` needs, and its counters."""

    def __init__(self, ctx: Any, position: int) -> None:
        self.ctx = ctx
        self.position = position
        self.outlet: Any = None
        self.meter = _NoMeter()
        self.step: Any = None
        self.rows_in = 0

    @property
    def where(self) -> str:
        return f"{self.ctx.where} (worker process {os.getpid()})"

    def process(self, rows: list[Any], current: list[int]) -> None:
        from tinyo.flow.instance import process_chunk

        before = current[0]
        current[0] = self.position
        self.rows_in += len(rows)
        process_chunk(self.step, self, rows)  # type: ignore[arg-type]
        current[0] = before

    def stats(self) -> tuple[int, dict[str, int], int, dict[str, int]]:
        return self.rows_in, dict(self.outlet.rows_out), self.ctx.errors, dict(self.ctx.counters)


def main(argv: list[str]) -> int:
    """Serve one step instance (or a lane of them) until ``finish`` or end of input."""
    inp = os.fdopen(int(argv[1]), "rb", buffering=1 << 16)
    out = os.fdopen(int(argv[2]), "wb", buffering=1 << 16)
    current = [0]

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
    first = init["members"][0]
    where = f"flow {init['flow']!r} step {first['step_name']!r} instance {first['index']}/{first['count']}"
    members: list[_Member] = []
    try:
        from tinyo.flow.context import FlowInfo, InstanceInfo, StepContext
        from tinyo.flow.errors import RowFailure
        from tinyo.flow.instance import finish_step
        from tinyo.flow.modules import import_module_or_file, loads_with_modules
        from tinyo.flow.wire import decode

        modules = dict(init["modules"])
        main_file = modules.pop("__main__", None)
        if main_file:
            sys.modules["__main__"] = import_module_or_file("__mp_main__", main_file)
        info = FlowInfo(init["flow"], init["run_id"])
        for position, spec in enumerate(init["members"]):
            ctx = StepContext(
                flow=info, step=spec["step_name"], instance=InstanceInfo(spec["index"], spec["count"]),
                params=init["params"], variables=init["variables"], services=init["services"],
                error_hopped=spec["error_hopped"], hopped=spec["hopped"], chunk_size=spec["chunk_size"],
                result=None, has_input=spec["has_input"],
            )
            members.append(_Member(ctx, position))
        for member, spec in zip(members, init["members"]):
            current[0] = member.position
            member.step = loads_with_modules(spec["step"], modules).open(member.ctx)
        for member, following, spec in zip(members, members[1:], init["members"]):
            member.outlet = _LaneOutlet(spec["gate"], following, current)
        members[-1].outlet = _PipeOutlet(out)
    except BaseException as exc:
        failed = members[current[0]].where if current[0] < len(members) else where
        send(("fail", f"{failed} could not start in its worker process: {type(exc).__name__}: {exc}",
              "".join(traceback.format_exception(exc)), current[0]))
        return 1
    head = members[0]
    send(("ready",))
    try:
        try:
            while True:
                try:
                    message = pickle.load(inp)
                except EOFError:
                    return 0
                if message[0] == "rows":
                    head.process(decode(message[1]), current)
                    send(("ack", [m.stats() for m in members]))
                elif message[0] == "finish":
                    for member in members:
                        current[0] = member.position
                        finish_step(member.step, member)  # type: ignore[arg-type]
                    break
        finally:
            for member in members:
                if member.step is not None:
                    member.step.close()
        send(("done", [m.stats() for m in members]))
    except RowFailure as failure:
        send(("fail", failure.message, failure.traceback_text, current[0]))
        return 1
    except BaseException as exc:
        culprit = members[current[0]]
        send(("fail", f"{culprit.where} raised {type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)),
              current[0]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
