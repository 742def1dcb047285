"""Data flows on real-shaped data: missing values, types, lookups that miss, and split CSV reading.

Every flow result is compared with plain Python computing the same thing on the same generated file
(``tests/flights.py``: 19 columns, ~3% of the nullable values ``NA``).
"""

from __future__ import annotations

import csv
import sqlite3
import threading

import pytest

from flights import CARRIERS, COLUMNS, read_flights, reference_by_carrier, write_flights
from tinyo.flow import Flow, steps

STATS = {"rows": ("count_all", None), "n": ("count", "dep_delay"), "total": ("sum", "dep_delay"),
         "mean": ("avg", "dep_delay"), "low": ("min", "dep_delay"), "high": ("max", "dep_delay")}


def _collect(flow: Flow, step, gate: str = "out") -> None:
    flow.hop(step, flow.step("result", steps.SetFlowResult(collect=True)), gate=gate)


def _errors(flow: Flow, step) -> list[dict]:
    seen: list[dict] = []
    lock = threading.Lock()

    def keep(row, ctx):
        with lock:
            seen.append(row)

    flow.hop(step, flow.step(f"errors_{step.name}", keep), gate="error")
    return seen


def _same(got: list[dict], want: dict[str, dict]) -> None:
    assert {r["carrier"] for r in got} == set(want)
    for row in got:
        ref = want[row["carrier"]]
        assert row == pytest.approx(ref), row["carrier"]


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    path = tmp_path_factory.mktemp("flights") / "flights.csv"
    write_flights(path, 3000, all_missing="HA")
    return path


# -- 1. aggregates skip missing values ----------------------------------------------------------


def test_aggregates_skip_missing_values_like_sql(flights):
    flow = Flow("delays", params={"src": str(flights)}, chunk_size=256)
    read = flow.step("read", steps.CsvInput("${params.src}", na_values=["NA", ""], types={"dep_delay": float}))
    agg = flow.step("agg", steps.Aggregate("carrier", STATS))
    flow.hop(read, agg)
    _collect(flow, agg)
    run = flow.run()
    assert run.ok, run.error
    want = reference_by_carrier(read_flights(flights), "dep_delay")
    assert want["HA"]["n"] == 0 and want["HA"]["rows"] > 0  # a group with no value at all
    assert sum(w["rows"] - w["n"] for w in want.values()) > 50  # and many missing values elsewhere
    _same(run.result, want)
    assert [r for r in run.result if r["carrier"] == "HA"][0] == {
        "carrier": "HA", "rows": want["HA"]["rows"], "n": 0, "total": None, "mean": None, "low": None, "high": None}


def test_aggregate_of_generated_rows_with_none():
    rows = [{"g": "a", "v": 1}, {"g": "a", "v": None}, {"g": "a", "v": 5}, {"g": "b", "v": None}]
    flow = Flow("nones")
    gen = flow.step("gen", steps.Generate(rows=rows, index=None))
    agg = flow.step("agg", steps.Aggregate("g", {**{k: (op, "v" if src else None) for k, (op, src) in STATS.items()},
                                                "first": ("first", "v"), "last": ("last", "v"), "all": ("list", "v"),
                                                "legacy_rows": ("count", None)}))
    flow.hop(gen, agg)
    _collect(flow, agg)
    run = flow.run()
    assert run.ok, run.error
    assert sorted(run.result, key=lambda r: r["g"]) == [
        {"g": "a", "rows": 3, "n": 2, "total": 6, "mean": 3.0, "low": 1, "high": 5, "first": 1, "last": 5,
         "all": [1, None, 5], "legacy_rows": 3},
        {"g": "b", "rows": 1, "n": 0, "total": None, "mean": None, "low": None, "high": None, "first": None,
         "last": None, "all": [None], "legacy_rows": 1},
    ]


# -- 2. a row's effect on a step is all or nothing ----------------------------------------------


def test_a_row_that_fails_half_way_through_an_aggregate_leaves_no_trace():
    rows = [{"g": i % 3, "a": i, "b": i * 10} for i in range(300)]
    for i in range(0, 300, 7):
        rows[i]["b"] = f"bad{i}"  # a text value in the second sum: the row raises after ``a`` was added
    flow = Flow("atomic", chunk_size=50)
    gen = flow.step("gen", steps.Generate(rows=rows, index=None))
    agg = flow.step("agg", steps.Aggregate("g", {"sa": ("sum", "a"), "sb": ("sum", "b"), "mean_a": ("avg", "a"),
                                                "rows": ("count", None), "all_a": ("list", "a")}))
    flow.hop(gen, agg)
    errors = _errors(flow, agg)
    _collect(flow, agg)
    run = flow.run()
    assert run.ok, run.error
    good = [r for r in rows if isinstance(r["b"], int)]
    want = {}
    for g in range(3):
        mine = [r for r in good if r["g"] == g]
        want[g] = {"g": g, "sa": sum(r["a"] for r in mine), "sb": sum(r["b"] for r in mine),
                   "mean_a": sum(r["a"] for r in mine) / len(mine), "rows": len(mine), "all_a": [r["a"] for r in mine]}
    assert {r["g"]: r for r in run.result} == want
    assert len(errors) == len(rows) - len(good)
    assert all("TypeError" in e["error"] for e in errors)


# -- 3. CSV: na_values, infer_types, parse errors -----------------------------------------------


def test_infer_types_reads_numbers_and_na_values_are_missing_in_every_field(flights):
    flow = Flow("infer", params={"src": str(flights)})
    read = flow.step("read", steps.CsvInput("${params.src}", na_values=["NA"], infer_types=True))
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    assert run.result == read_flights(flights)
    first = run.result[0]
    assert type(first["year"]) is int and type(first["dep_delay"]) is float and type(first["carrier"]) is str
    assert any(r["tailnum"] is None for r in run.result)  # NA in a text column is missing too


def test_without_na_values_the_text_na_is_a_parse_error_naming_field_line_and_text(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("id,zip,delay\n1,007,2.5\n2,010,NA\n3,,4\n4,011,x5\n")
    flow = Flow("parse", params={"src": str(src)})
    read = flow.step("read", steps.CsvInput("${params.src}", types={"delay": float}))
    errors = _errors(flow, read)
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    assert run.result == [{"id": "1", "zip": "007", "delay": 2.5}, {"id": "3", "zip": None, "delay": 4.0}]
    assert [e["row"]["line"] for e in errors] == [3, 5]
    assert "line 3, field 'delay': cannot read 'NA' as float" in errors[0]["error"]
    assert "line 5, field 'delay': cannot read 'x5' as float" in errors[1]["error"]

    inferred = Flow("infer_zip", params={"src": str(src)})
    read = inferred.step("read", steps.CsvInput("${params.src}", na_values=["NA", ""], infer_types=3))
    bad = _errors(inferred, read)
    _collect(inferred, read)
    run = inferred.run()
    assert run.ok, run.error
    # 007 stays text (an int would lose its zeros); delay is float from the first 3 rows, so x5 fails
    assert run.result[:3] == [{"id": 1, "zip": "007", "delay": 2.5}, {"id": 2, "zip": "010", "delay": None},
                              {"id": 3, "zip": None, "delay": 4.0}]
    assert len(bad) == 1 and "field 'delay'" in bad[0]["error"] and "'x5'" in bad[0]["error"]


def test_a_parse_error_without_an_error_hop_fails_the_run_naming_field_and_line(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("id,n\n1,2\n2,three\n")
    flow = Flow("strict", params={"src": str(src)})
    flow.step("read", steps.CsvInput("${params.src}", types={"n": int}))
    run = flow.run()
    assert not run.ok
    assert "line 3, field 'n': cannot read 'three' as int" in run.message


# -- 4. Lookup: misses are counted, on_miss, a warning when nothing matched ---------------------


def _master(tmp_path) -> str:
    db = str(tmp_path / "carriers.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE carriers (code INTEGER, name TEXT)")
    conn.executemany("INSERT INTO carriers VALUES (?, ?)", [(i, f"carrier {i}") for i in range(10)])
    conn.commit()
    conn.close()
    return db


def test_a_missing_key_matches_nothing_even_a_master_record_with_a_missing_key(tmp_path):
    master = tmp_path / "m.csv"
    master.write_text("code,name\n1,one\n,nobody\n")
    src = tmp_path / "rows.csv"
    src.write_text("id,code\na,1\nb,\nc,2\n")
    flow = Flow("null_keys", params={"src": str(src), "master": str(master)})
    read = flow.step("read", steps.CsvInput("${params.src}", types={"code": int}, split=None))
    look = flow.step("look", steps.Lookup(csv="${params.master}", key="code", types={"code": int}))
    flow.hop(read, look)
    _collect(flow, look)
    run = flow.run()
    assert run.ok, run.error
    assert run.result == [{"id": "a", "code": 1, "name": "one"}, {"id": "b", "code": None, "name": None},
                          {"id": "c", "code": 2, "name": None}]
    assert run.metrics["look"][0].counters == {"matched": 1, "missed": 2}


def test_lookup_that_matches_nothing_reports_misses_and_warns_once(tmp_path, capfd):
    src = tmp_path / "rows.csv"
    src.write_text("id,code\n" + "".join(f"{i},{i % 12}\n" for i in range(100)))
    flow = Flow("no_match", params={"src": str(src)}, services={"db": _master(tmp_path)})
    read = flow.step("read", steps.CsvInput("${params.src}"))  # codes stay text: '3' is not 3
    look = flow.step("look", steps.Lookup(table="carriers", key="code"), instances=2)
    flow.hop(read, look)
    _collect(flow, look)
    run = flow.run()
    assert run.ok, run.error
    assert sum(m.counters["missed"] for m in run.metrics["look"]) == 100
    assert sum(m.counters["matched"] for m in run.metrics["look"]) == 0
    assert len(run.warnings) == 1 and "none of the 100 rows looked up matched" in run.warnings[0]
    assert capfd.readouterr().err.count("none of the 100 rows") == 1


@pytest.mark.parametrize("on_miss", ["null", "drop", "error"])
def test_lookup_on_miss_against_a_plain_reference(tmp_path, on_miss):
    src = tmp_path / "rows.csv"
    src.write_text("id,code\n" + "".join(f"{i},{i % 12}\n" for i in range(100)))
    names = {i: f"carrier {i}" for i in range(10)}
    flow = Flow("on_miss", params={"src": str(src)}, services={"db": _master(tmp_path)})
    read = flow.step("read", steps.CsvInput("${params.src}", types={"id": int, "code": int}))
    look = flow.step("look", steps.Lookup(table="carriers", key="code", on_miss=on_miss))
    flow.hop(read, look)
    errors = _errors(flow, look)
    _collect(flow, look)
    run = flow.run()
    assert run.ok, run.error
    rows = [{"id": i, "code": i % 12} for i in range(100)]
    hits = [{**r, "name": names[r["code"]]} for r in rows if r["code"] in names]
    misses = [r for r in rows if r["code"] not in names]
    if on_miss == "null":
        assert run.result == [{**r, "name": names.get(r["code"])} for r in rows]
    else:
        assert run.result == hits
    assert [e["row"] for e in errors] == (misses if on_miss == "error" else [])
    if on_miss == "error":
        assert "no master record with {'code': 10}" in errors[0]["error"]
    [m] = run.metrics["look"]
    assert m.counters == {"matched": len(hits), "missed": len(misses)}
    assert run.warnings == []


# -- 5. split CSV reading ------------------------------------------------------------------------


@pytest.mark.parametrize("split,instances", [("bytes", 2), ("bytes", 3), ("rows", 2), ("bytes", 1)])
def test_csv_instances_read_disjoint_parts(flights, split, instances):
    flow = Flow("split", params={"src": str(flights)}, chunk_size=128)
    read = flow.step("read", steps.CsvInput("${params.src}", na_values=["NA"], infer_types=True, split=split),
                     instances=instances)
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    want = read_flights(flights)
    key = lambda r: (r["time_hour"], r["flight"], r["tailnum"] or "", r["dep_time"] or 0, r["distance"])  # noqa: E731
    assert sorted(run.result, key=key) == sorted(want, key=key)
    parts = [m.rows_out.get("out", 0) for m in run.metrics["read"]]
    assert sum(parts) == len(want)
    assert all(0 < p < len(want) for p in parts) or instances == 1


def test_split_parts_name_the_true_line_of_a_bad_value(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("id,n\n" + "".join(f"{i},{'oops' if i == 77 else i}\n" for i in range(100)))
    flow = Flow("split_lines", params={"src": str(src)})
    read = flow.step("read", steps.CsvInput("${params.src}", types={"id": int, "n": int}), instances=2)
    errors = _errors(flow, read)
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    assert len(run.result) == 99 and len(errors) == 1
    assert errors[0]["instance"] == 1 and "line 79, field 'n': cannot read 'oops'" in errors[0]["error"]


def test_a_quoted_line_break_needs_split_rows(tmp_path):
    src = tmp_path / "q.csv"
    with open(src, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "note"])
        writer.writerows([(i, "two\nlines" if i % 10 == 3 else "one") for i in range(40)])
    by_bytes = Flow("by_bytes", params={"src": str(src)})
    by_bytes.step("read", steps.CsvInput("${params.src}"), instances=2)
    run = by_bytes.run()
    assert not run.ok and "unbalanced quote" in run.message and "split='rows'" in run.message

    by_rows = Flow("by_rows", params={"src": str(src)})
    read = by_rows.step("read", steps.CsvInput("${params.src}", types={"id": int}, split="rows"), instances=2)
    _collect(by_rows, read)
    run = by_rows.run()
    assert run.ok, run.error
    assert sorted(r["id"] for r in run.result) == list(range(40))
    assert sum(r["note"] == "two\nlines" for r in run.result) == 4


def test_a_path_naming_the_instance_reads_whole_files_and_process_instances_read_their_own_part(tmp_path):
    for i in range(2):
        (tmp_path / f"part_{i}.csv").write_text("x\n" + "".join(f"{i * 100 + k}\n" for k in range(50)))
    flow = Flow("own_files", params={"dir": str(tmp_path)})
    read = flow.step("read", steps.CsvInput("${params.dir}/part_${instance.index}.csv", types={"x": int}), instances=2)
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["x"] for r in run.result) == [*range(50), *range(100, 150)]

    whole = tmp_path / "whole.csv"
    whole.write_text("x\n" + "".join(f"{k}\n" for k in range(1000)))
    flow = Flow("proc_split", params={"src": str(whole)}, chunk_size=100)
    read = flow.step("read", steps.CsvInput("${params.src}", types={"x": int}), instances=2, processes=True)
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    assert sorted(r["x"] for r in run.result) == list(range(1000))
    assert all(0 < m.rows_out["out"] < 1000 for m in run.metrics["read"])


def test_carrier_columns_match_the_generated_header(flights):
    with open(flights, newline="") as fh:
        assert next(csv.reader(fh)) == COLUMNS
    assert {r["carrier"] for r in read_flights(flights)} == set(CARRIERS)


def test_aggregate_field_names_are_data_not_code():
    odd = "x'] + 1; import os #\"\n"
    rows = [{odd: 1, "g\\": "a"}, {odd: 2, "g\\": "a"}, {odd: None, "g\\": ("t", 1)}]
    flow = Flow("odd_names")
    gen = flow.step("gen", steps.Generate(rows=rows, index=None))
    agg = flow.step("agg", steps.Aggregate(["g\\"], {odd: ("sum", odd), "n": ("count", odd)}))
    flow.hop(gen, agg)
    _collect(flow, agg)
    run = flow.run()
    assert run.ok, run.error
    assert run.result == [{"g\\": "a", odd: 3, "n": 2}, {"g\\": ("t", 1), odd: None, "n": 0}]


def test_columns_keeps_only_the_named_fields(flights):
    flow = Flow("columns", params={"src": str(flights)}, chunk_size=500)
    read = flow.step("read", steps.CsvInput("${params.src}", na_values=["NA"], types={"dep_delay": float},
                                            columns=["dep_delay", "carrier"]), instances=2)
    _collect(flow, read)
    run = flow.run()
    assert run.ok, run.error
    want = [{"dep_delay": r["dep_delay"], "carrier": r["carrier"]} for r in read_flights(flights)]
    assert sorted(run.result, key=repr) == sorted(want, key=repr)
    assert list(run.result[0]) == ["dep_delay", "carrier"]

    bad = Flow("bad_columns", params={"src": str(flights)})
    bad.step("read", steps.CsvInput("${params.src}", columns=["carrier", "nope"]))
    run = bad.run()
    assert not run.ok and "columns ['nope'] are not fields of" in run.message and "time_hour" in run.message
