"""The console's Lanes pane shows a Lookup's misses and every instance's own counts, from a real flow run."""

from __future__ import annotations

import asyncio
import io
import sqlite3

from rich.console import Console

from test_tui_fixtures import ScriptedEngine
from tinyo import events as ev
from tinyo.flow import Flow, steps
from tinyo_tui.app import build_app
from tinyo_tui.widgets.lanes_view import LanesView


def _run_flow(tmp_path) -> tuple[list[dict], dict]:
    db = str(tmp_path / "m.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE carriers (code INTEGER, name TEXT)")
    conn.executemany("INSERT INTO carriers VALUES (?, ?)", [(i, f"c{i}") for i in range(8)])
    conn.commit()
    conn.close()
    src = tmp_path / "rows.csv"
    src.write_text("code\n" + "".join(f"{i % 10}\n" for i in range(400)))
    samples: list[dict] = []
    flow = Flow("enrich", params={"src": str(src)}, services={"db": db}, chunk_size=50)
    read = flow.step("read", steps.CsvInput("${params.src}", types={"code": int}), instances=2)
    look = flow.step("look", steps.Lookup(table="carriers", key="code"), instances=2)
    flow.hop(read, look)
    run = flow.run(on_metrics=samples.append)
    assert run.ok, run.error
    return samples, {m.instance: m for m in run.metrics["look"]}


def test_lanes_show_lookup_misses_and_per_instance_counts(tmp_path) -> None:
    samples, final = _run_flow(tmp_path)
    asyncio.run(_check(samples, final))


async def _check(samples: list[dict], final: dict) -> None:
    assert sum(m.counters["missed"] for m in final.values()) == 80  # codes 8 and 9 have no carrier
    engine = ScriptedEngine()
    app = build_app(engine, clock=engine.clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("4")
        for sample in samples:
            engine.pub(ev.FlowMetrics, run_id=1, **sample)
        app.drain_all()
        await pilot.pause()
        console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
        console.print(app.screen.query_one(LanesView).render())
        text = console.export_text()
    lines = {line.split()[0] + " " + line.split()[1]: line for line in text.splitlines()
             if line.strip().startswith(("read", "look"))}
    for index, m in final.items():
        line = lines[f"look {index + 1}/2"]
        assert f" {m.rows_in} " in line and f"miss:{m.counters['missed']}" in line
    reads = [lines[f"read {i}/2"] for i in (1, 2)]
    assert all("out:200" in line.split() for line in reads), reads  # each reader read its own half
