"""Provides NamedCommands: the command palette's entries named after the recipe (timers) and the engine (DES).

Textual's system-command provider parses titles as markup when it highlights a search and shows them
as plain text when it lists them, so no escaping is right for both (an escaped ``[`` showed as ``\\[``).
This provider builds every title as literal Content, with control and invisible characters escaped by
the console's one rule (``visible``), and highlights the matched letters itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content



class NamedCommands(Provider):
    """Fire timer X, rerun DES Y: titles shown literally, whatever the names contain."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        source = getattr(self.app, "named_commands", None)
        return list(source()) if source is not None else []

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                content = Content(title)
                _score, offsets = matcher.fuzzy_search.match(matcher.query, title)
                for offset in offsets:
                    if not title[offset].isspace():
                        content = content.stylize(matcher.match_style, offset, offset + 1)
                yield Hit(score, content, callback, text=title, help=help_text)
