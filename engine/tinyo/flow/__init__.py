"""Provides data flows: concurrent row pipelines of steps and hops (Tweakstreet semantics).

    from tinyo.flow import Flow, steps

    flow = Flow("enrich", params={"master": "customers.csv"}, services={"db": "shop.sqlite"})
    src = flow.step("read", steps.SqlInput("SELECT * FROM orders WHERE id % ${instance.count} = ${instance.index}"), instances=4)
    add = flow.step("lookup", steps.Lookup(csv="${params.master}", key="customer_id", types={"customer_id": int}), instances=4)
    out = flow.step("write", steps.SqlOutput("orders_enriched", mode="replace", create=True))
    flow.hop(src, add)
    flow.hop(add, out)
    run = flow.run(master="new.csv")   # run.ok, run.result, run.error, run.metrics

A flow is also an op: ``DES(..., ops=[(flow, Config({...params}))])``.
"""

from __future__ import annotations

from . import steps
from .base import Gates, Step
from .context import StepContext
from .definition import REQUIRED, Flow, HopDef, StepDef
from .errors import (
    FlowDefinitionError,
    FlowError,
    FlowFailed,
    FlowParameterError,
    InterpolationError,
    ProcessModeError,
)
from .meter import InstanceMetrics
from .routing import stable_hash
from .runner import FlowRun
from .step_sql import Sqlite

__all__ = [
    "REQUIRED",
    "Flow",
    "FlowDefinitionError",
    "FlowError",
    "FlowFailed",
    "FlowParameterError",
    "FlowRun",
    "Gates",
    "HopDef",
    "InstanceMetrics",
    "InterpolationError",
    "ProcessModeError",
    "Sqlite",
    "Step",
    "StepContext",
    "StepDef",
    "stable_hash",
    "steps",
]
