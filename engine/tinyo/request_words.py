"""Provides the words the request commands (rerun, inject, fire, pause, resume, cancel) print, for both
ways of sending one: straight to a running engine (:mod:`tinyo.cli_direct`, which imports only the standard
library and this) and through the full command line (:mod:`tinyo.cli_requests`)."""

from __future__ import annotations


def describe(name: str, arg: str | None) -> str:
    """What the engine is asked to do by request command ``name`` with its argument ``arg``."""
    if name == "inject":
        return f"take in {arg!r}"
    if name == "cancel":
        return f"cancel run {int(arg or 0)}"
    if name in ("pause", "resume"):
        return f"{name} intake"
    return f"{name} {arg}"


def took(what: str) -> str:
    """The line a request the engine took prints."""
    return f"asked the running engine to {what}: it took the request"
