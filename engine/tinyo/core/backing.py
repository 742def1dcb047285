"""Provides the graph's view of the store: DES and document facts evicted from memory are read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..dag import Node
    from ..store import Store


class StoreBacking:
    """The ``dag.Backing`` the engine gives its graph. ``build`` turns a stored DES row into a node."""

    def __init__(self, store: Store, build: Callable[[Any], Node] | None = None) -> None:
        self.store = store
        self.build = build

    def node(self, des_id: str) -> Node | None:
        row = self.store.des_lookup(des_id)
        if row is None:
            return None
        assert self.build is not None, "the engine sets build before the graph is used"
        return self.build(row)

    def versions(self, docs: list[str]) -> dict[str, int]:
        return self.store.doc_versions_many(docs)

    def producers(self, docs: list[str]) -> dict[str, str]:
        return self.store.producers_many(docs)

    def consumers(self, docs: list[str]) -> dict[str, list[str]]:
        return self.store.consumers_many(docs)

    def existing_des(self, des_ids: list[str]) -> set[str]:
        return self.store.des_existing(des_ids)

    def known(self, docs: list[str]) -> set[str]:
        return self.store.names_known(docs)
