"""Provides the document tree's labels: a document, a DES or a group as one line of styled text.

Pure rendering from the console's state and the palette (no widget), so the tree builds the same
label when a node is added, when its state changes and when the theme changes. Names are shown
literally (``visible``), never read as markup.
"""

from __future__ import annotations

from rich.text import Text

from tinyo.groups import GroupSummary

from ..palette import Palette, glyph
from ..safe_text import short_id, visible
from ..sorting import DOC_STATE_ORDER
from ..state import ConsoleState

_STATE_ORDER = DOC_STATE_ORDER


def doc_label(state: ConsoleState, palette: Palette, name: str, arrow: str = "") -> Text:
    """A document: its state's glyph, name, version and state (with why, when waiting, stale or failed)."""
    doc = state.docs.get(name)
    style = palette.style
    text = Text(no_wrap=True, end="")
    if arrow:
        text.append(arrow + " ", style=style("muted"))
    if doc is None:
        text.append(visible(name))
        return text
    text.append(glyph(doc.state) + " ", style=style(doc.state))
    text.append(visible(name))
    if doc.version is not None:
        text.append(f" v{doc.version}", style=style("muted"))
    label = doc.state
    if doc.detail and doc.state in ("waiting", "stale", "failed"):
        label = f"{doc.state}: {doc.detail}"
    text.append(f"  {visible(label)}", style=style(doc.state))
    return text


def des_label(state: ConsoleState, palette: Palette, des_id: str, arrow: str) -> Text:
    """A DES: its state's glyph, ops, short id and state (with the worker running it)."""
    node = state.des.get(des_id)
    style = palette.style
    text = Text(no_wrap=True, end="")
    text.append(arrow + " ", style=style("muted"))
    if node is None:
        text.append(f"DES {short_id(des_id)}")
        return text
    state = "never built" if node.state == "registered" else node.state
    text.append(glyph(state) + " ", style=style(state))
    text.append("⚙ " + visible(node.op_label), style=style("primary"))
    text.append(f" [{short_id(des_id)}]", style=style("muted"))
    detail = f"{state}: {node.reason}" if node.reason and state in ("waiting", "stale", "failed") else state
    if node.worker and state == "running":
        detail += f" on {node.worker}"
    text.append(f"  {visible(detail)}", style=style(state))
    return text


def group_label(state: ConsoleState, palette: Palette, group: GroupSummary) -> Text:
    """A group: its name pattern, member count and a count per state (a one-member group: the document)."""
    if group.count == 1:
        return doc_label(state, palette, group.first)
    style = palette.style
    text = Text(no_wrap=True, end="")
    text.append(visible(group.pattern), style="bold")
    text.append(f" ({group.count})", style=style("muted"))
    for state in _STATE_ORDER:
        n = group.state_count(state)
        if n:
            text.append(f"  {glyph(state)}{n}", style=style(state))
    return text
