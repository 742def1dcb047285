"""The run half's short paths against their general ones: a run taken for a DES whose dep's cached facts were
dropped from memory between its settle and its take reads them from the state file, as ``Graph.run_versions``
does, and runs on the same versions as one whose caches hold them; each short path (dispatch's one-dep versions,
the leaves settled in place, a run told in one message or in a batch) gives what its general twin gives on the
same states."""

from __future__ import annotations

from pathlib import Path

from test_engine_parts import RECIPE, _des, _report, wire_loop

from tinyo import events as ev


def _loop_in(folder: Path):  # noqa: ANN202
    """A loop wired on a state file in ``folder`` (made here): one per case, nothing shared between them."""
    folder.mkdir()
    return wire_loop(folder, RECIPE)


def test_a_run_taken_after_its_dep_left_the_caches_reads_its_version_from_the_state_file(tmp_path: Path):
    runs = {}
    for dropped in (False, True):
        loop = _loop_in(tmp_path / f"dropped-{dropped}")
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


UPSTREAMS = ("source", "source-known", "made-waiting", "made-never-ran", "made-done", "made-stale-again",
             "file", "file-gone")
"""The kinds of a DES's dep, each as the engine leaves it: a source document (without a version, with one), a
target whose producer waits (not blocking), has never run or must run again (blocking) or is done (not
blocking), a file present or gone."""


def _dep_as(loop, files: Path, upstream: str) -> str:
    """The dep ``upstream`` names, brought to that state through the engine's own parts (a file dep in ``files``:
    the same path for both twins)."""
    if upstream.startswith("source"):
        if upstream == "source-known":
            loop.documents.bump("a", by="event")
            loop.documents.bump("a", by="event")
        return "a"
    if upstream.startswith("file"):
        path = files / "in.csv"
        path.write_text("x\n")
        loop.documents.from_event(str(path), None)
        loop.dispatch.settle()
        if upstream == "file-gone":
            path.unlink()
            loop.documents.file_gone(str(path))
        return str(path)
    _des(loop, ["src"], ["mid"])
    if upstream != "made-waiting":
        loop.documents.bump("src", by="event")
    if upstream in ("made-done", "made-stale-again"):
        loop.dispatch.settle()
        (task,) = loop.dispatch.take(5)
        _report(loop, task.run_id, ok=True)
        loop.dispatch.settle()
        loop._commit_and_publish([])
        if upstream == "made-stale-again":
            loop.documents.bump("src", by="event")
    loop.dispatch.settle()
    return "mid"


def _drop(loop, deps, cached: bool) -> None:
    if not cached:  # as an eviction leaves them: read from the state file again
        for dep in deps:
            loop.graph.versions.pop(dep, None)
            loop.graph.producer.pop(dep, None)


def test_the_short_paths_give_what_the_general_ones_give_on_the_same_states(tmp_path: Path):
    """``Dispatch.take``'s one-dep versions are ``Graph.run_versions``'s, and ``Graph.settle_leaves_in``'s verdicts
    ``Graph.settle``'s, for every kind of dep (one dep or two), cached or read from the state file: a twin of the
    engine's state taken each way."""
    seen = set()
    for upstream in UPSTREAMS:
        for two in (False, True):
            for cached in (True, False):
                twins = []
                for side in ("short", "general"):
                    loop = _loop_in(tmp_path / f"{upstream}-{two}-{cached}-{side}")
                    dep = _dep_as(loop, tmp_path, upstream)
                    if two:
                        loop.documents.bump("side", by="event")
                    des = _des(loop, [dep, "side"] if two else [dep], ["out"])
                    loop._commit_and_publish([])
                    _drop(loop, des.deps, cached)
                    twins.append((loop, loop.graph.nodes[des.id]))
                (short, node), (general, twin) = twins
                case = (upstream, two, cached)
                try:
                    ready, changed = general.graph.settle([twin.id])
                    view = lambda n: (n.state, n.was, n.blocking, n.reason)  # noqa: E731
                    other = frozenset({"ok", "stale", "waiting", "running", "queued"}) - {twin.state}
                    assert short.graph.settle_leaves_in((node,), other) == ([], [node]), case
                    assert node.state == "new", (case, "a verdict not asked for leaves the DES as it was")
                    applied, undecided = short.graph.settle_leaves_in((node,), frozenset({twin.state}))
                    assert undecided == [] and applied == [node] and [n.id for n in changed] == [twin.id], case
                    assert view(node) == view(twin), case
                    seen.add(twin.state)
                    _drop(short, des.deps, cached)
                    _drop(general, des.deps, cached)
                    short.dispatch.ready.clear()  # an upstream ready to run is not what is compared
                    short.dispatch.ready.append(node.id)
                    tasks = short.dispatch.take(1)
                    expected = general.graph.run_versions(twin)
                    if upstream == "file-gone":
                        assert tasks == [] and node.status is None, case
                    elif expected is None:
                        assert tasks == [] and node.status is None and node.id in short.dispatch.touched, case
                    else:
                        (task,) = tasks
                        assert short.runbook.open[task.run_id].dep_versions == expected, case
                        seen.add(len(expected))
                finally:
                    short.store.close()
                    general.store.close()
    assert seen >= {"stale", "waiting", 0, 1, 2}, seen  # verdicts, and how many deps a run recorded


def test_a_run_told_in_one_message_or_two_in_a_batch_or_alone_leaves_the_same(tmp_path: Path):
    """A run's start and end come as one ``ran`` message (a quick op) or a ``start`` and a ``done``, in a batch of
    reports (settled in place, rows written together) or one at a time (settled by dispatch): the runbook's short
    paths (``_ran``'s and ``on_reports``' ok branch, the batch's rows, the moves told) leave the same DES states,
    rows, facts and ready queue as its general one, for a DES nothing reads, one something reads, ok or failed."""
    outcomes = {}
    for one_message in (True, False):
        for batched in (True, False):
            loop = _loop_in(tmp_path / f"ran-{one_message}-{batched}")
            try:
                leaf_ok = _des(loop, ["raw"], ["out_ok"])
                leaf_failed = _des(loop, ["raw"], ["out_failed"])
                read = _des(loop, ["raw"], ["out_read"])
                reader = _des(loop, ["out_read"], ["final"])
                ids = [d.id for d in (leaf_ok, leaf_failed, read, reader)]
                loop.documents.bump("raw", by="event")
                loop.dispatch.settle()
                tasks = loop.dispatch.take(5)
                assert sorted(t.des_id for t in tasks) == sorted(ids[:3])
                loop._commit_and_publish([])
                loop.published.clear()
                messages = []
                for task in tasks:
                    ok = task.des_id != leaf_failed.id
                    done = (ok, None if ok else "boom", None if ok else "Traceback", None, 0.5)
                    if one_message:
                        messages.append(("ran", task.run_id, ("w1", 10.0, *done)))
                    else:
                        messages += [("start", task.run_id, ("w1", 10.0)), ("done", task.run_id, done)]
                if batched:
                    loop.runbook.on_reports("w1", messages)
                else:
                    for kind, run_id, payload in messages:
                        loop.runbook.on_message("w1", kind, run_id, payload)
                loop.dispatch.settle()
                then = loop.dispatch.take(5)
                loop._commit_and_publish(then)
                store, nodes = loop.store, loop.graph.nodes
                outcomes[one_message, batched] = {
                    "nodes": {i: (nodes[i].state, nodes[i].was, nodes[i].blocking, nodes[i].reason, nodes[i].trace,
                                  nodes[i].status) for i in ids},
                    "rows": {i: [(r.id, r.status, r.error) for r in store.runs_for(i)] for i in ids},
                    "des rows": {i: (r.state, r.trace, r.failed_trace, r.attempt)
                                 for i in ids if (r := store.des_row(i)) is not None},
                    "ready": [t.des_id for t in then],
                    "told": dict(loop.runbook.told),
                    "facts": [f for f in loop.published if not isinstance(f, ev.EngineState)],
                }
            finally:
                loop.store.close()
    general = outcomes[False, False]
    assert general["ready"] == [reader.id] and general["nodes"][leaf_ok.id][0] == "ok"
    for key, outcome in outcomes.items():
        assert outcome == general, key
