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


def _palette_lines(app: Any) -> list[str]:
    from textual.command import CommandList

    options = app.screen.query_one(CommandList)
    return [str(getattr(option.prompt, "plain", option.prompt)) for option in options._options]


@pytest.mark.parametrize("query", ["", "fire"])
def test_palette_shows_names_literally(query: str) -> None:
    """A timer named with markup and a zero-width space: listed and searched, the title reads exactly
    'Fire timer [bold]tick\\u200bnow' (no stray backslash, nothing bold, the invisible character shown)."""

    async def run() -> None:
        engine, app = console()
        engine.timers[0].name = "[bold]tick\u200bnow"
        async with app.run_test(size=WIDE) as pilot:
            await scripted(app)(pilot)
            await pilot.press("ctrl+p", *query)
            await pilot.pause(0.5)
            lines = _palette_lines(app)
            assert any(line.startswith("Fire timer [bold]tick\\u200bnow") for line in lines), lines
            assert not any("\\[" in line for line in lines), lines

    asyncio.run(run())


def test_palette_keys_opens_the_console_help_and_esc_closes_it() -> None:
    from tinyo_tui.screens.help import HelpScreen
    from tinyo_tui.screens.main import MainScreen

    async def run() -> None:
        _engine, app = console()
        async with app.run_test(size=WIDE) as pilot:
            await scripted(app)(pilot)
            await pilot.press("ctrl+p", *"keys")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert isinstance(app.screen, HelpScreen)
            assert not app.screen.query("HelpPanel") and not app.query("HelpPanel")
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert isinstance(app.screen, MainScreen)

    asyncio.run(run())


LONG = "warehouse.sales_by_region_and_quarter_with_currency_conversion_and_returns_2024_q4_final"


def _long_names(engine: Any) -> None:
    [des_id] = engine.receive("/tmp/data/" + LONG + ".csv", des=[
        ("loader", ["/tmp/data/" + LONG + ".csv"], [LONG], ["load_the_sales_by_region_and_quarter_table"])])
    engine.run(des_id, "w1", ["loading"], finish=False)


def test_long_names_end_in_an_ellipsis(snap_compare: Any) -> None:
    """At 80x24 in Workers (3): w1 busy on a long op and target, each cut at its column with '…'."""
    engine, app = console()
    assert snap_compare(app, press=["3"], terminal_size=(80, 24), run_before=scripted(app, lambda: _long_names(engine)))


def test_long_names_are_cut_with_an_ellipsis_and_shown_whole_in_details() -> None:
    from textual.widgets import Static

    from test_tui_pilot import render_text
    from tinyo_tui.widgets.document_tree import DocumentTree
    from tinyo_tui.widgets.workers_table import WorkersTable

    async def run() -> None:
        engine, app = console()
        async with app.run_test(size=(80, 24)) as pilot:
            await scripted(app, lambda: _long_names(engine))(pilot)
            await pilot.press("3")
            table = app.screen.query_one(WorkersTable)
            row = next(y for y in range(table.size.height) if "w1" in table.render_line(y).text)
            line = table.render_line(row).text
            assert "…" in line and LONG not in line, line
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            body = render_text(app.screen.query_one("#body", Static).content)
            assert LONG in body.replace("\n", ""), body
            await pilot.press("escape", "2")
            tree = app.screen.query_one(DocumentTree)
            lines = [tree.render_line(y).text for y in range(tree.size.height)]
            cut = [text for text in lines if LONG[:30] in text]
            assert cut and all(text.rstrip().endswith("…") for text in cut), lines

    asyncio.run(run())
