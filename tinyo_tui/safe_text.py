"""Provides helpers that turn untrusted names and output into literal, screen-safe rich Text."""

from __future__ import annotations

from datetime import datetime

from rich.style import Style
from rich.text import Text

from tinyo.text import printable


def visible(value: object) -> str:
    """``value`` as a one-line string whose control characters (ANSI escapes, newlines, tabs, bidi
    overrides) are shown as escapes, so it cannot move the cursor or restyle the screen (the engine's
    rule, as the headless reporter prints it)."""
    return printable(value if isinstance(value, str) else str(value), tabs=False)


def literal(value: object, style: str | Style = "") -> Text:
    """A rich Text holding ``value`` verbatim (never parsed as markup), control characters escaped."""
    return Text(visible(value), style=style, no_wrap=True, end="")


def join(*parts: tuple[object, str | Style] | Text, sep: str = " ") -> Text:
    """Concatenate literal parts (``(value, style)`` pairs or Text) separated by ``sep``."""
    out = Text(no_wrap=True, end="")
    first = True
    for part in parts:
        if not first and sep:
            out.append(sep)
        first = False
        if isinstance(part, Text):
            out.append_text(part)
        else:
            value, style = part
            out.append(visible(value), style=style)
    return out


def clock_time(ts: float) -> str:
    """``HH:MM:SS`` of a timestamp in local time."""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def duration(seconds: float | None) -> str:
    """A compact duration: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def short_id(des_id: str) -> str:
    """The first 8 hex digits of a DES id (what the panes show)."""
    return des_id[:8]


def uptime(seconds: float | None) -> str:
    """Whole-second uptime: ``42s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return "-"
    return f"{int(seconds)}s" if seconds < 60 else duration(seconds)
