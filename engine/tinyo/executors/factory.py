"""Provides the factory that picks the executor for a recipe's ``Execution``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..model import Execution
from .base import Executor, Sink

if TYPE_CHECKING:
    from ..recipe import OpResolver


def make_executor(
    execution: Execution,
    *,
    recipe_path: str,
    max_workers: int,
    sink: Sink,
    resolver: OpResolver,
    clock: Callable[[], float],
    address: str | None = None,
    store_path: str | None = None,
    launched: list[Any] | None = None,
) -> Executor:
    """The executor for ``execution``; ``launched``: worker processes ``worker_launch.launch_workers`` started
    earlier for this recipe (a process executor takes them; any other executor dismisses them)."""
    if execution is Execution.PROCESSES:
        from .process import ProcessExecutor

        return ProcessExecutor(recipe_path, max_workers, sink, clock, launched)
    if launched:
        from ..worker_launch import dismiss_workers  # not the process executor: it is not used

        dismiss_workers(launched)
    if execution is Execution.THREADS:
        from .threads import ThreadExecutor

        return ThreadExecutor(max_workers, sink, resolver, clock)
    if execution is Execution.INLINE:
        from .threads import InlineExecutor

        return InlineExecutor(sink, resolver, clock)
    if execution is Execution.DASK:
        from ..errors import TinyoError

        try:
            import distributed  # noqa: F401
        except ImportError:
            raise TinyoError(
                "Execution.DASK needs dask.distributed: install it with  pip install \"tinyo[dask]\""
            ) from None
        if not address:
            raise TinyoError(
                "Execution.DASK needs the scheduler's address: TinyOConfig(executor_address='tcp://host:8786'), "
                "or `tinyo run RECIPE --executor tcp://host:8786` (or --executor local-dask to try it on this machine)"
            )
        from .dask_executor import DaskExecutor

        return DaskExecutor(recipe_path, address, max_workers, sink, clock, store_path)
    raise ValueError(f"unknown execution {execution!r}")
