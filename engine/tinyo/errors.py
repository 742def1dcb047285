"""Provides the engine's exception hierarchy: one base type, messages that name what was wrong."""

from __future__ import annotations


class TinyoError(Exception):
    """Base class of every error the engine raises on purpose.

    The message says what was wrong (recipe, generator, op, value) and what would have been valid.
    The CLI prints it without a traceback unless ``--debug``.
    """


class RecipeError(TinyoError):
    """The recipe file cannot be loaded or its content is invalid (exit status 2)."""


class ConfigError(RecipeError):
    """``config = TinyOConfig(...)`` is missing, or has unknown or ill-typed fields."""


class OpNotImportable(RecipeError):
    """An op cannot be addressed by module + qualified name, so a worker could not import it."""


class StoreError(TinyoError):
    """The SQLite state file is unreadable, foreign, from a newer schema, or locked by another engine."""


class GeneratorFailure(TinyoError):
    """A generator raised, hung, or returned something other than ``(key, [DES, ...])``."""


class DESRejected(TinyoError):
    """A DES would close a cycle, or conflicts with another DES over a target."""


class WatchError(TinyoError):
    """A watched folder cannot be watched (it cannot be made, or the system's watch limit is reached)."""
