"""Provides the explanations of ``tinyo why``: why a DES is in its state, and why a document has the version
it has, who makes it and who reads it (names shown literally, control characters escaped)."""

from __future__ import annotations

from .dag import Graph
from .text import printable as _p


def explain_des(graph: Graph, des_id: str) -> str:
    """Why a DES is in its state, one line per fact (names shown literally, control characters escaped)."""
    node = graph.node(des_id)
    if node is None:
        return f"no DES {_p(des_id)!r} is known"
    verdict = graph.evaluate(node)
    ops = ", ".join(node.ops_desc) or "-"
    lines = [
        f"DES {node.id}: {verdict.state}: {_p(verdict.reason)}",
        f"  ops: {_p(ops)}   (generator {node.generator or '?'}, event {_p(node.event) or '?'})",
        "  deps: " + (", ".join(f"{_p(d)} v{graph.version(d) or '-'}" for d in sorted(node.deps)) or "-"),
        "  targs: " + ", ".join(f"{_p(t)} v{graph.version(t) or '-'}" for t in sorted(node.targs)),
    ]
    if node.trace is not None:
        lines.append("  last success used: "
                     + (", ".join(f"{_p(d)} v{v}" for d, v in sorted(node.trace.items())) or "no deps"))
    return "\n".join(lines)


def explain_document(graph: Graph, name: str) -> str:
    """Why a document has the version it has, who produces it and who reads it."""
    version = graph.version(name)
    owner = graph.producer_of(name)
    readers = sorted(graph.readers(name))
    head = f"document {_p(name)}: " + (f"version {version}" if version is not None else "no version yet")
    lines = [head]
    node = graph.node(owner) if owner is not None else None
    if owner is not None and node is not None:
        verdict = graph.evaluate(node)
        lines.append(f"  produced by DES {owner} ({_p(', '.join(node.ops_desc) or '-')}): "
                     f"{verdict.state}: {_p(verdict.reason)}")
    elif version is not None:
        lines.append("  an input: its versions come from events (files, timers, injections), no DES produces it")
    else:
        lines.append("  no event has named it and no DES produces it")
    if readers:
        shown = ", ".join(readers[:10]) + (f" and {len(readers) - 10} more" if len(readers) > 10 else "")
        lines.append(f"  read by {len(readers)} DES: {shown}")
    return "\n".join(lines)
