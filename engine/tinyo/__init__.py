"""Provides the public recipe API of tinyo: ``from tinyo import DES, TinyOConfig, Config, Execution, meta_task``."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import RecipeError, TinyoError

if TYPE_CHECKING:
    from .model import DEFAULT_IGNORE, DES, Config, Execution, TinyOConfig
    from .recipe import meta_task

__all__ = ["DEFAULT_IGNORE", "DES", "Config", "Execution", "TinyOConfig", "meta_task", "TinyoError", "RecipeError"]


_LAZY = {"DEFAULT_IGNORE": "model", "DES": "model", "Config": "model", "Execution": "model", "TinyOConfig": "model",
         "meta_task": "recipe"}
"""The recipe API, imported on first use: the watcher process (``tinyo._watch_main``, a module of this
package) starts faster without the model, and the engine waits for it to watch before its first scan."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    # __version__ is read from the package metadata on first use: importing importlib.metadata costs
    # every process that imports tinyo (workers too) some 20 ms.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tinyo")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'tinyo' has no attribute {name!r}")
