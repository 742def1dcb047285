"""Provides the public recipe API of tinyo: ``from tinyo import DES, TinyOConfig, Config, Execution, meta_task``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import RecipeError, TinyoError
from .model import DES, Config, Execution, TinyOConfig
from .recipe import meta_task

__all__ = ["DES", "Config", "Execution", "TinyOConfig", "meta_task", "TinyoError", "RecipeError"]
try:
    __version__ = version("tinyo")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
