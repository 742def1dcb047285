"""Provides DocumentTree: the document DAG as a lazily expanded tree, grouped by name pattern.

Top level: one node per name pattern (``print.* (12)`` with a count per state), or the document itself
when the pattern has one member. A document expands into the DES that produces it (upstream) and
the DES that read it (downstream); a DES expands into its deps or its targets, following the
direction it was reached from. Children are built on expand and dropped on collapse, so the tree
stays small with 100,000 documents; a state change repaints only the nodes that show it.

The group counts come from the engine (it keeps them as states change); members, producers and readers
are asked of the engine when a node expands, and what is on screen stays in the console's cache, where
bus events keep it current.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tinyo.groups import GroupSummary

from ..messages import OpenDetails, Selected
from ..palette import Palette, glyph
from ..safe_text import short_id, visible
from ..sorting import DOC_STATE_ORDER, SortMode, doc_key, next_mode
from ..state import Changes, ConsoleState, group_key

PAGE = 200
"""Documents listed per page when a group is expanded."""
MAX_LINKS = 50
"""Consumer DES listed under a document."""
_STATE_ORDER = DOC_STATE_ORDER

Direction = Literal["up", "down", "both"]
NodeData = tuple[str, str, Direction, int]
"""(kind, key, direction, offset): kind is group, doc, des or more."""


class DocumentTree(Tree[NodeData]):
    """The documents pane."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,l", "expand", "Expand", show=False),
        Binding("left,h", "collapse", "Collapse", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("home,g", "scroll_home", "First", show=False),
        Binding("end,G", "scroll_end", "Last", show=False),
        Binding("s", "sort", "Sort", show=False, tooltip="Workers, documents: sort by name, state, duration"),
    ]

    DEFAULT_CSS = """
    DocumentTree { scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

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
        doc = self._state.docs.get(name)
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        if arrow:
            text.append(arrow + " ", style=style("muted"))
        if doc is None:
            text.append(visible(name))
            return text
        text.append(glyph(doc.state) + " ", style=style(doc.state))
        text.append(visible(name))
        if doc.version is not None:
            text.append(f" v{doc.version}", style=style("muted"))
        label = doc.state
        if doc.detail and doc.state in ("waiting", "stale", "failed"):
            label = f"{doc.state}: {doc.detail}"
        text.append(f"  {visible(label)}", style=style(doc.state))
        return text

    def _des_label(self, des_id: str, arrow: str) -> Text:
        node = self._state.des.get(des_id)
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        text.append(arrow + " ", style=style("muted"))
        if node is None:
            text.append(f"DES {short_id(des_id)}")
            return text
        state = "never built" if node.state == "registered" else node.state
        text.append(glyph(state) + " ", style=style(state))
        text.append("⚙ " + visible(node.op_label), style=style("primary"))
        text.append(f" [{short_id(des_id)}]", style=style("muted"))
        detail = f"{state}: {node.reason}" if node.reason and state in ("waiting", "stale", "failed") else state
        if node.worker and state == "running":
            detail += f" on {node.worker}"
        text.append(f"  {visible(detail)}", style=style(state))
        return text

    def _group_label(self, group: GroupSummary) -> Text:
        if group.count == 1:
            return self._doc_label(group.first)
        style = self._palette.style
        text = Text(no_wrap=True, end="")
        text.append(visible(group.pattern), style="bold")
        text.append(f" ({group.count})", style=style("muted"))
        for state in _STATE_ORDER:
            n = group.state_count(state)
            if n:
                text.append(f"  {glyph(state)}{n}", style=style(state))
        return text

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
        if group.count == 1 and group.first not in self._state.docs:
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

    def action_sort(self) -> None:
        """Cycle the members' order (name, state, duration) and relist the expanded groups."""
        self.sort_mode = next_mode(self.sort_mode)
        for node in list(self._groups.values()):
            group = self._state.groups.get(node.data[1]) if node.data is not None else None
            if node.is_expanded and group is not None and group.count > 1:
                self._empty(node)
                self._fill(node)
        self.border_subtitle = f"members by {self.sort_mode}" if self.sort_mode != "name" else ""
        self.notify(f"document members sorted by {self.sort_mode} (within each page of {PAGE})",
                    markup=False, timeout=2)

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

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeData]) -> None:
        event.stop()
        if not event.node.children:
            self._fill(event.node)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[NodeData]) -> None:
        event.stop()
        self._empty(event.node)

    def current_selection(self) -> Selected | None:
        """What the keys act on: the DES under the cursor, or the document (and its producer)."""
        node = self.cursor_node
        if node is None or node.data is None or node.data[0] == "more":
            return None
        kind, key = node.data[0], node.data[1]
        if kind == "group":
            group = self._state.groups.get(key)
            if group is None or group.count != 1:
                return None
            key = group.first
        des_id = self.des_for(node)
        des = self._state.des.get(des_id or "")
        run_id = des.run_id if des is not None and des.state == "running" else None
        return Selected("des" if kind == "des" else "document", key, des_id=des_id, run_id=run_id)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeData]) -> None:
        event.stop()
        selection = self.current_selection()
        if selection is not None:
            self.post_message(selection)

    def on_tree_node_selected(self, event: Tree.NodeSelected[NodeData]) -> None:
        event.stop()
        node = event.node
        data = node.data
        if data is None:
            return
        if data[0] == "more":
            parent = node.parent
            if parent is not None and parent.data is not None and data[2] == "both":
                self._empty(parent)
                parent.data = (parent.data[0], parent.data[1], parent.data[2], data[3])
                self._fill(parent)
            return
        if data[0] == "group":
            group = self._state.groups.get(data[1])
            if group is not None and group.count > 1:
                node.toggle()
                return
            name = group.first if group else data[1]
            self.post_message(OpenDetails("document", name, des_id=self.des_for(node)))
            return
        kind = "des" if data[0] == "des" else "document"
        self.post_message(OpenDetails(kind, data[1], des_id=self.des_for(node)))

    def des_for(self, node: TreeNode[NodeData]) -> str | None:
        """The DES a node stands for: itself, or the producer of its document."""
        data = node.data
        if data is None:
            return None
        if data[0] == "des":
            return data[1]
        name = data[1]
        if data[0] == "group":
            group = self._state.groups.get(name)
            if group is None or group.count != 1:
                return None
            name = group.first
        doc = self._state.docs.get(name)
        return doc.producer if doc is not None else None

    def action_expand(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()

    def action_collapse(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded:
            node.collapse()
        elif node.parent is not None and not node.parent.is_root:
            self.select_node(None)
            self.move_cursor(node.parent)

    # ------------------------------------------------------------------ updates
    def apply(self, changes: Changes) -> None:
        """Repaint what ``changes`` touched; add nodes for new groups."""
        state = self._state
        touched_groups: set[str] = set(changes.groups)
        for pattern in changes.groups:
            group = state.groups.get(pattern)
            node = self._groups.get(pattern)
            if group is None:
                continue
            if node is None:
                self._add_group(pattern)
            elif node.is_expanded and group.count == 2 and not any(
                    c.data and c.data[0] == "doc" and c.data[2] == "both" for c in node.children):
                # The group was showing its single document's links; it becomes a list now.
                self._empty(node)
                self._fill(node)
        for name in changes.new_docs:
            pattern = group_key(name)
            node = self._groups.get(pattern)
            group = state.groups.get(pattern)
            if node is None or group is None or not node.is_expanded or group.count > PAGE or group.count < 2:
                continue
            shown = [child.data[1] for child in node.children if child.data and child.data[0] == "doc"]
            if name in shown:
                continue
            # The whole group is listed: insert the new document in name order.
            index = bisect.bisect(shown, name) if self.sort_mode == "name" else len(node.children)
            self._add_doc(node, name, "both", before=index if index < len(node.children) else None)
        for name in changes.changed_docs:
            touched_groups.add(group_key(name))
            for node in self._docs.get(name, ()):
                arrow = "←" if node.data and node.data[2] == "up" else "→" if node.data and node.data[2] == "down" else ""
                node.set_label(self._doc_label(name, arrow))
                if not node.allow_expand:
                    doc = state.docs.get(name)
                    if doc is not None and (doc.producer or doc.consumers):
                        node.allow_expand = True
        for des_id in changes.changed_des:
            for node in self._des.get(des_id, ()):
                arrow = "made by" if node.data and node.data[2] == "up" else "feeds"
                node.set_label(self._des_label(des_id, arrow))
        singles = [g.first for p in touched_groups if (g := state.groups.get(p)) is not None
                   and g.count == 1 and g.first not in state.docs]
        self._fetch_docs(singles)
        for pattern in touched_groups:
            node = self._groups.get(pattern)
            group = state.groups.get(pattern)
            if node is not None and group is not None:
                node.set_label(self._group_label(group))
        if self.cursor_line < 0 and self.root.children:
            # A cursor from the start, so space and enter act on a node the user can see.
            self.call_after_refresh(self._first_cursor)

    def _first_cursor(self) -> None:
        if self.cursor_line < 0 and self.root.children:
            self.move_cursor(self.root.children[0])

    def relabel_all(self) -> None:
        """Rebuild every label (after a theme change)."""
        for pattern, node in self._groups.items():
            group = self._state.groups.get(pattern)
            if group is not None:
                node.set_label(self._group_label(group))
        for name, nodes in self._docs.items():
            for node in nodes:
                arrow = "←" if node.data and node.data[2] == "up" else "→" if node.data and node.data[2] == "down" else ""
                node.set_label(self._doc_label(name, arrow))
        for des_id, nodes in self._des.items():
            for node in nodes:
                node.set_label(self._des_label(des_id, "made by" if node.data and node.data[2] == "up" else "feeds"))

    # ------------------------------------------------------------------ jump
    def jump(self, query: str) -> str | None:
        """Select the first document whose name matches ``query`` (regex, else substring).

        Returns the document's name, or None when nothing matches.
        """
        try:
            pattern = re.compile(query, re.IGNORECASE)
            match = pattern.search
        except re.error:
            lowered = query.lower()
            match = lambda name: lowered in name.lower()  # noqa: E731
        engine = self._engine
        try:
            found = engine.find_documents(match, 1) if engine is not None else []
            place = engine.locate(found[0]) if found else None
        except Exception as exc:  # the engine stopped or is busy
            self.log.warning(f"jump failed: {exc}")
            return None
        if place is None:
            return None
        name, (key, index) = found[0], place
        node = self._groups.get(key)
        group = self._state.groups.get(key)
        if node is None or group is None:
            return None
        if group.count == 1:
            self.move_cursor(node)
            return name
        offset = (index // PAGE) * PAGE
        self._empty(node)
        assert node.data is not None
        node.data = (node.data[0], node.data[1], node.data[2], offset)
        self._fill(node)
        node.expand()
        for child in node.children:
            if child.data is not None and child.data[0] == "doc" and child.data[1] == name:
                # The new lines exist only after the tree rebuilds them (on refresh).
                self.call_after_refresh(self._select, child)
                break
        return name

    def _select(self, node: TreeNode[NodeData]) -> None:
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)
