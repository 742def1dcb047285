"""``Engine.history()`` and ``Engine.des_of_event()``: the recent past read back from a real state file, bounded."""

from __future__ import annotations

from pathlib import Path

from conftest import Harness, write_recipe

RECIPE = """
def shout(context):
    for n in range(3):
        print(f"{context['config']['what']} line {n}")
    if context['config']['what'] == "bad":
        raise ValueError("bad on purpose")

@meta_task(root=True)
def words(event):
    if event.startswith("w_"):
        return (None, [DES(deps=[event], targs=[f"{side}.{event}"], ops=[(shout, Config(what=event[2:]))])
                       for side in ("a", "b")])
    return (None, [])

config = TinyOConfig(sql_conn={db}, dirs=[], max_workers=2, execution=Execution.THREADS)
"""


def test_history_reads_the_last_events_runs_and_lines_within_its_bounds(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, RECIPE, db=repr(str(tmp_path / "state.db")))
    with Harness(recipe) as h:
        for n in range(6):
            h.engine.inject(f"w_{n}")
        h.engine.inject("w_bad")
        h.wait_idle()
    with Harness(recipe) as h:  # a new session reads what the last one left
        past = h.engine.history(events=4, runs=5, lines=7)
        assert [e.name for e in past.events] == ["w_3", "w_4", "w_5", "w_bad"]
        assert all(e.des_count == 2 and e.source == "manual" for e in past.events)
        assert len(past.runs) == 5 and [r.run_id for r in past.runs] == sorted(r.run_id for r in past.runs)
        assert all(r.op == "shout" for r in past.runs)
        assert sum(len(r.output) for r in past.runs) == 7, "the newest lines, at most `lines` in all"
        assert past.runs[-1].output == ("bad line 0", "bad line 1", "bad line 2")
        assert past.runs[-1].status == "failed" and "bad on purpose" in past.runs[-1].error
        made = h.engine.des_of_event("w_2")
        assert len(made) == 2 and set(made) == {h.engine.graph.producer_of("a.w_2"), h.engine.graph.producer_of("b.w_2")}
        assert h.engine.des_of_event("never") == []
