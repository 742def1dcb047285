"""The one escaping rule (``tinyo.text.printable``): every invisible or line-breaking character shows."""

from __future__ import annotations

import sys
import unicodedata

from tinyo.text import printable

HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def test_every_control_and_format_character_is_escaped() -> None:
    """Checked against the whole of Unicode as Python knows it: no hidden character prints raw."""
    raw = [code for code in range(sys.maxunicode + 1)
           if unicodedata.category(chr(code)) in HIDDEN and chr(code) != "\t"
           and printable(f"a{chr(code)}b") == f"a{chr(code)}b"]
    assert raw == [], [f"U+{code:04X} {unicodedata.name(chr(code), '?')}" for code in raw[:10]]


def test_visible_characters_stay_as_they_are() -> None:
    for text in ("plain.csv", "ünï ✓ 名前.txt", "[red]x[/red]", "tab\tkept", "🚀", "e\u0301"):
        assert printable(text) == text


def test_escapes_name_the_character() -> None:
    assert printable("zero\u200bwidth.csv") == "zero\\u200bwidth.csv"
    assert printable("soft\u00adhyphen") == "soft\\xadhyphen"
    assert printable("bom\ufeff") == "bom\\ufeff"
    assert printable("tag\U000e0041") == "tag\\U000e0041"
    assert printable("new\nline\x1b[31m") == "new\\nline\\x1b[31m"
    assert printable("tab\there", tabs=False) == "tab\\there"
