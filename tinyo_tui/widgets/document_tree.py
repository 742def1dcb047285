"""Provides DocumentTree: the document DAG as a lazily expanded tree, grouped by name pattern.

Top level: one node per name pattern (``print.* (12)`` with a count per state), or the document itself
when the pattern has one member. A document expands into the DES that produces it (upstream) and
the DES that read it (downstream); a DES expands into its deps or its targets, following the
direction it was reached from. Children are built on expand and dropped on collapse, so the tree
stays small with 100,000 documents; a state change repaints only the nodes that show it.

The group counts come from the engine (it keeps them as states change); members, producers and readers
are asked of the engine when a node expands, and what is on screen stays in the console's cache, where
bus events keep it current. How the nodes are built is in ``document_nodes``, their labels in
``document_labels``; this module is the pane's behaviour: keys, selection, repaints, the jump.
"""

from __future__ import annotations

import bisect
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..messages import OpenDetails, Selected
from ..sorting import next_mode
from ..state import Changes, group_key
from .document_nodes import PAGE, DocumentNodes, NodeData

__all__ = ["PAGE", "DocumentTree"]


class DocumentTree(DocumentNodes):
    """The documents pane: keys, selection, repaints on state changes, and the jump to a name."""

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

    def notify_style_update(self) -> None:
        """Styles changed (focus moved between panes, the theme changed): draw the lines again. Tree's own
        lays the whole screen out again as well, on every key that moves the focus; a colour does not
        change how many lines there are, and a change of spacing (a border) lays out by itself."""
        super(Tree, self).notify_style_update()
        self._line_cache.clear()
        self._updates += 1
        self.refresh()

    def render_label(self, node: TreeNode[NodeData], base_style: Style, style: Style) -> Text:
        """The node's label, ending in an ellipsis when the pane is too narrow for it (enter shows it whole)."""
        text = super().render_label(node, base_style, style)
        depth, parent = 0, node.parent
        while parent is not None and parent is not self.root:
            depth, parent = depth + 1, parent.parent
        room = self.scrollable_content_region.width - (depth + 1) * self.guide_depth
        if 1 < room < text.cell_len:
            text.truncate(room, overflow="ellipsis")
        return text

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
                   and g.count == 1 and (g.first not in state.docs or g.first in state.guessed)]
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
        engine = self._engine
        try:
            found = engine.find_documents(query, 1, regex=True) if engine is not None else []
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
