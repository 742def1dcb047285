"""The typed queries: one table derived from their dataclasses, each answered the same in-process and over a
real control socket by a real engine, and bad ones refused naming the query and the argument."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from conftest import write_recipe
from tinyo import events as ev
from tinyo import queries as q
from tinyo.arguments import MOST, REQUIRED
from tinyo.control.client import ControlClient
from tinyo.control.handle import RemoteEngine
from tinyo.control.protocol import Query, check_args, encode, queries
from tinyo.control.server import ControlServer
from tinyo.core.queries import Queries
from tinyo.errors import TinyoError
from tinyo.recipe import load_recipe

RECIPE = """
def load(context):
    name = sorted(context['deps'])[0]
    print('loaded', name)
    print('twice', name)

@meta_task(root=True)
def on_event(event):
    return ('k', [DES(deps=frozenset([event]), targs=frozenset(['doc:' + event]), ops=[(load, Config({}))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1, execution=Execution.THREADS)
"""


@pytest.fixture(autouse=True)
def _no_xdg(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def test_the_protocol_s_query_table_is_derived_from_the_typed_queries():
    table = queries()
    classes = typing.get_args(q.Query)
    assert sorted(table) == sorted(cls.wire for cls in classes)  # one wire name each, none hand-listed
    for cls in classes:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls.__name__
        spec = table[cls.wire]
        fields = dataclasses.fields(cls)
        assert list(spec) == [f.name for f in fields], cls.__name__  # the arguments are the fields
        for f in fields:
            arg = spec[f.name]
            assert arg.default == (REQUIRED if f.default is dataclasses.MISSING else f.default)
            assert arg.most == f.metadata.get(MOST)
        # an answer in the engine for each, named as the query is on the wire
        assert callable(getattr(Queries, cls.wire, None)), f"core.queries answers no {cls.wire!r}"
        assert q.make(cls.wire, {f.name: getattr(_sample(cls), f.name) for f in fields}) == _sample(cls)
    # the types and bounds as a client meets them
    assert check_args("query", "group_members", {"pattern": "p"}) == {"pattern": "p", "offset": 0, "limit": 200}
    assert check_args("query", "doc_infos", {"names": ["a"]}) == {"names": ("a",)}
    assert table["documents"]["prefix"].types == (str, type(None))
    assert table["history"]["lines"].most == q.LIST_MAX


SAMPLES: dict[str, dict[str, typing.Any]] = {
    "stats": {}, "explain": {"name": "doc:a"}, "des_details": {"des_id": "?"}, "documents": {"prefix": "doc:"},
    "groups_summary": {}, "group_members": {"pattern": "?"}, "locate": {"name": "doc:b"},
    "doc_infos": {"names": ("doc:a", "doc:b", "nope")}, "des_infos": {"ids": ("?", "nope")},
    "find_documents": {"pattern": "DOC:[AB]", "regex": True, "limit": 5}, "des_of_event": {"event": "a"},
    "run_status": {"run_id": 1}, "history": {"events": 10, "runs": 10, "lines": 10}, "output": {"limit": 3},
    "workers": {}, "clients": {},
}
"""Arguments for each query ("?": filled in from the engine's answers)."""


def _sample(cls: type) -> typing.Any:
    return cls(**SAMPLES[cls.wire])


def test_each_query_is_answered_the_same_in_process_and_over_a_real_socket(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    server = ControlServer(h.engine).start()
    remote = None
    try:
        with h:
            for name in ("a", "b"):
                h.engine.inject(name)
            h.wait_idle()
            engine = h.engine
            (doc,) = engine.doc_infos(["doc:a"])
            group = engine.locate("doc:a")[0]
            remote = RemoteEngine(load_recipe(recipe), tmp_path / "s.db")
            assert sorted(SAMPLES) == sorted(cls.wire for cls in typing.get_args(q.Query))
            for cls in typing.get_args(q.Query):
                args = {k: {"des_id": doc.producer, "pattern": group}.get(k, v) if v == "?" else v
                        for k, v in SAMPLES[cls.wire].items()}
                args = {k: tuple(doc.producer if x == "?" else x for x in v) if isinstance(v, tuple) else v
                        for k, v in args.items()}
                query = cls(**args)
                here, there = engine.ask(query), remote.ask(query)
                if cls is q.Stats:  # the clock moves between the two answers
                    here, there = (dataclasses.replace(s, uptime=0, events_per_s=0) for s in (here, there))
                if cls is q.Clients:  # the same clients (how far behind each is moves)
                    here, there = ({(c.name, c.pid) for c in cs} for cs in (here, there))
                assert here == there, f"{cls.__name__}: in-process {here!r} != over the socket {there!r}"
                assert here not in (None, [], set(), ""), f"{cls.__name__}: an empty answer proves little"
            # the answers are the engine's own types, whichever way they were asked
            assert [e.line for e in remote.recent_output(3)] == ["twice a", "loaded b", "twice b"]
            assert [e.line_no for e in engine.recent_output(4)] == [1, 2, 3, 4]
            assert remote.find_documents("doc:", 5) == ["doc:a", "doc:b"]
            assert remote.des_of_event("a") == [doc.producer]  # the console asks it of an attached engine too
            assert remote.run_status(1) == "ok"
            assert {c.name for c in remote.clients()} == {"tinyo attach"}
    finally:
        if remote is not None:
            remote.stop()
        server.close()


def test_a_bad_query_is_refused_naming_the_query_and_the_argument_in_process_and_over_the_socket(
        tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    h = harness(recipe)
    server = ControlServer(h.engine).start()
    try:
        with h, ControlClient.connect(tmp_path / "s.db", "test") as client:
            remote = RemoteEngine(load_recipe(recipe), tmp_path / "s.db")
            try:
                for query, message in [
                    (q.Documents(limit=-1), "query documents: argument 'limit' must be 0..5000, got -1"),
                    (q.RecentOutput(limit=5001), "query output: argument 'limit' must be 0..5000, got 5001"),
                    (q.Explain(3), "query explain: argument 'name' must be str, got int"),  # type: ignore[arg-type]
                    (q.DocInfos(("a", 2)),  # type: ignore[arg-type]
                     "query doc_infos: argument 'names' must be a list of str, got an item 2"),
                    (q.RunStatus(True),  # type: ignore[arg-type]
                     "query run_status: argument 'run_id' must be int, got bool"),
                    ("stats", "not a query: 'stats'"),
                ]:
                    for handle in (h.engine, remote):
                        with pytest.raises(q.QueryError) as caught:
                            handle.ask(query)
                        assert message in str(caught.value), f"{type(handle).__name__}: {caught.value}"
                # a client that skips the typed form gets the same words from the engine
                for name, args, message in [
                    ("documents", {"limit": -1}, "query documents: argument 'limit' must be 0..5000, got -1"),
                    ("history", {"lines": "all"}, "query history: argument 'lines' must be int, got str"),
                    ("explain", {}, "query explain: missing argument 'name'"),
                    ("stats", {"verbose": True}, "query stats: unknown argument(s) 'verbose'"),
                    ("drop_tables", {}, "unknown query 'drop_tables' (known: clients, des_details"),
                ]:
                    with pytest.raises(TinyoError) as caught:
                        client.query(name, **args)
                    assert message in str(caught.value)
                client._sock.sendall(encode(Query(7, "des_infos", {"ids": "abc"})))
                reply = client.receive()
                assert reply.id == 7 and "query des_infos: argument 'ids' must be list, got str" in reply.message
                assert client.query("stats")["state"] == "running"  # the engine goes on, so does the connection
            finally:
                remote.stop()
    finally:
        server.close()


def test_an_op_s_output_lines_are_numbered_and_the_last_ones_kept_in_memory(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    with harness(recipe) as h:
        for n in range(3):
            h.engine.inject(f"e{n}")
        h.wait_idle()
        published = h.of(ev.OpOutput)
        assert [e.line_no for e in published] == list(range(1, 7))
        assert h.engine.recent_output() == published  # the same facts, from the engine's memory
        assert h.engine.recent_output(2) == published[-2:] and h.engine.recent_output(0) == []
