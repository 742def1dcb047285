"""Provides ``DocumentNodes``, the document tree's nodes: built lazily from the engine, dropped on collapse.

A group node lists a page of its members (asked of the engine, in name order, then sorted as the
user chose); a document node lists the DES that makes it and those that read it; a DES node lists
its deps or targets, following the direction it was reached from. Every document and DES node is
registered under its name, so a state change finds the nodes that show it, and what is on screen
stays pinned in the console's cache. ``document_tree.DocumentTree`` adds the keys and the updates.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, Literal

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tinyo.groups import GroupSummary

from ..palette import Palette
from ..sorting import SortMode, doc_key
from ..state import ConsoleState
from .document_labels import des_label, doc_label, group_label

PAGE = 200
"""Documents listed per page when a group is expanded."""
MAX_LINKS = 50
"""Consumer DES listed under a document."""

Direction = Literal["up", "down", "both"]
NodeData = tuple[str, str, Direction, int]
"""(kind, key, direction, offset): kind is group, doc, des or more."""


class DocumentNodes(Tree[NodeData]):
    """The tree's nodes and how they are built; the widget's behaviour is in ``DocumentTree``."""

    def __init__(self, state: ConsoleState, palette: Palette, *, id: str | None = None) -> None:
        super().__init__("documents", id=id)
        self.show_root = False
        self.auto_expand = False
        self.guide_depth = 2
        self._state = state
        self._palette = palette
        self._groups: dict[str, TreeNode[NodeData]] = {}
        self._group_order: list[str] = []
        self._docs: dict[str, list[TreeNode[NodeData]]] = {}
        self._des: dict[str, list[TreeNode[NodeData]]] = {}
        self.sort_mode: SortMode = "name"
        """Order of a group's members within each page: name, state (failures first) or duration."""
        # what is on screen stays in the console's cache
        state.pinned_docs = self._docs
        state.pinned_des = self._des

    # ------------------------------------------------------------------ the engine
    @property
    def _engine(self) -> Any:
        return getattr(self.app, "engine", None)

    def _fetch_docs(self, names: list[str]) -> None:
        """Cache the engine's current view of ``names`` (documents about to be shown)."""
        self._fetch("doc_infos", names, self._state.put_doc_info, "documents")

    def _fetch_des(self, ids: list[str]) -> None:
        self._fetch("des_infos", ids, self._state.put_des_info, "DES")

    def _fetch(self, query: str, keys: list[str], put: Callable[[Any], object], what: str) -> None:
        """Ask the engine's ``query`` about ``keys`` and cache each answer with ``put``."""
        engine = self._engine
        if engine is None or not keys:
            return
        try:
            for info in getattr(engine, query)(keys):
                put(info)
        except Exception as exc:  # the engine stopped or is busy: show what the cache has
            self.log.warning(f"{what} lookup failed: {exc}")

    # ------------------------------------------------------------------ labels
    def _doc_label(self, name: str, arrow: str = "") -> Text:
        return doc_label(self._state, self._palette, name, arrow)

    def _des_label(self, des_id: str, arrow: str) -> Text:
        return des_label(self._state, self._palette, des_id, arrow)

    def _group_label(self, group: GroupSummary) -> Text:
        return group_label(self._state, self._palette, group)

    # ------------------------------------------------------------------ building
    def _register(self, node: TreeNode[NodeData]) -> TreeNode[NodeData]:
        assert node.data is not None
        kind, key = node.data[0], node.data[1]
        if kind == "doc":
            self._docs.setdefault(key, []).append(node)
        elif kind == "des":
            self._des.setdefault(key, []).append(node)
        return node

    def _unregister_children(self, node: TreeNode[NodeData]) -> None:
        for child in node.children:
            self._unregister_children(child)
            if child.data is None:
                continue
            kind, key = child.data[0], child.data[1]
            registry = self._docs if kind == "doc" else self._des if kind == "des" else None
            if registry is not None and key in registry:
                nodes = [n for n in registry[key] if n is not child]
                if nodes:
                    registry[key] = nodes
                else:
                    del registry[key]

    def _add_group(self, pattern: str) -> None:
        group = self._state.groups[pattern]
        if group.count == 1 and (group.first not in self._state.docs or group.first in self._state.guessed):
            self._fetch_docs([group.first])
        index = bisect.bisect(self._group_order, pattern)
        self._group_order.insert(index, pattern)
        before = index if index < len(self.root.children) else None
        node = self.root.add(self._group_label(group), ("group", pattern, "both", 0), before=before)
        self._groups[pattern] = node

    def _add_doc(self, parent: TreeNode[NodeData], name: str, direction: Direction, arrow: str = "",
                 before: int | None = None) -> TreeNode[NodeData]:
        doc = self._state.docs.get(name)
        has_links = doc is not None and (doc.producer is not None or bool(doc.consumers) or doc.reader_count > 0)
        node = parent.add(self._doc_label(name, arrow), ("doc", name, direction, 0), before=before,
                          allow_expand=has_links)
        return self._register(node)

    def _add_des(self, parent: TreeNode[NodeData], des_id: str, direction: Direction, arrow: str) -> None:
        node = parent.add(self._des_label(des_id, arrow), ("des", des_id, direction, 0))
        self._register(node)

    def _fill(self, node: TreeNode[NodeData]) -> None:
        """Build ``node``'s children (on expand)."""
        if node.data is None:
            return
        kind, key, direction, offset = node.data
        state = self._state
        if kind == "group":
            group = state.groups.get(key)
            if group is None:
                return
            if group.count == 1:
                self._fill_doc(node, group.first, "both")
                return
            start = max(0, min(offset, group.count - 1))
            names = self._sorted(self._page(key, start))
            if start > 0:
                node.add_leaf(Text(f"… {start} earlier (enter)", style=self._palette.style("muted")),
                              ("more", key, "both", max(0, start - PAGE)))
            for name in names:
                self._add_doc(node, name, "both")
            rest = group.count - start - len(names)
            if rest > 0:
                node.add_leaf(Text(f"… {rest} more (enter, or / to jump)", style=self._palette.style("muted")),
                              ("more", key, "both", start + PAGE))
        elif kind == "doc":
            self._fill_doc(node, key, direction)
        elif kind == "des":
            self._fetch_des([key])
            des = state.des.get(key)
            if des is None:
                return
            shown = [*(des.deps if direction in ("up", "both") else ()),
                     *(des.targs if direction in ("down", "both") else ())]
            self._fetch_docs([n for n in shown if n not in state.docs])
            if direction in ("up", "both"):
                for name in sorted(des.deps):
                    self._add_doc(node, name, "up", "←")
            if direction in ("down", "both"):
                for name in sorted(des.targs):
                    self._add_doc(node, name, "down", "→")

    def _page(self, pattern: str, start: int) -> list[str]:
        """One page of a group's documents, from the engine (cached for their labels)."""
        engine = self._engine
        if engine is None:
            return []
        try:
            infos = engine.group_members(pattern, start, PAGE)
        except Exception as exc:  # the engine stopped or is busy: an empty page, the counts stay
            self.log.warning(f"group lookup failed: {exc}")
            return []
        return [self._state.put_doc_info(info).name for info in infos]

    def _sorted(self, names: list[str]) -> list[str]:
        """A page of members in the chosen order (the engine pages them by name)."""
        if self.sort_mode == "name":
            return names
        docs = self._state.docs
        key = doc_key(self.sort_mode, self._state.history)
        return sorted(names, key=lambda name: key(docs[name]) if name in docs else (float("inf"), name))

    def _fill_doc(self, node: TreeNode[NodeData], name: str, direction: Direction) -> None:
        self._fetch_docs([name])
        doc = self._state.docs.get(name)
        if doc is None:
            return
        consumers = sorted(doc.consumers or ()) if direction in ("down", "both") else []
        wanted = [*([doc.producer] if doc.producer is not None and direction in ("up", "both") else []),
                  *consumers[:MAX_LINKS]]
        self._fetch_des([d for d in wanted if d not in self._state.des])
        if doc.producer is not None and direction in ("up", "both"):
            self._add_des(node, doc.producer, "up", "made by")
        if direction in ("down", "both"):
            for des_id in consumers[:MAX_LINKS]:
                self._add_des(node, des_id, "down", "feeds")
            total = max(len(consumers), doc.reader_count)
            if total > MAX_LINKS:
                node.add_leaf(Text(f"… {total - MAX_LINKS} more DES", style=self._palette.style("muted")),
                              ("more", name, "down", 0))

    def _empty(self, node: TreeNode[NodeData]) -> None:
        self._unregister_children(node)
        node.remove_children()
