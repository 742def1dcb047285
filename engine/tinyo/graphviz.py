"""Provides rendering of DOT text to SVG or PNG through Graphviz's ``dot`` program, when it is installed."""

from __future__ import annotations

import shutil
import subprocess

from .errors import TinyoError

RENDER_TIMEOUT = 60.0
"""Seconds ``dot`` may take; a DAG it cannot lay out by then is an error, not a hang."""


class GraphvizMissing(TinyoError):
    """Graphviz's ``dot`` is not on PATH."""

    def __init__(self, fmt: str) -> None:
        super().__init__(f"--format {fmt} needs Graphviz's `dot` program, which is not on PATH: install the "
                         "graphviz package (apt install graphviz, brew install graphviz, conda install graphviz)")


class GraphvizFailed(TinyoError):
    """``dot`` ran but did not produce the picture."""


def dot_program() -> str | None:
    """The path of ``dot`` on PATH, or None."""
    return shutil.which("dot")


def render(dot_text: str, fmt: str) -> bytes:
    """``dot_text`` rendered as ``fmt`` (``svg`` or ``png``) by Graphviz."""
    program = dot_program()
    if program is None:
        raise GraphvizMissing(fmt)
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=RENDER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizFailed(f"{program} -T{fmt}: no picture after {RENDER_TIMEOUT:g} s") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise GraphvizFailed(f"{program} -T{fmt} failed (exit {done.returncode}): "
                             f"{reason[0] if reason else 'no message'}")
    return done.stdout
