"""What a commit writes: processing events moves a watermark instead of rewriting each event's row (and
one row per commit keeps what each event made), a document is one row per commit whatever parts of it
changed, and a DES changed several times before a commit is written once. Real SQLite files; the rows
written are counted by SQLite itself (``total_changes``)."""

from __future__ import annotations

from pathlib import Path

from tinyo.store import Store
from tinyo.store_schema import RUN_CHAIN


def written(store: Store, step) -> int:  # noqa: ANN001
    """Rows SQLite inserted, updated or deleted for ``step`` and the commit after it."""
    before = store.conn.total_changes
    step()
    store.commit()
    return store.conn.total_changes - before


def test_processed_events_cost_one_row_per_commit_and_keep_what_each_made(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = Store(path)
    try:
        ids = store.add_events([(1.0, "manual", f"e{i}", "new") for i in range(5)])
        store.commit()
        assert ids == [1, 2, 3, 4, 5] and store.pending_events() == 5
        # three events processed in one commit: one row for the batch, one for the event with an error
        assert written(store, lambda: store.mark_events([("done", "2 DES", 1), ("done", "0 DES", 2),
                                                         ("error", "1 DES, 1 generator error(s)", 3)])) == 2
        assert store.conn.execute("SELECT count(*) FROM events WHERE status IS NULL").fetchone()[0] == 4
    finally:
        store.close()
    store = Store(path)  # what a restart finds (a kill after that commit finds the same)
    try:
        assert [e[4:] for e in store.recent_events(10)] == [
            ("done", "2 DES"), ("done", "0 DES"), ("error", "1 DES, 1 generator error(s)"), ("new", None), ("new", None)]
        assert store.pending_events() == 2
        assert [e[0] for e in store.new_events(0, 10)] == [4, 5]
        # an event stored and processed in the same commit: its insert carries its status, nothing more (here
        # it is processed before 4 and 5, so the watermark stays where it is)
        assert written(store, lambda: store.mark_events([("done", "1 DES", i) for i in
                                                         store.add_events([(2.0, "timer", "t", "new")])])) == 1
        assert store.recent_events(1)[0][1:] == (2.0, "timer", "t", "done", "1 DES")
        # processed before 4 and 5 (the engine keeps to the order; the store does not rely on it): 4 and 5
        # are still pending, and once they are processed the watermark moves over 6 as well
        assert [e[0] for e in store.new_events(0, 10)] == [4, 5] and store.pending_events() == 2
    finally:
        store.close()
    store = Store(path)
    try:
        assert [e[0] for e in store.new_events(0, 10)] == [4, 5]
        assert written(store, lambda: store.mark_events([("done", "1 DES", 4), ("done", "3 DES", 5)])) == 1
        assert store.pending_events() == 0 and store.new_events(0, 10) == []
        assert [e[4:] for e in store.recent_events(3)] == [("done", "1 DES"), ("done", "3 DES"), ("done", "1 DES")]
        ids = store.add_events([(3.0, "manual", "e7", "new")])
        store.commit()
        assert written(store, lambda: store.mark_events([("done", "0 DES", ids[0])])) == 1
        assert store.recent_events(1)[0][4:] == ("done", "0 DES")
    finally:
        store.close()


def test_retention_keeps_the_watermark_and_the_counts_of_the_events_kept(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    try:
        for start in range(0, 30, 10):  # three commits of ten events, each processed in the next commit
            ids = store.add_events([(1.0, "manual", f"e{start + i}", "new") for i in range(10)])
            store.commit()
            store.mark_events([("done", f"{i % 3} DES", i) for i in ids])
            store.commit()
        assert store.prune_events(5) == 25
        assert store.conn.execute("SELECT count(*) FROM processed").fetchone()[0] == 1
        assert [(e[0], e[5]) for e in store.recent_events(10)] == [(i, f"{i % 3} DES") for i in range(26, 31)]
        assert store.pending_events() == 0 and store.new_events(0, 10) == []
        assert store.add_events([(2.0, "manual", "later", "new")]) == [31]
        assert store.pending_events() == 1
    finally:
        store.close()


def test_a_document_is_one_row_per_commit_whatever_parts_of_it_changed(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    path = "/in/a.csv"
    try:
        # taken in and processed in one commit: its file as seen, its group and its first version
        assert written(store, lambda: (store.set_file_seen(path, 10, 3, "h1"), store.add_names([(path, "/in/*.csv")]),
                                       store.put_documents([(path, 1, "h1", 10, 3, 5.0, "event")]))) == 1
        assert store.doc_files_many([path]) == {path: (1, "h1", 10, 3)}
        # taken in again (changed), not processed yet: the version's file state stays as it was
        assert written(store, lambda: store.set_file_seen(path, 20, 4, "h2")) == 1
        assert store.files_seen_many([path]) == {path: (20, 4, "h2")}
        assert store.doc_files_many([path]) == {path: (1, "h1", 10, 3)}
        # processed: the new version; the seen state and the first group stay
        store.put_documents([(path, 2, "h2", 20, 4, 6.0, "event")])
        store.add_names([(path, "other")])
        store.commit()
        assert store.doc_files_many([path]) == {path: (2, "h2", 20, 4)}
        assert store.files_seen_many([path]) == {path: (20, 4, "h2")}
        assert list(store.all_names()) == [(path, "/in/*.csv", 2, None)]
        # a target named by a new DES: its group and producer in one row, no version yet
        assert written(store, lambda: (store.add_names([("out", "out")]),
                                       store.add_des([("d1", frozenset([path]), frozenset(["out"]), ("op",), None,
                                                       "gen", "ev", 1.0)]))) == 3  # the document, the DES, a reader
        assert store.producers_many(["out", path]) == {"out": "d1"} and store.doc_versions_many(["out"]) == {}
        assert store.names_known(["out", path, "nope"]) == {"out", path}
        # a file taken in but not processed yet is not a document of the DAG
        store.set_file_seen("/in/b.csv", 1, 1, None)
        store.commit()
        assert store.names_known(["/in/b.csv"]) == set() and store.count("names") == 2
        assert store.count("documents") == 1 and store.count("files_seen") == 2
        assert [name for name, *_ in store.load_documents()] == [path]
    finally:
        store.close()


def test_a_des_changed_several_times_before_a_commit_is_written_once_as_it_was_last(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    try:
        store.add_des([("d1", frozenset(["a"]), frozenset(["b"]), ("op",), None, "gen", "ev", 1.0)])
        store.commit()
        assert written(store, lambda: store.update_des([("queued", None, None, False, "d1"),
                                                        ("running", None, None, False, "d1"),
                                                        ("ok", {"a": 1}, None, False, "d1")])) == 1
        row = store.des_lookup("d1")
        assert (row.state, row.trace) == ("ok", {"a": 1})
    finally:
        store.close()


def test_open_runs_are_found_from_the_last_run_s_row_however_far_behind_the_oldest_is(tmp_path: Path) -> None:
    """Each run row records the oldest run open when it was added (``open_from``): the open runs at a start are
    those from the last row's on (an old run open behind a thousand finished ones too); a run added without
    it (0) makes the next start look at every run, and finds the same."""
    store = Store(str(tmp_path / "s.db"))
    try:
        store.add_des([(f"d{i}", frozenset(["a"]), frozenset([f"b{i}"]), ("op",), None, "gen", "ev", 1.0)
                       for i in range(1, 1003)])
        store.add_runs([(1, "d1", 1, '{"a": 1}')], 1)
        store.commit()
        for i in range(2, 1002):  # one at a time, as a chain's links: each ends before the next is added
            store.add_runs([(i, f"d{i}", 1, '{"a": 1}')], 1)
            store.runs_ok([(2.0, "", None, "w1", 1.0, i)])
            store.commit()
        assert store.open_runs_full() == [(1, "d1", 1, {"a": 1})]
        assert store.open_runs() == [(1, "d1")]
        store.add_runs([(1002, "d1002", 1, '{"a": 2}')])
        store.commit()
        assert store.open_runs() == [(1, "d1"), (1002, "d1002")]
        store.runs_ok([(2.0, "", None, "w1", 1.0, 1)])
        store.add_runs([(1003, "d1", 2, '{"a": 2}')], 1002)
        store.commit()
        assert store.open_runs() == [(1002, "d1002"), (1003, "d1")]
    finally:
        store.close()
    reopened = Store(str(tmp_path / "s.db"), read_only=True, lock=False)
    try:
        assert reopened.open_runs() == [(1002, "d1002"), (1003, "d1")]
    finally:
        reopened.close()


def test_a_des_s_runs_are_a_chain_of_ids_read_by_primary_key_whatever_ends_them(tmp_path: Path) -> None:
    """A DES's runs are found without an index of the runs by DES (schema 6): its row keeps its last run to end,
    each run the DES's run that ended before it, both written with the rows that end the run. Every way a run
    ends joins the chain (ok, failed, interrupted, ended with no new state for its DES), two runs of one DES ending
    in one commit too, and a run queued by an earlier store; an open run is found among the open runs; a pruned
    run ends the chain; ``runs_for`` reads at most ``limit`` runs, each by its id, however long the history."""
    store = Store(str(tmp_path / "s.db"))
    try:
        store.add_des([(f"d{i}", frozenset(["a"]), frozenset([f"b{i}"]), ("op",), None, "gen", "ev", 1.0)
                       for i in (1, 2)])
        store.add_runs([(1, "d1", 1, '{"a": 1}'), (2, "d2", 1, '{"a": 1}')], 1)
        store.commit()
        assert [r.id for r in store.runs_for("d1")] == [1]  # open: found among the open runs
        store.runs_ok([(2.0, "", None, "w1", 1.0, 1)])
        store.update_des([('{"a": 1}', "d1")])
        store.finish_runs([("failed", 2.0, "boom", None, None, None, "w1", 1.0, 2)])
        store.update_des([("failed", None, {"a": 1}, False, "d2")])
        store.commit()
        store.add_runs([(3, "d1", 1, '{"a": 2}'), (4, "d2", 2, '{"a": 2}')], 3)
        store.commit()
        store.runs_ok([(3.0, "", None, "w1", 2.5, 3)])  # no new state for d1 in this commit
        store.commit()
        store.add_runs([(5, "d1", 1, '{"a": 3}')], 4)
        store.runs_ok([(4.0, "", None, "w1", 3.5, 5)])
        store.add_runs([(6, "d1", 1, '{"a": 4}')], 4)
        store.runs_ok([(4.1, "", None, "w1", 4.0, 6)])  # d1's runs 5 and 6 end in one commit
        store.commit()
        assert [r.id for r in store.runs_for("d1")] == [1, 3, 5, 6]
        assert [(r.id, r.status) for r in store.runs_for("d2")] == [(2, "failed"), (4, "queued")]
        assert store.last_error("d2") == "boom"
    finally:
        store.close()
    store = Store(str(tmp_path / "s.db"))  # a later engine: the open run was queued by the last one
    try:
        store.finish_runs([("interrupted", 5.0, "the engine stopped", None, None, None, None, None, 4)])
        store.commit()
        assert [(r.id, r.status) for r in store.runs_for("d2")] == [(2, "failed"), (4, "interrupted")]
        assert store.last_error("d2") == "the engine stopped"
        run_id = 7
        for _ in range(100):
            store.add_runs([(run_id, "d2", 1, '{"a": 5}')], run_id)
            store.runs_ok([(6.0, "", None, "w1", 5.5, run_id)])
            store.commit()
            run_id += 1
        store.add_runs([(run_id, "d2", 1, '{"a": 5}')], run_id)
        store.commit()
        assert [r.id for r in store.runs_for("d2", limit=5)] == list(range(run_id - 4, run_id + 1))
        plan = " ".join(str(r) for r in store.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT id FROM runs WHERE id IN ({RUN_CHAIN})", ("d2", 5)))
        assert "SCAN runs" not in plan and "SCAN r " not in plan, plan  # by id only, never through the table
        # (the open run: among the runs a start looks at, from the last run's ``open_from`` on: ``OPEN_RUNS``)
        assert store.prune_runs(20) > 0
        assert [r.id for r in store.runs_for("d1")] == []  # pruned: the chain ends where its runs are gone
        assert [r.id for r in store.runs_for("d2", limit=50)] == list(range(run_id - 19, run_id + 1))
    finally:
        store.close()


def test_a_run_ended_ok_and_its_des_up_to_date_are_written_by_their_own_statements_as_given_last(
        tmp_path: Path) -> None:
    """The common outcome binds only what varies (``runs_ok``, and ``des_ok`` through the DES updates' keys):
    the rows read back as the general statements write them, and a DES set up to date and otherwise in one
    commit is written once, as it was last, whichever statement writes it."""
    store = Store(str(tmp_path / "s.db"))
    try:
        store.add_des([(f"d{i}", frozenset(["a"]), frozenset([f"b{i}"]), ("op",), None, "gen", "ev", 1.0)
                       for i in (1, 2)])
        store.add_runs([(1, "d1", 2, '{"a": 1}'), (2, "d2", 1, '{"a": 1}')])
        store.update_des([("retry", None, None, False, 2, "d1")])
        store.commit()
        assert store.open_runs_full() == [(1, "d1", 2, {"a": 1}), (2, "d2", 1, {"a": 1})]
        assert written(store, lambda: (store.runs_ok([(5.0, "", "42", "w1", 4.0, 1)]),
                                       store.finish_runs([("failed", 5.0, "boom", "tb", "out", None, "w2", 4.5, 2)]),
                                       store.update_des([('{"a": 1}', "d1"), ("stale", None, None, True, "d2")]),
                                       store.update_des([("failed", None, {"a": 1}, False, "d2"),
                                                         ('{"a": 2}', "d2")]))) == 4
        assert [(r.id, r.status, r.worker, r.start, r.end, r.error, r.traceback, r.output, r.result)
                for r in store.recent_runs(5)] == [(1, "ok", "w1", 4.0, 5.0, None, None, "", "42"),
                                                   (2, "failed", "w2", 4.5, 5.0, "boom", "tb", "out", None)]
        d1, d2 = store.des_lookup("d1"), store.des_lookup("d2")
        assert (d1.state, d1.trace, d1.failed_trace, d1.forced, d1.attempt) == ("ok", {"a": 1}, None, False, 1)
        assert (d2.state, d2.trace, d2.failed_trace, d2.forced) == ("ok", {"a": 2}, None, False), "the last given"
        assert written(store, lambda: store.update_des([('{"a": 3}', "d2"), ("failed", None, {"a": 3}, False, "d2")])) == 1
        d2 = store.des_lookup("d2")
        assert (d2.state, d2.trace, d2.failed_trace) == ("failed", None, {"a": 3}), "the general row, given last"
    finally:
        store.close()


def test_a_padded_prefetch_finds_the_same_rows_with_one_statement_per_size(tmp_path):
    """Lookups of any number of keys (across the chunk size) find each row once, and compile one statement
    per padded size, not one per length (which thrashed the connection's statement cache in a burst)."""
    from tinyo.store_base import MANY_CHUNK

    store = Store(str(tmp_path / "state.db"))
    try:
        names = [f"/data/in/f{i:04d}.csv" for i in range(700)]
        store.put_documents([(name, i + 1, f"h{i}", i, i, 1.0, "test") for i, name in enumerate(names)])
        store.add_consumers([(name, f"des-{i}-{k}") for i, name in enumerate(names) for k in range(2)])
        store.commit()
        lengths: set[tuple[str, int]] = set()  # (table, keys bound) of each lookup (the trace has the values)
        store.conn.set_trace_callback(
            lambda sql: lengths.add((sql.split(" FROM ")[1].split()[0], sql.split(" IN (")[1].count(",") + 1)))
        for n in (*range(1, 70), 127, 128, 129, 300, MANY_CHUNK - 1, MANY_CHUNK, MANY_CHUNK + 1, 700):
            keys = names[:n] + ["/data/in/never.csv"]
            assert store.doc_versions_many(keys) == {name: i + 1 for i, name in enumerate(names[:n])}
            consumers = store.consumers_many(keys)
            assert {doc: sorted(ids) for doc, ids in consumers.items()} == {
                name: [f"des-{i}-0", f"des-{i}-1"] for i, name in enumerate(names[:n])}
        store.conn.set_trace_callback(None)
        # each lookup one statement per padded size (1, 2, 4, ... MANY_CHUNK)
        sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, MANY_CHUNK]
        assert sorted(n for table, n in lengths if table == "documents") == sizes
        assert sorted(n for table, n in lengths if table == "consumers") == sizes
    finally:
        store.close()


def test_new_versions_of_known_and_unknown_documents_in_one_commit_all_land_whole(tmp_path):
    """Version-only rows are updated in place when every row exists; when some do not (a name never taken in
    nor named), all of them are upserted and each row ends as given, its other parts kept."""
    path = str(tmp_path / "state.db")
    store = Store(path)
    try:
        store.add_names([("/out/a.txt", "out"), ("/out/b.txt", "out")])
        store.add_producers([("/out/a.txt", "des-a"), ("/out/b.txt", "des-b")])
        store.set_file_seen("/in/c.csv", 5, 50, "hc")
        store.commit()
        # every row exists: updated in place, one row changed per document
        before = store.conn.total_changes
        store.put_documents([("/out/a.txt", 1, "ha", 1, 10, 1.0, "op"), ("/in/c.csv", 1, "hc", 5, 50, 1.0, "file")])
        store.commit()
        assert store.conn.total_changes - before == 2
        # one of them unknown to the store: all land anyway
        store.put_documents([("/out/b.txt", 1, "hb", 2, 20, 2.0, "op"), ("/elsewhere/d", 3, None, None, None, 2.0,
                                                                         "inject"), ("/out/a.txt", 2, "ha2", 3, 30, 2.0, "op")])
        store.commit()
    finally:
        store.close()
    store = Store(path)
    try:
        rows = store.conn.execute("SELECT name, version, hash, size, by, grp, producer, seen_size FROM documents "
                                  "ORDER BY name").fetchall()
        assert rows == [("/elsewhere/d", 3, None, None, "inject", None, None, None),
                        ("/in/c.csv", 1, "hc", 50, "file", None, None, 50),
                        ("/out/a.txt", 2, "ha2", 30, "op", "out", "des-a", None),
                        ("/out/b.txt", 1, "hb", 20, "op", "out", "des-b", None)]
    finally:
        store.close()


def test_a_run_ended_twice_keeps_its_des_s_chain_and_many_runs_of_one_des_end_in_one_call(tmp_path: Path) -> None:
    """A run's second end (nothing in the engine makes one today) leaves the chain of its DES as it was: the run
    does not point at itself, and the DES's last run does not move back to it. Many runs of one DES, queued by an
    earlier store, end in one call (as a start's interrupted runs do), each linked to the one before."""
    store = Store(str(tmp_path / "s.db"))
    try:
        store.add_des([("d1", frozenset(["a"]), frozenset(["b"]), ("op",), None, "gen", "ev", 1.0)])
        for run_id in (1, 2, 3):
            store.add_runs([(run_id, "d1", 1, '{"a": 1}')], run_id)
            store.commit()
            store.runs_ok([(2.0, "", None, "w1", 1.0, run_id)])
            store.commit()
        assert [r.id for r in store.runs_for("d1")] == [1, 2, 3]
        store.finish_runs([("failed", 3.0, "again", None, None, None, "w1", 1.0, 2)])  # run 2 ends again
        store.commit()
        assert [r.id for r in store.runs_for("d1")] == [1, 2, 3]
        store.finish_runs([("failed", 3.0, "again", None, None, None, "w1", 1.0, 3)])  # the last one, again
        store.commit()
        assert [r.id for r in store.runs_for("d1")] == [1, 2, 3]
        assert store.conn.execute("SELECT prev_run FROM runs WHERE id = 3").fetchone() == (2,)
        many = range(4, 2004)
        store.add_runs([(run_id, "d1", 1, '{"a": 1}') for run_id in many], 4)
        store.commit()
    finally:
        store.close()
    store = Store(str(tmp_path / "s.db"))  # a later engine ends them all in one call
    try:
        store.finish_runs([("interrupted", 5.0, "the engine stopped", None, None, None, None, None, run_id)
                           for run_id in many])
        store.commit()
        assert [r.id for r in store.runs_for("d1", limit=2003)] == [1, 2, 3, *many]
    finally:
        store.close()
