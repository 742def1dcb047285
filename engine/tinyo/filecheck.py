"""Provides the checks that keep file documents true to the files: a dep whose file is gone, and a
target whose file is not what its producer wrote.

- A file dep that is gone (removed, or renamed away: a tool's temporary file) when its DES is about
  to run is not run on: the DES waits for the file (``Graph.gone``), and a new event for it brings it
  back. A *produced* dep that is gone makes its producer stale instead.
- A file target that is missing, or whose content differs from the state recorded when its producer
  last wrote it, makes the producer stale (``Graph.drifted``), as Make and Shake would: at start-up,
  whenever something touches the DES, and when a watched folder reports the file. The recorded
  (mtime_ns, size) is compared first; the file is hashed only when those differ.

Look-ups and stats on the engine's graph: the engine re-evaluates the DES the answers name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from .dag import Graph, Node
from .intake import FileState, compare_file, stat_file

GONE = FileState(0, -1, None)
"""The last-seen state recorded for a file found gone (no file has it: its coming back is new)."""
MISSING = "is missing"
CHANGED = "changed since it was built"


class FileChecks:
    """The file-state checks of one engine. ``recorded(path)``: the state a document's current version was
    recorded with (None: none recorded)."""

    def __init__(self, graph: Graph, recorded: Callable[[str], FileState | None], use_hash: bool) -> None:
        self.graph = graph
        self.recorded = recorded
        self.use_hash = use_hash
        self.present: set[str] = set()
        """Files a stat found there during the current cycle (the engine clears it at each commit): a dep
        among them is not stat-ed again before its DES runs in the same cycle."""

    def drift(self, path: str, known: FileState | None = None, st: os.stat_result | None = None,
              hint: FileState | None = None) -> str | None:
        """What became of target ``path`` since it was recorded (None: it is as recorded, or nothing was)."""
        known = known if known is not None else self.recorded(path)
        if known is None:
            return None
        st = st if st is not None else stat_file(path)
        if st is None:
            return MISSING
        if known.mtime_ns == st.st_mtime_ns and known.size == st.st_size:
            return None
        changed, state = compare_file(path, known, self.use_hash, st=st, hint=hint)
        if state is None:
            return MISSING
        return CHANGED if changed else None

    def built_targets(self, ids: Iterable[str]) -> list[str]:
        """Of the DES ``ids`` (in memory) that are built and idle, those a file target of which drifted;
        each such target is marked in ``Graph.drifted``."""
        stale: list[str] = []
        nodes = self.graph.nodes
        for des_id in ids:
            node = nodes.get(des_id)
            if node is None or node.trace is None or node.status is not None or node.failed_state is not None:
                continue
            for t in node.targs:
                if t[:1] == "/":
                    break
            else:
                continue  # no file target (this runs for every DES touched: no generator made per DES)
            if node.trace != self.graph.current(node):
                continue  # stale anyway
            hit = False
            for targ in node.targs:
                if targ[:1] == "/" and targ not in self.graph.drifted:
                    what = self.drift(targ)
                    if what is not None:
                        self.graph.drifted[targ] = what
                        hit = True
            if hit:
                stale.append(des_id)
        return stale

    def all_targets(self, rows: Iterable[tuple[str, str | None, int, int, str]]) -> list[str]:
        """At start-up: the producers (brought into memory) of every file target, of ``rows`` (name, hash,
        mtime_ns, size, producer) as recorded, that drifted while the engine was down."""
        stale: list[str] = []
        for name, digest, mtime_ns, size, producer in rows:
            if name[:1] != "/":
                continue
            what = self.drift(name, known=FileState(mtime_ns, size, digest))
            if what is not None and self.graph.node(producer) is not None:
                self.graph.drifted[name] = what
                stale.append(producer)
        return stale

    def gone_deps(self, node: Node) -> list[str]:
        """The file deps of ``node`` that are not there now."""
        present = self.present
        return [dep for dep in node.deps if dep[:1] == "/" and dep not in present and stat_file(dep) is None]
