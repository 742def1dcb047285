"""Provides what the thread running a flow shares with every thread the flow starts.

``tinyo.runtime.current_run()`` is thread-local, and so is the executor's capture of what an op
prints. A flow shares both where it starts (``runtime.share``) and adopts them in each step thread
(``runtime.adopt``), so metrics and prints from step threads reach the engine as the op's own.
"""

from __future__ import annotations

from .. import runtime


class ThreadBinding:
    """The calling thread's run context and output capture, to install in other threads."""

    def __init__(self) -> None:
        self.shared = runtime.share()
        self.run = self.shared.run

    def apply(self) -> None:
        """Make the calling thread part of the same run (metrics and printed lines)."""
        runtime.adopt(self.shared)
