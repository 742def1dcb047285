"""Provides the built-in steps under one name: ``from tinyo.flow import steps; steps.Map(fn)``."""

from __future__ import annotations

from .base import FunctionStep, Gates, Step
from .step_aggregate import Aggregate
from .step_files import CsvInput, CsvOutput
from .step_lookup import Lookup
from .step_rows import Filter, Generate, Log, Map, SetFlowResult, Switch
from .step_sql import Sqlite, SqlInput, SqlOutput
from .step_subflow import RunFlow

__all__ = [
    "Aggregate",
    "CsvInput",
    "CsvOutput",
    "Filter",
    "FunctionStep",
    "Gates",
    "Generate",
    "Log",
    "Lookup",
    "Map",
    "RunFlow",
    "SetFlowResult",
    "SqlInput",
    "SqlOutput",
    "Sqlite",
    "Step",
    "Switch",
]
