"""The run half's short paths against their general ones: a run taken for a DES whose dep's cached facts were
dropped from memory between its settle and its take reads them from the state file, as ``Graph.run_versions``
does, and runs on the same versions as one whose caches hold them."""

from __future__ import annotations

from pathlib import Path

from test_engine_parts import RECIPE, _des, _report, wire_loop


def test_a_run_taken_after_its_dep_left_the_caches_reads_its_version_from_the_state_file(tmp_path: Path):
    runs = {}
    for dropped in (False, True):
        folder = tmp_path / f"dropped-{dropped}"
        folder.mkdir()
        loop = wire_loop(folder, RECIPE)
        try:
            des = _des(loop, ["raw"], ["clean"])
            loop.documents.bump("raw", by="event")
            loop.documents.bump("raw", by="event")  # version 2: a version the take must read, not assume
            loop.dispatch.settle()
            loop._commit_and_publish([])  # the rows in the state file, as after a cycle
            if dropped:  # as an eviction between the settle and the take leaves them: asked of the store again
                del loop.graph.versions["raw"]
                del loop.graph.producer["raw"]
            (task,) = loop.dispatch.take(5)
            run = loop.runbook.open[task.run_id]
            assert task.des_id == des.id
            _report(loop, task.run_id, ok=True)
            loop.dispatch.settle()
            loop._commit_and_publish([])
            row = loop.store.conn.execute("SELECT dep_versions, status FROM runs WHERE id = ?", (task.run_id,)).fetchone()
            runs[dropped] = (run.dep_versions, run.dep_text, tuple(row), loop.graph.nodes[des.id].state)
        finally:
            loop.store.close()
    assert runs[True] == runs[False] == ({"raw": 2}, '{"raw": 2}', ('{"raw": 2}', "ok"), "ok")
