"""Snapshots (and pilot checks on the scripted engine) of what the operator must be able to see:
the selection cursor in every theme, the filter input while typing, whole names, escaped names.

Each docstring says what you should see. Deterministic: a scripted engine on a ManualClock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from test_tui_snapshots import WIDE, console, scripted, utc  # noqa: F401 (utc: autouse fixture)
from test_tui_fixtures import retail_scenario
from tinyo_tui.widgets.event_stream import EventStream
from tinyo_tui.widgets.output_log import OutputLog

THEMES = ["dark", "light", "high-contrast"]


@pytest.mark.parametrize("theme", THEMES)
def test_cursor_visible(snap_compare: Any, theme: str) -> None:
    """At 80x24 in each theme, the Events pane focused with the cursor moved up two rows: that row
    (third from the bottom) is drawn in the theme's cursor colours across the whole width."""
    engine, app = console(theme)
    assert snap_compare(app, press=["up", "up"], terminal_size=(80, 24),
                        run_before=scripted(app, lambda: retail_scenario(engine, fail=True)))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("pane", [EventStream, OutputLog])
def test_the_cursor_row_takes_the_theme_cursor_background(theme: str, pane: type) -> None:
    """Every cell of the selected row has the theme's cursor background, in Events and in Output."""

    async def run() -> None:
        engine, app = console(theme)
        async with app.run_test(size=WIDE) as pilot:
            await scripted(app, lambda: retail_scenario(engine, fail=True))(pilot)
            log = app.screen.query_one(pane)
            log.focus()
            await pilot.pause()
            await pilot.press("up")
            await pilot.pause()
            cursor = log.get_component_rich_style("stream-log--cursor").bgcolor
            assert cursor is not None
            row = log.cursor - log.scroll_offset.y
            strip = log.render_line(row)
            colours = {segment.style.bgcolor for segment in strip if segment.text.strip()}
            assert colours == {cursor}, f"cursor row backgrounds {colours}, theme cursor {cursor}"
            other = log.render_line(row - 1)
            assert all(segment.style.bgcolor != cursor for segment in other), "only the cursor row"

    asyncio.run(run())


@pytest.mark.parametrize("size", [(80, 24), WIDE])
def test_filter_input_visible_while_typing(snap_compare: Any, size: tuple[int, int]) -> None:
    """'/' then 'fact' typed: the filter line sits just above the footer, showing 'fact' and the
    cursor; the footer keys stay below it; the Events pane lists only the fact_file events."""
    engine, app = console()
    assert snap_compare(app, press=["slash", *"fact"], terminal_size=size,
                        run_before=scripted(app, lambda: retail_scenario(engine)))


@pytest.mark.parametrize("size", [(80, 24), WIDE])
def test_the_filter_line_is_not_under_the_footer(size: tuple[int, int]) -> None:
    from textual.widgets import Footer

    from tinyo_tui.widgets.filter_bar import FilterBar

    async def run() -> None:
        engine, app = console()
        async with app.run_test(size=size) as pilot:
            await scripted(app, lambda: retail_scenario(engine))(pilot)
            await pilot.press("slash", *"fact")
            await pilot.pause()
            bar, footer = app.screen.query_one(FilterBar), app.screen.query_one(Footer)
            assert bar.region.height == 1 and bar.region.width > 40
            assert not bar.region.overlaps(footer.region), (bar.region, footer.region)
            assert bar.region.bottom <= footer.region.y

    asyncio.run(run())
