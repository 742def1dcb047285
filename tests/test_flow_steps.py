"""Data flows: the built-in steps (CSV, SQL, Lookup, Aggregate, Run Flow, Log, Generate)."""

from __future__ import annotations

import csv
import sqlite3

from tinyo import runtime
from tinyo.flow import Flow, steps


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_in_map_csv_out_round_trip(tmp_path):
    src = tmp_path / "in.csv"
    _write_csv(src, ["id", "name"], [(i, f"n{i}") for i in range(2500)])
    flow = Flow("csv", params={"src": str(src), "dst": str(tmp_path / "out")}, chunk_size=300)
    read = flow.step("read", steps.CsvInput("${params.src}", types={"id": int}))
    up = flow.step("upper", steps.Map(lambda r: {**r, "name": r["name"].upper(), "twice": r["id"] * 2}))
    write = flow.step("write", steps.CsvOutput("${params.dst}/part_${instance.index}.csv"), instances=2)
    flow.hop(read, up)
    flow.hop(up, write)
    run = flow.run()
    assert run.ok, run.error
    rows = _read_csv(tmp_path / "out" / "part_0.csv") + _read_csv(tmp_path / "out" / "part_1.csv")
    assert sorted(int(r["id"]) for r in rows) == list(range(2500))
    assert all(r["name"] == f"N{r['id']}" and int(r["twice"]) == 2 * int(r["id"]) for r in rows)
    assert run.rows_out("write") == 2500


def test_csv_output_refuses_two_instances_writing_one_file(tmp_path):
    flow = Flow("csv_clash")
    gen = flow.step("gen", steps.Generate(10))
    flow.hop(gen, flow.step("write", steps.CsvOutput(str(tmp_path / "same.csv")), instances=2))
    run = flow.run()
    assert not run.ok
    assert "already writes" in run.message and "${instance.index}" in run.message


def test_sql_output_then_input_with_args_and_batches(tmp_path):
    db = str(tmp_path / "t.sqlite")
    write = Flow("sql_write", services={"db": db}, chunk_size=128)
    gen = write.step("gen", steps.Generate(1000, fields={"kind": "k"}))
    out = write.step("insert", steps.SqlOutput("items", create=True), instances=2)
    write.hop(gen, out)
    run = write.run()
    assert run.ok, run.error
    assert sqlite3.connect(db).execute("SELECT COUNT(*), SUM(i) FROM items").fetchone() == (1000, sum(range(1000)))

    read = Flow("sql_read", params={"lo": 990}, services={"db": db})
    q = read.step("q", steps.SqlInput("SELECT i, kind FROM items WHERE i >= ? ORDER BY i", args=["${params.lo}"]))
    read.hop(q, read.step("res", steps.SetFlowResult("i", collect=True)))
    assert read.run().result == list(range(990, 1000))


def test_sql_output_sends_only_the_failing_rows_to_the_error_gate(tmp_path):
    db = str(tmp_path / "u.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO u VALUES (5, 'old')")
    conn.commit()
    conn.close()
    errors = []
    flow = Flow("sql_err", services={"db": db})
    gen = flow.step("gen", steps.Generate(10, index="id", fields={"v": "new"}))
    ins = flow.step("insert", steps.SqlOutput("u", fields=["id", "v"]))
    flow.hop(gen, ins)
    flow.hop(ins, flow.step("errors", lambda row, ctx: errors.append(row)), gate="error")
    run = flow.run()
    assert run.ok, run.error
    assert [e["row"]["id"] for e in errors] == [5]
    assert "UNIQUE constraint failed" in errors[0]["error"]
    rows = sqlite3.connect(db).execute("SELECT id, v FROM u ORDER BY id").fetchall()
    assert rows == [(i, "old" if i == 5 else "new") for i in range(10)]


def test_sql_statement_updates_rows_by_name(tmp_path):
    db = str(tmp_path / "s.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, v INTEGER)")
    conn.executemany("INSERT INTO s VALUES (?, 0)", [(i,) for i in range(20)])
    conn.commit()
    conn.close()
    flow = Flow("sql_update", services={"db": db})
    read = flow.step("read", steps.SqlInput("SELECT id FROM s"))
    calc = flow.step("calc", steps.Map(lambda r: {**r, "v": r["id"] * 3}))
    upd = flow.step("update", steps.SqlOutput(statement="UPDATE s SET v = :v WHERE id = :id"))
    flow.hop(read, calc)
    flow.hop(calc, upd)
    assert flow.run().ok
    assert sqlite3.connect(db).execute("SELECT SUM(v) FROM s").fetchone()[0] == 3 * sum(range(20))


def test_a_missing_service_is_a_clear_error():
    flow = Flow("no_service", services={"other": "x.sqlite"})
    flow.step("q", steps.SqlInput("SELECT 1"))
    run = flow.run()
    assert not run.ok and "service 'db' is not defined (services: other)" in run.message


def test_lookup_enriches_from_csv_with_each_missing_policy(tmp_path):
    master = tmp_path / "customers.csv"
    _write_csv(master, ["customer_id", "name", "segment"], [(1, "Ann", "A"), (2, "Bob", "B")])

    def enrich(on_missing):
        missing = []
        flow = Flow("lookup_" + on_missing, params={"master": str(master)})
        gen = flow.step("gen", steps.Generate(rows=[{"customer_id": c} for c in (1, 2, 3)], index=None))
        look = flow.step("look", steps.Lookup(csv="${params.master}", key="customer_id",
                                              types={"customer_id": int}, on_missing=on_missing), instances=2)
        flow.hop(gen, look)
        flow.hop(look, flow.step("res", steps.SetFlowResult(collect=True)))
        flow.hop(look, flow.step("missing", lambda r, c: missing.append(r)), gate="missing")
        run = flow.run()
        return run, sorted(run.result or [], key=lambda r: r["customer_id"]), missing

    run, rows, _ = enrich("null")
    assert run.ok, run.error
    assert rows == [{"customer_id": 1, "name": "Ann", "segment": "A"},
                    {"customer_id": 2, "name": "Bob", "segment": "B"},
                    {"customer_id": 3, "name": None, "segment": None}]
    assert [r["customer_id"] for r in enrich("drop")[1]] == [1, 2]
    assert enrich("keep")[1][2] == {"customer_id": 3}
    _, rows, missing = enrich("gate")
    assert [r["customer_id"] for r in rows] == [1, 2] and missing == [{"customer_id": 3}]
    failed, _, _ = enrich("fail")
    assert not failed.ok and "no master record with {'customer_id': 3}" in failed.message


def test_lookup_from_a_table_with_other_key_names_and_prefix(tmp_path):
    db = str(tmp_path / "m.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE products (sku TEXT, price REAL, label TEXT)")
    conn.executemany("INSERT INTO products VALUES (?, ?, ?)", [("a", 1.5, "Apple"), ("b", 2.0, "Bean")])
    conn.commit()
    conn.close()
    flow = Flow("lookup_table", services={"db": db})
    gen = flow.step("gen", steps.Generate(rows=[{"product": "b"}, {"product": "a"}], index=None))
    look = flow.step("look", steps.Lookup(table="products", key="product", lookup_key="sku",
                                          fields=["price"], prefix="p_"))
    flow.hop(gen, look)
    flow.hop(look, flow.step("res", steps.SetFlowResult(collect=True)))
    assert flow.run().result == [{"product": "b", "p_price": 2.0}, {"product": "a", "p_price": 1.5}]


def test_run_flow_puts_the_sub_flow_result_in_the_row():
    sub = Flow("sum_to", params={"n": 0})
    gen = sub.step("gen", steps.Generate("${params.n}"))
    tot = sub.step("total", steps.Aggregate((), {"s": ("sum", "i")}))
    res = sub.step("res", steps.SetFlowResult("s"))
    sub.hop(gen, tot)
    sub.hop(tot, res)
    flow = Flow("outer")
    gen = flow.step("gen", steps.Generate(rows=[{"n": 3}, {"n": 10}, {"n": 0}], index=None))
    run_sub = flow.step("sum", steps.RunFlow(sub, from_row=["n"], result_field="total"))
    flow.hop(gen, run_sub)
    flow.hop(run_sub, flow.step("res", steps.SetFlowResult(collect=True)))
    seen = []
    with runtime.metrics_sink(seen.append):
        run = flow.run()
    assert run.ok, run.error
    assert run.result == [{"n": 3, "total": 3}, {"n": 10, "total": 45}, {"n": 0, "total": None}]
    # each sub-flow run reported its own lanes
    assert len({s["flow_run"] for s in seen if s["flow"] == "sum_to"}) == 3

    quiet = Flow("outer_quiet")
    g = quiet.step("gen", steps.Generate(rows=[{"n": 2}], index=None))
    r = quiet.step("sum", steps.RunFlow(sub, from_row=["n"], report_metrics=False))
    quiet.hop(g, r)
    quiet.hop(r, quiet.step("res", steps.SetFlowResult("result")))
    seen.clear()
    with runtime.metrics_sink(seen.append):
        assert quiet.run().result == 1
    assert seen and not [s for s in seen if s["flow"] == "sum_to"]


def test_run_flow_failure_is_an_error_row():
    sub = Flow("strict", params={"n": 1}, variables={"check": lambda p: 1 / p["n"]})
    sub.step("noop", lambda r, c: None)
    errors = []
    flow = Flow("outer_err")
    gen = flow.step("gen", steps.Generate(rows=[{"n": 1}, {"n": 0}], index=None))
    rf = flow.step("run", steps.RunFlow(sub, from_row={"n": "n"}))
    flow.hop(gen, rf)
    flow.hop(rf, flow.step("errors", lambda r, c: errors.append(r)), gate="error")
    flow.hop(rf, flow.step("res", steps.SetFlowResult(collect=True)))
    run = flow.run()
    assert run.ok, run.error
    assert run.result == [{"n": 1, "result": None}]
    assert len(errors) == 1 and errors[0]["row"] == {"n": 0}
    assert "sub-flow 'strict' failed" in errors[0]["error"] and "division by zero" in errors[0]["error"]


def test_log_prints_rows_and_passes_them_on(capsys):
    flow = Flow("logging")
    gen = flow.step("gen", steps.Generate(2, fields={"x": "y"}))
    log = flow.step("log", steps.Log())
    flow.hop(gen, log)
    flow.hop(log, flow.step("res", steps.SetFlowResult("i", collect=True)))
    run = flow.run()
    assert run.result == [0, 1]
    out = capsys.readouterr().out
    assert "[logging/log#0] {'x': 'y', 'i': 0}" in out and "[logging/log#0] {'x': 'y', 'i': 1}" in out


def test_aggregate_operations():
    flow = Flow("agg")
    gen = flow.step("gen", steps.Generate(10))
    key = flow.step("key", steps.Map(lambda r: {**r, "g": r["i"] % 2}))
    agg = flow.step("agg", steps.Aggregate("g", {
        "n": ("count", None), "sum": ("sum", "i"), "min": ("min", "i"), "max": ("max", "i"),
        "avg": ("avg", "i"), "first": ("first", "i"), "last": ("last", "i"), "all": ("list", "i")}))
    flow.hop(gen, key)
    flow.hop(key, agg)
    flow.hop(agg, flow.step("res", steps.SetFlowResult(collect=True)))
    result = sorted(flow.run().result, key=lambda r: r["g"])
    assert result[0] == {"g": 0, "n": 5, "sum": 20, "min": 0, "max": 8, "avg": 4.0, "first": 0, "last": 8,
                         "all": [0, 2, 4, 6, 8]}
    assert result[1]["sum"] == 25 and result[1]["all"] == [1, 3, 5, 7, 9]
