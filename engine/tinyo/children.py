"""Provides what tinyo's helper processes (workers, flow step workers, the file watcher) start with.

Each is a fresh interpreter running ``python -m tinyo....``; nothing is inherited from the engine but
the environment, so the folder holding the ``tinyo`` package goes first on its ``PYTHONPATH`` (an
editable install, a checkout, or site-packages alike).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
"""The folder holding the ``tinyo`` package."""


def child_env() -> dict[str, str]:
    """This process's environment, with ``tinyo`` importable first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [PACKAGE_ROOT, env.get("PYTHONPATH", "")] if p)
    return env
