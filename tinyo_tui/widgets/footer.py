"""Provides StableFooter: Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer rebuilds all its key widgets whenever the screen's bindings are updated, which happens
on every focus change. Moving between panes a few times a second (a user paging through panes during a
flood) then makes hundreds of short-lived widgets a second; they hold reference cycles, so they pile up
until a full garbage collection. The keys shown rarely differ between panes, so this footer compares
what it would show with what it shows, and rebuilds only on a real difference.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class StableFooter(Footer):
    """A Footer that recomposes only when the shown keys (or their enabled state) change."""

    _shown: tuple[tuple[str, str, bool, str], ...] | None = None

    def _signature(self) -> tuple[tuple[str, str, bool, str], ...]:
        return tuple(
            (binding.key, binding.description, enabled, tooltip or "")
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show
        )

    def bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen and self._bindings_ready:
            signature = self._signature()
            if signature == self._shown:
                return
            self._shown = signature
        super().bindings_changed(screen)
