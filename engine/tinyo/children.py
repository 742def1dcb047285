"""Provides what tinyo's helper processes (workers, flow step workers, the file watcher) start with.

Each is a fresh interpreter running ``python -m tinyo....``; nothing is inherited from the engine but
the environment, so the folder holding the ``tinyo`` package goes first on its ``PYTHONPATH`` (an
editable install, a checkout, or site-packages alike).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
"""The folder holding the ``tinyo`` package."""


def child_env() -> dict[str, str]:
    """This process's environment, with ``tinyo`` importable first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [PACKAGE_ROOT, env.get("PYTHONPATH", "")] if p)
    return env


def exit_now(code: int = 0) -> None:
    """End this process without tearing its interpreter down (a helper process, or the ``tinyo`` command
    once it is done): what it exits on is done and said, and the teardown of hundreds of modules would
    only make the engine, or the shell, wait. Exit handlers still run (a recipe's or an op's module may
    have registered some) and output is flushed; a thread still at work that is not a daemon is waited
    for, as at any exit."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # closed or gone: nothing to flush
    os._exit(code)
