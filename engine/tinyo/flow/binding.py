"""Provides what the thread running a flow shares with every thread the flow starts.

``tinyo.runtime.current_run()`` is thread-local, and so is the executor's capture of what an op
prints. A flow captures both where it starts and installs them in each step thread, so metrics and
prints from step threads reach the engine as the op's own.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import runtime


class ThreadBinding:
    """The calling thread's run context and output capture, to install in other threads."""

    def __init__(self) -> None:
        self.run = runtime.current_run()
        worker = sys.modules.get("tinyo.worker")
        self._capture: Any = getattr(worker, "_capture", None)
        self.output = getattr(self._capture, "sink", None) if self._capture is not None else None

    def apply(self) -> None:
        """Make the calling thread part of the same run (metrics and printed lines)."""
        runtime.bind(self.run)
        if self._capture is not None and self.output is not None:
            self._capture.sink = self.output
