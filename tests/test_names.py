"""File names that are not UTF-8: stored, versioned, handed to generators and ops, and shown, end to end.

Linux names are bytes; tinyo holds them as ``os.fsdecode`` does (an undecodable byte 0xNN is U+DCNN),
stores their bytes as they are, shows each such byte as ``\\xNN`` and writes it to JSON as ``\\udcNN``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_recipe
from tinyo import events as ev
from tinyo.errors import TinyoError
from tinyo.store_rows import jmap
from tinyo.history import des_of_event
from tinyo.model import DES, Config
from tinyo.names import from_sql, json_escaped, name_problem, to_sql
from tinyo.store import Store
from tinyo.text import printable

BAD = [
    b"bad\xff\xfeutf8.csv",        # bytes that never start UTF-8
    b"lone\x80cont.csv",           # a continuation byte alone
    b"trunc\xc3(.csv",             # a lead byte without its continuation
    b"surr\xed\xa0\x80.csv",       # an encoded surrogate (not valid UTF-8)
    b"overlong\xc0\xaf.csv",       # an overlong '/'
    b"mixed\xe2\x82 caf\xc3\xa9.csv",  # a cut-off euro sign beside a valid e-acute
]
BAD_FOLDER = b"dir\xfe\xff\x80"


def shown(raw: bytes) -> str:
    """How a name's bytes are shown: valid UTF-8 as text, every other byte as \\xNN."""
    return printable(os.fsdecode(raw))


def test_printable_shows_each_undecodable_byte_as_its_escape() -> None:
    assert printable(os.fsdecode(b"bad\xff\xfeutf8.csv")) == "bad\\xff\\xfeutf8.csv"
    assert printable(os.fsdecode(b"mixed\xe2\x82 caf\xc3\xa9.csv")) == "mixed\\xe2\\x82 café.csv"
    for raw in BAD:
        printable(os.fsdecode(raw)).encode("utf-8")  # always writable to a UTF-8 terminal


def test_json_keeps_the_name_and_is_utf8() -> None:
    for raw in BAD:
        name = os.fsdecode(raw)
        text = json_escaped(json.dumps({"name": name, "other": "ünï"}, ensure_ascii=False))
        text.encode("utf-8")
        assert os.fsencode(json.loads(text)["name"]) == raw
        assert "ünï" in text  # valid non-ASCII text is not escaped


def test_the_sql_form_round_trips_every_name() -> None:
    for raw in [*BAD, b"plain.csv", "ünï ✓ 名前".encode()]:
        name = os.fsdecode(raw)
        value = to_sql(name)
        assert from_sql(value if isinstance(value, bytes) else value.encode()) == name


def test_names_that_no_file_can_have_are_refused_clearly() -> None:
    assert name_problem(os.fsdecode(b"bad\xff")) is None
    assert "lone surrogate" in (name_problem("x\ud800") or "")
    assert "decode as UTF-8" in (name_problem("caf\udcc3\udca9") or "")  # what os.fsdecode gives as 'café'
    with pytest.raises(TypeError, match="deps: the name"):
        DES(deps=["x\ud800"], targs=["t"], ops=[(print, Config())])


def test_the_store_keeps_the_bytes_of_every_name(tmp_path: Path) -> None:
    folder = os.fsdecode(str(tmp_path).encode() + b"/" + BAD_FOLDER)
    names = [f"{folder}/{os.fsdecode(raw)}" for raw in BAD]
    store = Store(str(tmp_path / "s.db"))
    store.add_events([(1.0, "file", n, "new") for n in names])
    store.put_documents([(n, 1, "h", 5, 6, 1.0, "event") for n in names])
    for n in names:
        store.set_file_seen(n, 5, 6, "h")
    store.add_des([("d1", frozenset(names), frozenset(["out\udcff"]), ("op",), None, "gen", names[0], 1.0)])
    store.add_names([(n, "g\udcff") for n in names])
    store.update_des([("ok", {n: 1 for n in names}, None, False, "d1")])
    store.add_runs([(1, "d1", 1, jmap({n: 1 for n in names}))])
    store.finish_runs([("ok", 2.0, f"no {names[0]}", None, f"read {names[1]}", None, "w1", 1)])
    store.commit()
    store.close()

    ro = Store(str(tmp_path / "s.db"), read_only=True, lock=False)
    try:
        assert sorted(n for _, _, _, n in ro.new_events(0, 100)) == sorted(names)
        assert set(ro.doc_versions_many(names)) == set(names)
        assert set(ro.files_seen_under(folder)) == set(names)  # the prefix range holds the folder's bytes
        assert set(ro.names_known(names)) == set(names)
        assert ro.names_from(folder, 100) == sorted(names, key=os.fsencode)  # sorted as the bytes are
        assert ro.group_members("g\udcff", 0, 100)[0][0] in names
        (des,) = list(ro.load_des())
        assert des.deps == frozenset(names) and des.targs == {"out\udcff"} and des.event == names[0]
        assert des.trace == {n: 1 for n in names}
        assert list(ro.load_open_des()) == []  # its deps are as traced: SQLite compares the same bytes
        run = ro.runs_for("d1")[0]
        assert run.error == f"no {names[0]}" and run.output == f"read {names[1]}"
        assert des_of_event(ro, names[0]) == ["d1"]  # the console's "which DES did this event make"
        raw = ro.conn.execute("SELECT name FROM documents ORDER BY name LIMIT 1").fetchone()[0]
        assert isinstance(raw, str) and os.fsencode(raw).startswith(str(tmp_path).encode() + b"/" + BAD_FOLDER)
    finally:
        ro.close()


def test_a_batch_mixing_utf8_and_undecodable_names_writes_each_row_once(tmp_path: Path) -> None:
    """The rows of one commit go to SQLite as they are; the first name SQLite cannot take stops the batch
    there and the rows from it on are written with their names as bytes: none twice, none lost."""
    good = [f"{tmp_path}/ok{i}.csv" for i in range(4)]
    bad = [os.fsdecode(str(tmp_path).encode() + b"/" + raw) for raw in BAD[:3]]
    names = [good[0], bad[0], good[1], good[2], bad[1], bad[2], good[3]]
    store = Store(str(tmp_path / "s.db"))
    ids = store.add_events([(1.0, "file", n, "new") for n in names])  # ids given: a row written twice would clash
    for n in names:
        store.set_file_seen(n, 5, 6, "h")
    store.add_des([(f"d{i}", frozenset([n]), frozenset([n + ".out"]), ("op",), b"ops", "gen", n, 1.0)
                   for i, n in enumerate(names)])
    store.update_des([("ok", {n: 1}, None, False, f"d{i}") for i, n in enumerate(names)])
    store.commit()
    store.close()

    ro = Store(str(tmp_path / "s.db"), read_only=True, lock=False)
    try:
        assert ro.new_events(0, 100) == [(i, 1.0, "file", n) for i, n in zip(ids, names)]
        assert ro.files_seen_many(names) == {n: (5, 6, "h") for n in names}
        assert ro.producers_many([n + ".out" for n in names]) == {n + ".out": f"d{i}" for i, n in enumerate(names)}
        assert ro.consumers_many(names) == {n: [f"d{i}"] for i, n in enumerate(names)}
        assert [(d.id, d.event, d.trace, d.ops_blob) for d in ro.load_des()] == [
            (f"d{i}", n, {n: 1}, b"ops") for i, n in enumerate(names)]
        raw = {os.fsencode(r[0]) for r in ro.conn.execute("SELECT name FROM events")}
        assert raw == {os.fsencode(n) for n in names}  # the bytes themselves, not escapes
        # None and bytes are bound through the store's own adapters: still NULL and BLOB
        assert set(ro.conn.execute("SELECT typeof(ops), typeof(failed_trace) FROM des")) == {("blob", "null")}
    finally:
        ro.close()


COPY_RECIPE = """
def copy(context):
    src = context['config']['src']
    dst = context['config']['dst']
    assert sorted(context['deps']) == [src] and sorted(context['targs']) == [dst]
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, 'rb') as fh, open(dst, 'wb') as out:
        out.write(fh.read())
    print('copied', src)

@meta_task(root=True)
def on_file(event):
    if not event.startswith('{inbox}/'):
        return (None, [])
    dst = '{out}/' + event[len('{inbox}/'):] + '.out'
    return (None, [DES(deps=[event], targs=[dst], ops=[(copy, Config(src=event, dst=dst))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], recursive=True, max_workers=2)
"""


def _bad_tree(inbox: Path, tmp_path: Path) -> list[bytes]:
    """Write every BAD name at the top of ``inbox``, and in a folder with a bad name moved in whole."""
    top = bytes(inbox)
    for raw in BAD:
        with open(top + b"/" + raw, "wb") as fh:
            fh.write(raw)
    staging = bytes(tmp_path) + b"/" + BAD_FOLDER
    os.mkdir(staging)
    for raw in BAD[:3]:
        with open(staging + b"/" + raw, "wb") as fh:
            fh.write(b"in folder " + raw)
    os.rename(staging, top + b"/" + BAD_FOLDER)  # mv of a whole folder into the watched one
    return [*BAD, *(BAD_FOLDER + b"/" + raw for raw in BAD[:3])]


def test_undecodable_names_flow_through_a_real_engine(tmp_path: Path, inbox: Path, harness) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, COPY_RECIPE, db=tmp_path / "s.db", inbox=inbox, out=out)
    with harness(recipe) as h:
        (inbox / "plain.csv").write_text("plain")  # a clean name in the same batches
        files = _bad_tree(inbox, tmp_path)
        h.wait_for(lambda: len(h.of(ev.OpFinished)) >= len(files) + 1, what="every file copied")
        h.wait_idle()
        assert not [e for e in h.of(ev.EngineNotice) if e.level == "error"]
        assert not h.of(ev.OpFailed)
        received = sorted(os.fsencode(e.name) for e in h.of(ev.EventReceived))
        assert received == sorted([bytes(inbox) + b"/" + f for f in files] + [bytes(inbox / "plain.csv")])
        printed = {line for line in h.lines()}
        for raw in files:
            src = bytes(inbox) + b"/" + raw
            assert open(bytes(out) + b"/" + raw + b".out", "rb").read() == open(src, "rb").read()
            assert f"copied {os.fsdecode(src)}" in printed  # the op got (and printed) the name itself
            assert h.engine.explain(os.fsdecode(src)).startswith(f"document {printable(os.fsdecode(src))}: version 1")
    # a second start: nothing is new, nothing runs again, and the names read back are the same
    with harness(recipe) as h2:
        h2.wait_idle()
        assert not h2.of(ev.OpStarted) and not h2.of(ev.EventReceived)
        assert not [e for e in h2.of(ev.EngineNotice) if e.level == "error"]


def tinyo(*args: str | bytes, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, timeout=timeout, env=env)


def test_undecodable_names_in_run_json_status_why_and_dag(tmp_path: Path, inbox: Path) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, COPY_RECIPE, db=tmp_path / "s.db", inbox=inbox, out=out)
    files = _bad_tree(inbox, tmp_path)
    result = tinyo("run", str(recipe), "--json", "--idle-exit", "0.5")
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]  # strict UTF-8
    got = sorted(os.fsencode(e["name"]) for e in lines if e["type"] == "event_received")
    assert got == sorted(bytes(inbox) + b"/" + f for f in files)
    assert len([e for e in lines if e["type"] == "op_finished"]) == len(files)

    text = tinyo("run", str(recipe), "--idle-exit", "0.3")  # the readable log, on a second start
    assert text.returncode == 0 and b"Traceback" not in text.stderr
    status = tinyo("status", str(recipe))
    assert status.returncode == 0, status.stderr
    assert b"ok " + str(len(files)).encode() in status.stdout
    for raw in files:
        src = bytes(inbox) + b"/" + raw
        why = tinyo("why", str(recipe), src)  # the name as the shell passes it: its bytes
        assert why.returncode == 0, why.stderr
        assert why.stdout.decode("utf-8").startswith(f"document {shown(src)}: version 1")
        why_out = tinyo("why", str(recipe), bytes(out) + b"/" + raw + b".out")
        assert "up to date" in why_out.stdout.decode("utf-8"), why_out.stdout
    for fmt in ("mermaid", "dot"):
        dag = tinyo("dag", str(recipe), "--format", fmt)
        assert dag.returncode == 0, dag.stderr
        text_out = dag.stdout.decode("utf-8")
        assert shown(bytes(inbox) + b"/" + BAD[0]) in text_out or json.dumps(os.fsdecode(bytes(inbox) + b"/" + BAD[0])) in text_out


def test_a_non_canonical_event_is_refused_by_name(tmp_path: Path, inbox: Path) -> None:
    recipe = write_recipe(tmp_path, COPY_RECIPE, db=tmp_path / "s.db", inbox=inbox, out=tmp_path / "out")
    from tinyo.engine import Engine

    engine = Engine.from_path(recipe, watch=False)
    try:
        with pytest.raises(TinyoError, match="lone surrogate"):
            engine.inject("x\ud800")
    finally:
        engine.stop()


def test_a_watched_folder_whose_own_name_is_not_utf8(tmp_path: Path) -> None:
    """dirs=[a folder named with undecodable bytes]: validate shows it escaped, a file in it is taken in
    once, and the next start finds nothing new (the store's prefix range holds the folder's bytes)."""
    folder = bytes(tmp_path) + b"/in\xff\xfe"
    body = """
IN = os.fsdecode({folder!r})

def note(context):
    print('saw', sorted(context['deps'])[0])

@meta_task(root=True)
def on_file(event):
    return (None, [DES(deps=[event], targs=['seen:' + event], ops=[(note, Config())])])

config = TinyOConfig(sql_conn='{db}', dirs=[IN])
"""
    recipe = write_recipe(tmp_path, body.replace("{folder!r}", repr(folder)), db=tmp_path / "s.db")
    validate = tinyo("validate", str(recipe))
    assert validate.returncode == 0 and f"watch: {shown(folder)}" in validate.stdout.decode("utf-8")
    os.makedirs(folder)
    with open(folder + b"/f\x80.txt", "wb") as fh:
        fh.write(b"1")
    first = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert first.returncode == 0 and f"saw {shown(folder)}/f\\x80.txt" in first.stdout.decode("utf-8")
    second = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert second.returncode == 0 and b"saw" not in second.stdout and b"event" not in second.stdout
