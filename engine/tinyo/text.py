"""Provides ``printable``: names and output made safe to show on a terminal, literally.

The one rule for the headless reporter, the CLI and the console: control characters (ANSI escapes,
newlines, C1 codes) and the invisible characters that reorder or split a line on screen (bidi
overrides and isolates, line and paragraph separators) are shown as visible escapes, and so are the
bytes of a file name that are not UTF-8 (``os.fsdecode`` holds byte 0xNN as U+DCNN; it shows as ``\\xNN``).
"""

from __future__ import annotations

import re

_UNSAFE = r"\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROL = re.compile(f"[{_UNSAFE}]")
_CONTROL_AND_TAB = re.compile(f"[\t{_UNSAFE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, *, tabs: bool = True) -> str:
    """``text`` with control characters shown as escapes (``\\n``, ``\\x1b``, ``\\u202e``), so it cannot
    move the cursor, restyle the screen or reorder what follows it, and a file name's undecodable bytes as
    ``\\xff`` (so the text can always be written to a UTF-8 terminal). ``tabs=False`` escapes tabs too
    (for table cells).

    Markup-looking text (``[red]``) is left as it is: renderers must treat it as plain text.
    """
    pattern = _CONTROL if tabs else _CONTROL_AND_TAB
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # an undecodable byte of a file name, as that byte
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
