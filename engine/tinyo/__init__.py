"""Provides the public recipe API of tinyo: ``from tinyo import DES, TinyOConfig, Config, Execution, meta_task``."""

from __future__ import annotations

from typing import Any

from .errors import RecipeError, TinyoError
from .model import DEFAULT_IGNORE, DES, Config, Execution, TinyOConfig
from .recipe import meta_task

__all__ = ["DEFAULT_IGNORE", "DES", "Config", "Execution", "TinyOConfig", "meta_task", "TinyoError", "RecipeError"]


def __getattr__(name: str) -> Any:
    # __version__ is read from the package metadata on first use: importing importlib.metadata costs
    # every process that imports tinyo (workers too) some 20 ms.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tinyo")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'tinyo' has no attribute {name!r}")
