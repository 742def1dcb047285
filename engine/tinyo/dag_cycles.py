"""Provides the cycle walk of the document DAG: whether a DES about to join it would close a cycle."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Set

from .dag_nodes import Node
from .errors import DESRejected


def reject_cycle(deps: Set[str], targs: Set[str], readers: Callable[[str], Set[str]],
                 node: Callable[[str], Node | None]) -> None:
    """Raise DESRejected if a DES reading ``deps`` and writing ``targs`` would close a cycle: the walk goes
    downstream from its targets (``readers`` of a document, ``node`` of a DES id); reaching one of its deps
    closes one, and the message names the path."""
    parent: dict[str, str | None] = {t: None for t in targs}
    frontier = deque(targs)
    while frontier:
        doc = frontier.popleft()
        for cid in list(readers(doc)):
            consumer = node(cid)
            for out in (consumer.targs if consumer is not None else ()):
                if out in parent:
                    continue
                parent[out] = doc
                if out in deps:
                    path = [out]
                    cur: str | None = doc
                    while cur is not None:
                        path.append(cur)
                        cur = parent[cur]
                    path.reverse()
                    raise DESRejected(
                        f"cycle: this DES reads {path[-1]!r} and writes {path[0]!r}, but "
                        f"{' -> '.join(path)} already flows from one to the other"
                    )
                frontier.append(out)
