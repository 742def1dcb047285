"""Provides ``ConsoleHost``: what the screens ask of the console app (``app.TinyoApp`` is the one
implementation), so the screens never import the app module that pushes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .commands import Commands
    from .messages import Target
    from .palette import Palette
    from .state import ConsoleState, EventRow


class ConsoleHost(Protocol):
    """The console app as its screens see it."""

    engine: Any
    """The engine the console drives (queried off the UI thread)."""
    state: ConsoleState
    palette: Palette
    commands: Commands
    recipe_name: str

    def now(self) -> float:
        """The injected clock's time."""
        ...

    def find_event_row(self, seq: str) -> EventRow | None: ...

    def describe_des(self, des_id: str) -> str: ...

    def known_flows(self) -> list[str]: ...

    def open_details(self, kind: Target, key: str, des_id: str | None = None) -> None: ...

    def toggle_pause(self) -> None: ...

    def ask_inject(self, value: str = "") -> None: ...

    def pick_timer(self) -> None: ...

    def confirm_cancel(self, run_id: int, des_id: str) -> None: ...
