"""Provides the public recipe API of tinyo: ``from tinyo import DES, TinyOConfig, Config, Execution, meta_task``."""

from __future__ import annotations

from .errors import RecipeError, TinyoError
from .model import DEFAULT_IGNORE, DES, Config, Execution, TinyOConfig
from .recipe import meta_task

__all__ = ["DEFAULT_IGNORE", "DES", "Config", "Execution", "TinyOConfig", "meta_task", "TinyoError", "RecipeError"]
__version__ = "0.1.0"
