"""Provides state glyphs and the rich styles for states, taken from the app's current theme.

Every state has a glyph as well as a colour, so states stay distinct in monochrome (``NO_COLOR``) and
for colour-blind users.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from textual.color import Color

if TYPE_CHECKING:
    from textual.app import App

GLYPHS: dict[str, str] = {
    "up to date": "✓",
    "ok": "✓",
    "source": "▪",
    "stale": "~",
    "waiting": "…",
    "queued": "○",
    "interrupted": "○",
    "running": "●",
    "busy": "●",
    "failed": "✗",
    "error": "✗",
    "cancelled": "⊘",
    "never built": "◌",
    "registered": "◌",
    "missing": "?",
    "idle": "·",
    "dead": "✗",
    "stopped": "■",
    "paused": "⏸",
    "starting": "…",
    "stopping": "■",
    "finished": "✓",
    "blocked": "⧖",
}

_ROLE: dict[str, tuple[str, str]] = {
    "up to date": ("success", ""),
    "ok": ("success", ""),
    "finished": ("success", ""),
    "source": ("foreground", ""),
    "stale": ("warning", ""),
    "waiting": ("secondary", ""),
    "queued": ("primary", ""),
    "interrupted": ("primary", ""),
    "running": ("accent", "bold"),
    "busy": ("accent", "bold"),
    "failed": ("error", "bold"),
    "error": ("error", "bold"),
    "dead": ("error", "bold"),
    "cancelled": ("warning", ""),
    "never built": ("foreground-muted", "italic"),
    "registered": ("foreground-muted", "italic"),
    "missing": ("foreground-muted", "italic"),
    "idle": ("foreground-muted", ""),
    "stopped": ("foreground-muted", ""),
    "paused": ("warning", "bold"),
    "starting": ("primary", ""),
    "stopping": ("warning", "bold"),
    "muted": ("foreground-muted", ""),
    "accent": ("accent", ""),
    "primary": ("primary", ""),
    "cmd": ("secondary", "bold"),
    "stderr": ("warning", ""),
    "blocked": ("warning", ""),
}


def glyph(state: str) -> str:
    """The one-cell symbol shown next to a state."""
    return GLYPHS.get(state, "·")


def build_styles(app: App[object]) -> dict[str, Style]:
    """State name -> rich Style, from the app's current theme variables."""
    variables = app.theme_variables or app.get_css_variables()
    background = Color.parse(variables.get("background", "#000000"))
    styles: dict[str, Style] = {}
    for state, (role, extra) in _ROLE.items():
        value = variables.get(role) or variables.get("foreground", "#ffffff")
        try:
            color = background + Color.parse(value)
        except Exception as exc:  # a theme with an unparsable value must not break rendering
            raise ValueError(f"theme variable ${role} = {value!r} is not a colour") from exc
        styles[state] = Style.parse(extra) + Style(color=color.rich_color) if extra else Style(
            color=color.rich_color
        )
    return styles


class Palette:
    """Cached state styles for one app; call ``refresh`` when the theme changes."""

    def __init__(self) -> None:
        self._styles: dict[str, Style] = {}

    def refresh(self, app: App[object]) -> None:
        """Rebuild the styles from ``app``'s current theme."""
        self._styles = build_styles(app)

    def style(self, state: str) -> Style:
        """The style of ``state`` (plain when unknown)."""
        return self._styles.get(state, Style())
