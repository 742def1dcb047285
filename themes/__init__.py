"""Provides the console themes (TOML palettes) and stylesheet, shipped as tinyo_tui.themes."""
