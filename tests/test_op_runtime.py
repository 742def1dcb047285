"""What an op runs with, whatever runs it: its run's context and its output capture, as threads see them."""

from __future__ import annotations

import sys
import threading
from typing import Any

from tinyo import runtime
from tinyo.model import Config
from tinyo.worker import install_routers, run_ops

WAIT = 20.0
"""Seconds a test waits for a thread before it fails (never reached when the capture works)."""


def test_current_run_gives_back_a_bound_run_context_of_a_subclass_as_it_was_bound():
    class Traced(runtime.RunContext):
        pass

    traced = Traced(3, "des3", "w1", print)
    with runtime.running(traced):
        assert runtime.current_run() is traced


class Stall(str):
    """Text whose joining to a partial line waits for ``release``: it holds a writer where it joins it."""

    entered = threading.Event()
    release = threading.Event()

    def __radd__(self, other: str) -> str:
        Stall.entered.set()
        Stall.release.wait(WAIT)
        return other + str(self)


def test_a_thread_printing_for_one_op_does_not_hold_up_another_op_printing_on_its_thread():
    # the thread executor runs ops side by side, each on its own thread: each op's lines are its own
    install_routers()
    reports: list[tuple[str, int, Any]] = []

    def stalled(context: dict[str, Any]) -> None:
        sys.stdout.write(Stall("partial"))

    def printing(context: dict[str, Any]) -> None:
        print("from the other op")

    ops = {"m:stalled": stalled, "m:printing": printing}

    def run(run_id: int, ref: str) -> None:
        run_ops(run_id, f"des{run_id}", 1, ((ref, Config({})),), frozenset(), frozenset(), ops.__getitem__,
                lambda *report: reports.append(report), "t1")

    first = threading.Thread(target=run, args=(1, "m:stalled"))
    first.start()
    try:
        assert Stall.entered.wait(WAIT)
        second = threading.Thread(target=run, args=(2, "m:printing"))
        second.start()
        second.join(WAIT)
        assert not second.is_alive() and reports == [("out", 2, ("stdout", "from the other op"))]
    finally:
        Stall.release.set()
        first.join(WAIT)
    assert reports[1:] == [("out", 1, ("stdout", "partial"))]
