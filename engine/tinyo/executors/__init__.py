"""Provides the executors that run ops: a process pool, a thread pool, and inline execution."""

from __future__ import annotations

from .base import Executor, WorkerInfo
from .factory import make_executor

__all__ = ["Executor", "WorkerInfo", "make_executor"]
