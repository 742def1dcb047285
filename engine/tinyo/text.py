"""Provides ``printable``: names and output made safe to show on a terminal, literally.

The one rule for the headless reporter, the CLI and the console: control characters (ANSI escapes,
newlines, C1 codes) and the invisible characters that hide, join, reorder or split text on screen
(zero-width spaces and joiners, soft hyphens, bidi marks, overrides and isolates, line and paragraph
separators: every Unicode format character) are shown as visible escapes, so two different names
never look the same; so are the bytes of a file name that are not UTF-8 (``os.fsdecode`` holds byte
0xNN as U+DCNN; it shows as ``\\xNN``).
"""

from __future__ import annotations

import re

_UNSAFE = (
    r"\x00-\x08\x0a-\x1f\x7f-\x9f"  # C0 and C1 controls (tab is separate)
    # every invisible format character (Unicode category Cf: zero-width space and joiners, soft
    # hyphen, bidi marks, overrides and isolates, word joiner, BOM, tags) and the line and paragraph
    # separators; tests/test_text.py checks this list against unicodedata
    r"\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e"
    r"\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    r"\ud800-\udfff"  # surrogates: the undecodable bytes of a file name (os.fsdecode)
)
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
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
