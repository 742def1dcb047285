"""Provides the console's themes (TOML palettes in ``themes/``) and its stylesheet path.

The files ship in the wheel as the package ``tinyo_tui.themes``; in a source checkout they are the
top-level ``themes/`` folder.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path

from textual.theme import Theme

THEME_PREFIX = "tinyo-"
DEFAULT_THEME = "tinyo-dark"
STYLESHEET = "tinyo.tcss"


class ThemeError(ValueError):
    """An unknown theme name, or a theme file with bad content."""


def themes_dir() -> Path:
    """The folder holding the ``*.tcss`` and ``*.toml`` theme files."""
    try:
        root = importlib.resources.files("tinyo_tui.themes")
        path = Path(str(root))
        if (path / STYLESHEET).is_file():
            return path
    except ModuleNotFoundError:
        pass  # not installed: fall back to the source checkout layout below
    return Path(__file__).resolve().parent.parent / "themes"


def stylesheet_path() -> Path:
    """The console's stylesheet."""
    return themes_dir() / STYLESHEET


def load_themes() -> dict[str, Theme]:
    """Every ``themes/*.toml`` palette as a Textual Theme, keyed by name (``tinyo-dark``...)."""
    result: dict[str, Theme] = {}
    for path in sorted(themes_dir().glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ThemeError(f"theme file {path} is not valid TOML: {exc}") from exc
        name = THEME_PREFIX + path.stem
        variables = data.pop("variables", {})
        try:
            result[name] = Theme(name=name, variables=dict(variables), **data)
        except TypeError as exc:
            raise ThemeError(f"theme file {path}: {exc}; expected primary, secondary, accent, "
                             "foreground, background, surface, panel, warning, error, success, dark") from exc
    return result


def resolve_theme(name: str | None, available: list[str]) -> str:
    """Map ``--theme NAME`` (``dark``, ``tinyo-dark`` or any registered theme) to a theme name."""
    if not name:
        return DEFAULT_THEME
    for candidate in (name, THEME_PREFIX + name):
        if candidate in available:
            return candidate
    ours = sorted(n.removeprefix(THEME_PREFIX) for n in available if n.startswith(THEME_PREFIX))
    raise ThemeError(f"unknown theme {name!r}; available: {', '.join(ours)} (or a Textual theme name)")
