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
from typing import Any

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


def wait_exit(process: Any, timeout: float) -> int | None:
    """The exit status of ``process`` (a ``subprocess.Popen``) once it has ended, reaped; None if it still runs
    after ``timeout`` seconds. It sleeps until the exit itself (a pidfd, Linux 5.3+), where ``Popen.wait``
    with a timeout polls with sleeps that double, up to 50 ms: a helper process ends a few ms after it is
    told to, and the engine's stop (and the command's exit) waited up to twice that."""
    if process.returncode is not None:
        return process.returncode
    try:
        fd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd here, or the process was just reaped by another thread
        return _wait(process, timeout)
    from .pipe import wait

    try:
        wait([fd], timeout)  # readable once the process has ended
    finally:
        os.close(fd)
    return _wait(process, 0)


def _wait(process: Any, timeout: float) -> int | None:
    import subprocess

    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def spawn_helper(module: str, fds: tuple[int, ...]) -> Any:
    """Start ``python -m module fd...`` (a ``subprocess.Popen``), given the pipe ends ``fds`` (the caller closes
    its copies). In a session of its own: a terminal's signals, even while it starts, are the engine's alone."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", module, *map(str, fds)], pass_fds=fds,
                            stdin=subprocess.DEVNULL, env=child_env(), close_fds=True, start_new_session=True)


def stop_helper(process: Any, timeout: float) -> None:
    """Wait for a helper told to end (its pipe closed) to exit; kill it if it has not after ``timeout``."""
    if wait_exit(process, timeout) is None:
        process.kill()
        process.wait()


def ignore_stop_signals() -> None:
    """In a helper process: the engine stops on SIGINT, SIGTERM and SIGHUP; the helper ends with its pipe."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
