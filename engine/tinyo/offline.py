"""Provides read-only views of a state file for the CLI: status, why, and DAG export."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .dag import Graph, Node
from .explain import explain_des, explain_document
from .filecheck import FileChecks
from .intake import FileState
from .store import Store
from .text import printable


def load_graph(store: Store) -> Graph:
    """The document DAG as stored, with every DES's state evaluated."""
    graph = Graph()
    files: dict[str, FileState] = {}
    for name, version, digest, mtime_ns, size in store.load_documents():
        graph.versions[name] = version
        if mtime_ns is not None and size is not None:
            files[name] = FileState(mtime_ns, size, digest)
    for row in store.load_des():
        node = Node(row.id, row.deps, row.targs, row.ops_desc, row.generator, row.event,
                    trace=row.trace, failed_trace=row.failed_trace, forced=row.forced)
        if row.state in ("failed", "cancelled"):
            node.failed_state = row.state  # type: ignore[assignment]
            node.error = store.last_error(row.id)
        graph.add(node)
    for rid, des_id in store.open_runs():
        node = graph.nodes.get(des_id)
        if node is not None:
            node.status = "running"
    # as the engine would find the files now: targets that drifted make their producer stale, file deps
    # that are gone make their readers wait
    checks = FileChecks(graph, files.get, use_hash=True)
    checks.built_targets(list(graph.nodes))
    graph.settle(list(graph.nodes))
    for node in list(graph.nodes.values()):
        if node.state == "stale":
            graph.gone.update(d for d in checks.gone_deps(node) if graph.producer.get(d) is None)
    if graph.gone:
        graph.settle(list(graph.nodes))
    return graph


def status(store: Store, recent: int = 10) -> dict[str, Any]:
    graph = load_graph(store)
    states = Counter(n.state for n in graph.nodes.values())
    failed = [
        {"des_id": n.id, "ops": list(n.ops_desc), "targs": sorted(n.targs), "reason": n.reason}
        for n in graph.nodes.values() if n.state == "failed"
    ]
    runs = store.recent_runs(recent)
    return {
        "db": store.path,
        "events": store.count("events"),
        "events_pending": store.pending_events(),
        "documents": len(graph.versions),
        "des": len(graph.nodes),
        "des_states": dict(sorted(states.items())),
        "runs": store.run_counts(),
        "failed": failed[:50],
        "recent_runs": [
            {"run_id": r.id, "des_id": r.des_id, "attempt": r.attempt, "worker": r.worker, "status": r.status,
             "start": r.start, "end": r.end, "error": r.error}
            for r in runs
        ],
        "timers": store.timer_ticks(),
    }


def explain(store: Store, name: str) -> str:
    graph = load_graph(store)
    if name in graph.nodes:
        text = explain_des(graph, name)
        target = name
    else:
        text = explain_document(graph, name)
        target = graph.producer.get(name)
    if target is not None:
        runs = store.runs_for(target, limit=3)
        if runs:
            last = runs[-1]
            text += f"\n  last run: #{last.id} attempt {last.attempt} on {last.worker or '-'}: {last.status}"
            if last.error:
                text += f": {printable(last.error)}"
    return text


def export(store: Store, fmt: str) -> str:
    graph = load_graph(store)
    docs = sorted(set(graph.versions) | set(graph.producer) | {d for n in graph.nodes.values() for d in n.deps})
    doc_ids = {name: f"d{i}" for i, name in enumerate(docs)}
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for name, nid in doc_ids.items():
            lines.append(f'    {nid}(["{_mermaid(name)}"])')
        for i, node in enumerate(sorted(graph.nodes.values(), key=lambda n: n.id)):
            label = f"{', '.join(node.ops_desc) or node.id} ({node.state})"
            lines.append(f'    x{i}["{_mermaid(label)}"]')
            lines.extend(f"    {doc_ids[d]} --> x{i}" for d in sorted(node.deps))
            lines.extend(f"    x{i} --> {doc_ids[t]}" for t in sorted(node.targs))
            lines.append(f"    class x{i} {node.state}")
        lines.append("    classDef failed stroke:#d33,stroke-width:2px")
        lines.append("    classDef ok stroke:#3a3")
        return "\n".join(lines) + "\n"
    lines = ["digraph tinyo {", "  rankdir=LR;", "  node [fontname=\"Helvetica\"];"]
    for name, nid in doc_ids.items():
        lines.append(f"  {nid} [shape=ellipse, label={json.dumps(name)}];")
    for i, node in enumerate(sorted(graph.nodes.values(), key=lambda n: n.id)):
        label = f"{', '.join(node.ops_desc) or node.id}\\n{node.state}"
        colour = {"failed": "red", "ok": "darkgreen", "running": "blue"}.get(node.state, "black")
        lines.append(f"  x{i} [shape=box, color={colour}, label=\"{_dot(label)}\"];")
        lines.extend(f"  {doc_ids[d]} -> x{i};" for d in sorted(node.deps))
        lines.extend(f"  x{i} -> {doc_ids[t]};" for t in sorted(node.targs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid(text: str) -> str:
    return printable(text).replace('"', "#quot;")


def _dot(text: str) -> str:
    return printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")
