"""Provides the helper processes ``tinyo run`` starts before the engine is built.

A worker or the file watcher is a fresh interpreter that takes tens of milliseconds to start and import
what it needs; started right after the recipe is loaded, before the engine's own modules are imported,
they start meanwhile instead of after. The engine takes them at its start (the watcher only if it
watches as the engine would); whatever it does not take is stopped, so none is left behind. Kept
light: the engine's modules are not imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import Execution

if TYPE_CHECKING:
    from .recipe import Recipe
    from .watch import WatcherProcess


@dataclass
class EarlyStart:
    """Processes started for a recipe before its engine is built; each is taken once, or dismissed."""

    recipe_path: str
    workers: list[Any] = field(default_factory=list)
    """Worker processes (``worker_launch.launch_workers``) for a process executor."""
    watcher: WatcherProcess | None = None

    def take_workers(self, recipe_path: str) -> list[Any]:
        """The workers started for ``recipe_path`` (none for another recipe), handed over once."""
        workers, self.workers = self.workers, []
        if recipe_path != self.recipe_path:
            _dismiss(workers)
            return []
        return workers

    def take_watcher(self) -> WatcherProcess | None:
        """The watcher process, handed over once."""
        watcher, self.watcher = self.watcher, None
        return watcher

    def dismiss(self) -> None:
        """Stop what was not taken (the engine could not be built, or did not start)."""
        _dismiss(self.take_workers(self.recipe_path))
        watcher = self.take_watcher()
        if watcher is not None:
            watcher.stop()


def _dismiss(workers: list[Any]) -> None:
    if workers:
        from .worker_launch import dismiss_workers

        dismiss_workers(workers)


def start_early(recipe: Recipe, *, db: str | None, execution: Execution | None, max_workers: int | None,
                watch: bool = True) -> EarlyStart:
    """Start the worker processes and the watcher the engine for ``recipe`` will use, as it would."""
    config = recipe.config
    early = EarlyStart(str(recipe.path))
    state = db or config.sql_conn
    # the watcher first: the engine's first scan waits until it watches, the first op only for a worker
    if watch and config.dirs and state != ":memory:":
        from .watch import WatcherProcess, state_files

        early.watcher = WatcherProcess(config.dirs, lambda files: None, lambda: None, recursive=config.recursive,
                                       debounce=config.debounce, ignore=state_files(str(Path(state).expanduser().resolve())),
                                       use_hash=config.hash_files, ignore_names=config.ignore)
        early.watcher.spawn()
    if (execution or config.execution) is Execution.PROCESSES:
        from .worker_launch import launch_workers

        early.workers = launch_workers(early.recipe_path, max_workers or config.max_workers)
    return early
