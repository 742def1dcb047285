"""Provides ``parse_run``: ``tinyo run``'s command line read without typer, for the ``tinyo`` entry point.

Importing typer and building the full command line costs a one-task ``tinyo run`` about a quarter of its
start-up (on the engine's own process, the one every other process waits for), and ``run`` needs none
of it: its options are a handful of flags and values. This module reads exactly the forms the full
command line reads the same way; anything else (``--help``, ``--executor``, an unknown or repeated short
flag, a value the full command line would check or refuse, a second argument) is left to the full command
line, which does what it always did, error messages included.
"""

from __future__ import annotations

import re
from typing import Any, Callable

_FLAGS = {"--json": "json_lines", "--debug": "debug", "--verbose": "verbose", "-v": "verbose",
          "--allow-world-writable": "allow_world_writable"}
"""``tinyo run``'s flags and the ``run_headless`` argument each sets."""
_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)\Z")


def _seconds(text: str) -> float | None:
    return float(text) if _DECIMAL.match(text) else None


def _count(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _workers(text: str) -> int | None:
    count = _count(text)
    return count if count is not None and count >= 1 else None  # 0: the full command line says it is too few


def _execution(text: str) -> Any:
    from .model import Execution  # its values are the choices: the full command line's ExecChoice mirrors them

    try:
        return Execution(text)
    except ValueError:
        return None


def _state_file(text: str) -> str | None:
    return text or None


_VALUES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--db": ("db", _state_file), "--idle-exit": ("idle_exit", _seconds), "--stop-after": ("stop_after", _count),
    "--workers": ("workers", _workers), "--execution": ("execution", _execution),
}
"""``tinyo run``'s options taking a value: the ``run_headless`` argument each sets, and how its text is read
(None: not a form read here)."""


def parse_run(argv: list[str]) -> dict[str, Any] | None:
    """The ``run_headless`` arguments of the ``tinyo [--debug] run RECIPE [OPTIONS]`` that ``argv`` types, or
    None when it is something else, or anything the full command line should read."""
    debug = False
    while argv and argv[0] == "--debug":  # the root's own flag, before the command
        debug, argv = True, argv[1:]
    if not argv or argv[0] != "run":
        return None
    kwargs: dict[str, Any] = {"debug": debug}
    recipe: str | None = None
    tokens = iter(argv[1:])
    for token in tokens:
        name, eq, inline = token.partition("=")
        if token in _FLAGS:
            kwargs[_FLAGS[token]] = True
        elif name in _VALUES:
            text = inline if eq else next(tokens, None)
            if text is None or (not eq and text.startswith("-")):
                return None  # a missing value, or one the full command line may read as an option
            key, read = _VALUES[name]
            value = read(text)
            if value is None:
                return None
            kwargs[key] = value
        elif token.startswith("-") or recipe is not None or not token:
            return None  # --help, --executor, "--", an unknown option, a second argument, an empty one
        else:
            recipe = token
    if recipe is None:
        return None
    return {"recipe": recipe, **kwargs}
