"""Memory does not grow with history: up-to-date DES leave the engine's memory for the store, and
everything that touches one later (a changed dep, a rerun, a conflicting target, a restart, the console's
queries) finds it there and behaves exactly as if it had stayed."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tinyo import dag
from tinyo import events as ev
from tinyo.groups import DES_TO_DOC, group_key

from conftest import drop, write_recipe

RECIPE = """
def load(context):
    (src,) = context['deps']
    print('load', os.path.basename(src), open(src).read())

def total(context):
    print('total of', len(context['deps']))

@meta_task(root=True)
def gen(event):
    if not os.path.isabs(event):
        return (None, [])
    name = os.path.basename(event)
    if name.startswith('dup'):
        # claims the target an earlier DES already makes: must be refused
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['loaded.f000.csv']), ops=[(load, Config({}))])])
    out = [DES(deps=frozenset([event]), targs=frozenset(['loaded.' + name]), ops=[(load, Config({}))])]
    if name == 'f000.csv':
        out.append(DES(deps=frozenset(['loaded.f000.csv', 'loaded.f001.csv']), targs=frozenset(['total']),
                       ops=[(total, Config({}))]))
    return (None, out)

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.THREADS)
"""

FILES = 60


@pytest.fixture
def evict_always(monkeypatch):
    """Evict after every commit (the default waits for thousands of entries)."""
    monkeypatch.setattr(dag, "EVICT_MIN", 1)
    monkeypatch.setattr(dag, "EVICT_GROWTH", 0.0)


def _groups_recount(engine) -> dict[str, Counter]:
    """Recount the groups from scratch: every document, its state looked up one by one."""
    def read():
        out: dict[str, Counter] = {}
        for name, pattern, version, producer in list(engine.store.all_names()):
            if producer is not None:
                node = engine.graph.node(producer)
                state = DES_TO_DOC[node.state]
            else:
                state = "source" if version else "missing"
            out.setdefault(pattern, Counter())[state] += 1
        return out
    return engine.call(read)


def _recipe_with_files(tmp_path, inbox, files: int):
    """The recipe, with ``files`` input files (content v1) already in its inbox."""
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    for i in range(files):
        drop(inbox, f"f{i:03d}.csv", "v1")
    return recipe


def _groups_kept(engine) -> dict[str, Counter]:
    return {s.pattern: Counter(dict(s.states)) for s in engine.groups_summary()}


def test_settled_des_leave_memory_and_come_back_when_touched(tmp_path, inbox, harness, evict_always):
    recipe = _recipe_with_files(tmp_path, inbox, FILES)
    with harness(recipe) as h:
        h.wait_idle()
        engine = h.engine
        assert len(h.of(ev.OpFinished)) == FILES + 1  # every load, and the total once both its loads were done
        hot = engine.call(lambda: len(engine.graph.nodes))
        assert hot < 10, f"{hot} DES still in memory after everything settled"
        assert engine.stats().des_total == FILES + 1
        assert _groups_kept(engine) == _groups_recount(engine)

        # a dep of an evicted DES changes: it is read back, runs, and so does the evicted total downstream
        finished = len(h.of(ev.OpFinished))
        drop(inbox, "f001.csv", "v2")
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == finished + 2, what="f001 and total to run again")
        h.wait_idle()
        assert h.lines()[-2:] == ["load f001.csv v2", "total of 2"]

        # a rerun of an evicted DES by its document name
        finished = len(h.of(ev.OpFinished))
        engine.rerun_document("loaded.f007.csv")
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == finished + 1, what="the rerun")
        assert h.lines()[-1] == "load f007.csv v1"

        # a new DES claiming an evicted DES's target is refused, naming the owner
        drop(inbox, "dup.csv")
        h.wait_for(lambda: h.of(ev.DESRejectedEvent), what="the conflict")
        assert "already produced by DES" in h.of(ev.DESRejectedEvent)[0].reason
        h.wait_idle()

        # the console's queries see evicted DES and documents
        [info] = engine.doc_infos(["loaded.f010.csv"])
        assert info.state == "up to date" and info.version == 1 and info.producer is not None
        [des] = engine.des_infos([info.producer])
        assert des.targs == ("loaded.f010.csv",) and des.ops == ("load",) and des.state == "ok"
        members = engine.group_members(group_key("loaded.f010.csv"), 0, 5)
        assert [m.name for m in members] == [f"loaded.f{i:03d}.csv" for i in range(5)]
        assert "up to date" in engine.explain("loaded.f010.csv")
        assert _groups_kept(engine) == _groups_recount(engine)
        runs = len(h.of(ev.OpStarted))

    # a restart brings back nothing to do and runs nothing
    with harness(recipe) as h2:
        h2.wait_idle(quiet=0.5)
        assert h2.of(ev.OpStarted) == []
        assert h2.engine.call(lambda: len(h2.engine.graph.nodes)) < 10
        assert _groups_kept(h2.engine) == _groups_recount(h2.engine)
    assert runs == FILES + 1 + 2 + 1


def test_a_file_changed_while_down_reruns_its_evicted_des_on_start(tmp_path, inbox, harness, evict_always):
    recipe = _recipe_with_files(tmp_path, inbox, 5)
    with harness(recipe) as h:
        h.wait_idle()
    time.sleep(0.01)
    drop(inbox, "f003.csv", "v2")
    with harness(recipe) as h2:
        h2.wait_idle()
        assert h2.lines() == ["load f003.csv v2"]


def test_a_batch_prefetch_answers_like_one_lookup_per_miss_in_a_few_queries(tmp_path, inbox, harness, evict_always):
    recipe = _recipe_with_files(tmp_path, inbox, FILES)
    with harness(recipe) as h:
        h.wait_idle()
        engine = h.engine

        def compare():
            store = engine.store
            docs = [name for name, *_ in store.all_names()] + ["never.heard.of"]
            known = [r[0] for r in store.conn.execute("SELECT id FROM des").fetchall()]
            ids = known + ["0123456789abcdef"]
            statements: list[str] = []
            store.conn.set_trace_callback(statements.append)
            try:
                batched = dag.Graph(engine.graph.backing)
                batched.prefetch(docs, ids)
                during = len(statements)
                answers_b = ([batched.version(d) for d in docs], [batched.producer_of(d) for d in docs],
                             [sorted(batched.readers(d)) for d in docs], [batched.has(i) for i in ids])
                after = len(statements)
            finally:
                store.conn.set_trace_callback(None)
            single = dag.Graph(engine.graph.backing)
            answers_s = ([single.version(d) for d in docs], [single.producer_of(d) for d in docs],
                         [sorted(single.readers(d)) for d in docs], [single.has(i) for i in ids])
            return answers_b, answers_s, during, after, len(docs), len(known)

        answers_b, answers_s, during, after, n_docs, n_des = engine.call(compare)
    assert n_docs > FILES and n_des == FILES + 1
    assert answers_b == answers_s
    assert answers_b[3][-1] is False and all(answers_b[3][:-1])
    assert during == 5, f"{during} statements for the prefetch (the names, then one per table)"
    # of the DES asked about, only the known ones go to the store again (has() of a known id is not cached)
    assert after - during == n_des


def test_a_prefetch_of_names_the_store_never_saw_takes_one_query_and_answers_like_lookups(tmp_path, inbox, harness,
                                                                                        evict_always):
    """A burst of new files: their documents, and the DES they bring whose targets are all new, are known
    absent after one lookup of the names; what is known (a name already in the store, a DES with a known
    target) is still looked up, and every answer equals a one-by-one lookup's."""
    recipe = _recipe_with_files(tmp_path, inbox, 5)
    with harness(recipe) as h:
        h.wait_idle()
        engine = h.engine

        def compare():
            store = engine.store
            new_docs = [f"/nowhere/new{i}.csv" for i in range(40)] + [f"loaded.new{i}.csv" for i in range(40)]
            known_docs = ["loaded.f001.csv", str(inbox / "f002.csv")]
            (known_id,) = [r[0] for r in store.conn.execute(
                "SELECT producer FROM documents WHERE name = 'loaded.f001.csv'").fetchall()]
            ids = [f"{i:016x}" for i in range(40)]
            targs = [frozenset([f"loaded.new{i}.csv"]) for i in range(40)]
            statements: list[str] = []
            store.conn.set_trace_callback(statements.append)
            try:
                new_only = dag.Graph(engine.graph.backing)
                new_only.prefetch(new_docs, ids, targs)
                count_new = len(statements)
                mixed = dag.Graph(engine.graph.backing)
                mixed.prefetch(new_docs + known_docs, [*ids, known_id, "fedcba9876543210"],
                               [*targs, frozenset(["loaded.f001.csv"]), frozenset(["loaded.new1.csv", "total"])])
                count_mixed = len(statements) - count_new
            finally:
                store.conn.set_trace_callback(None)
            docs = new_docs + known_docs
            all_ids = [*ids, known_id, "fedcba9876543210"]
            answers = ([mixed.version(d) for d in docs], [mixed.producer_of(d) for d in docs],
                       [sorted(mixed.readers(d)) for d in docs], [mixed.has(i) for i in all_ids])
            single = dag.Graph(engine.graph.backing)
            expected = ([single.version(d) for d in docs], [single.producer_of(d) for d in docs],
                        [sorted(single.readers(d)) for d in docs], [single.has(i) for i in all_ids])
            new_answers = ([new_only.version(d) for d in new_docs], [new_only.has(i) for i in ids])
            return count_new, count_mixed, answers, expected, new_answers

        count_new, count_mixed, answers, expected, new_answers = engine.call(compare)
    assert count_new == 1, f"{count_new} statements for names the store never saw"
    # names, then versions, producers, consumers of the two known names, then the DES that may exist
    assert count_mixed == 5
    assert answers == expected
    assert answers[3][-2] is True and answers[3][-1] is False and not any(answers[3][:-2])
    assert new_answers == ([None] * 80, [False] * 40)
