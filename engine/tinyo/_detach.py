"""Provides process-group detachment for the worker fork server (imported only there, as a preload).

Ctrl-C, a hang-up or a ``timeout``/``kill -- -PGID`` reach every process of the terminal's process
group. If the fork server received them it would die and every worker would look dead. Moving the
fork server (and so every worker it forks) into its own process group leaves the orchestrator alone
in charge: it stops workers itself, and they exit when it is gone (their task pipe closes).
"""

from __future__ import annotations

import os

try:
    os.setpgid(0, 0)
except OSError:
    pass  # not permitted (e.g. a session leader): the workers still ignore those signals themselves
