"""Provides the engine's parts, each owned by the loop thread and each one concern: the loop
(``loop``), intake (``inflow``), registration of emitted DES (``registration``), documents
(``documents``), readiness and dispatch (``dispatch``), open runs and their outcomes (``runbook``),
commands (``commands``), read-only answers (``queries``) and the facts released after each commit
(``outbox``). ``tinyo.engine.Engine`` puts them together behind its public API."""
