"""Provides ``printable``: names and output made safe to show on a terminal, literally."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, newlines, ...) shown as visible escapes.

    Markup-looking text (``[red]``) is left as it is: renderers must treat it as plain text.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}.get(ch, f"\\x{ord(ch):02x}")
