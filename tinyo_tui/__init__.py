"""Provides the tinyo operations console, a Textual app that embeds the tinyo engine."""

from __future__ import annotations

__all__ = ["build_app"]


def build_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Build the console app (see ``tinyo_tui.app.build_app``); imported lazily to keep start-up cheap."""
    from .app import build_app as _build_app

    return _build_app(*args, **kwargs)
