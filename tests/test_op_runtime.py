"""What an op runs with, whatever runs it: its run's context and its output capture, as threads see them."""

from __future__ import annotations

from tinyo import runtime


def test_current_run_gives_back_a_bound_run_context_of_a_subclass_as_it_was_bound():
    class Traced(runtime.RunContext):
        pass

    traced = Traced(3, "des3", "w1", print)
    with runtime.running(traced):
        assert runtime.current_run() is traced

