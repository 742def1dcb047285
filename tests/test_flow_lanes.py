"""Data flows: lanes (instance i feeds instance i), redistribution, and the partition guarantee."""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict

from tinyo.flow import Flow, stable_hash, steps


def test_equal_instance_counts_keep_rows_in_lanes():
    seen = []

    def source(row, ctx):
        return [{"lane": ctx.instance.index, "k": k} for k in range(500)]

    def middle(row, ctx):
        row["middle"] = ctx.instance.index
        return row

    def sink(row, ctx):
        seen.append((row["lane"], row["middle"], ctx.instance.index))

    flow = Flow("lanes", chunk_size=64)
    src = flow.step("source", source, instances=3)
    mid = flow.step("middle", middle, instances=3)
    flow.hop(src, mid)
    flow.hop(mid, flow.step("sink", sink, instances=3))
    run = flow.run()
    assert run.ok, run.error
    assert len(seen) == 1500
    assert all(lane == middle == last for lane, middle, last in seen)
    assert [m.rows_in for m in run.metrics["sink"]] == [500, 500, 500]


def test_different_instance_counts_redistribute_round_robin():
    per_instance = defaultdict(list)
    lock = threading.Lock()

    def sink(row, ctx):
        with lock:
            per_instance[ctx.instance.index].append(row["i"])

    flow = Flow("spread", chunk_size=100)
    gen = flow.step("gen", steps.Generate(3000))
    flow.hop(gen, flow.step("sink", sink, instances=3))
    run = flow.run()
    assert run.ok, run.error
    assert sorted(i for rows in per_instance.values() for i in rows) == list(range(3000))
    assert sorted(len(rows) for rows in per_instance.values()) == [1000, 1000, 1000]


def test_stable_hash_is_deterministic_and_equal_for_equal_values():
    assert stable_hash("abc") == 891568578  # CRC-32, the same in every process and run
    assert stable_hash(5) == stable_hash(5.0) == 5
    assert stable_hash(True) == stable_hash(1)
    assert stable_hash(("a", 1)) == stable_hash(["a", 1])


def _make_sales(path, rows=2000, customers=37):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, customer TEXT, amount INTEGER)")
    conn.executemany(
        "INSERT INTO sales VALUES (?, ?, ?)",
        [(i, f"c{(i * 7) % customers:02d}", (i % 13) + 1) for i in range(1, rows + 1)],
    )
    conn.commit()
    expected = defaultdict(int)
    for _id, customer, amount in conn.execute("SELECT id, customer, amount FROM sales"):
        expected[customer] += amount
    conn.close()
    return dict(expected)


def test_partition_sends_each_customer_to_exactly_one_instance(tmp_path):
    db = str(tmp_path / "sales.sqlite")
    expected = _make_sales(db)
    readers: dict[int, set[int]] = defaultdict(set)
    seen_by: dict[str, set[int]] = defaultdict(set)
    lock = threading.Lock()

    def tag(row, ctx):
        with lock:
            seen_by[row["customer"]].add(ctx.instance.index)
        return row

    def note_reader(row, ctx):
        with lock:
            readers[ctx.instance.index].add(row["id"])
        return row

    flow = Flow("partition", params={"readers": 4, "totals": 2}, services={"db": db}, chunk_size=128)
    read = flow.step(
        "read",
        steps.SqlInput("SELECT id, customer, amount FROM sales WHERE id % ${instance.count} = ${instance.index}"),
        instances=lambda p: p["readers"],
    )
    note = flow.step("note", note_reader, instances=lambda p: p["readers"])
    by_customer = flow.step("tag", tag, instances=lambda p: p["totals"])
    total = flow.step("total", steps.Aggregate("customer", {"total": ("sum", "amount"), "rows": ("count", None)}),
                      instances=lambda p: p["totals"])
    result = flow.step("result", steps.SetFlowResult(collect=True))
    flow.hop(read, note)
    flow.hop(note, by_customer, partition=lambda row: row["customer"])
    flow.hop(by_customer, total)
    flow.hop(total, result)
    run = flow.run()
    assert run.ok, run.error

    # every reader instance read exactly its residue class of ids
    assert sorted(readers) == [0, 1, 2, 3]
    for index, ids in readers.items():
        assert ids and all(i % 4 == index for i in ids)
    assert sum(len(ids) for ids in readers.values()) == 2000

    # each customer went to exactly one instance, the one its stable hash names
    assert set(seen_by) == set(expected)
    for customer, instances in seen_by.items():
        assert instances == {stable_hash(customer) % 2}, customer
    assert {i for s in seen_by.values() for i in s} == {0, 1}

    # one total per customer, every one right
    totals = {r["customer"]: r["total"] for r in run.result}
    assert len(run.result) == len(expected)
    assert totals == expected
    assert sum(r["rows"] for r in run.result) == 2000


def test_partition_by_field_name_with_equal_counts_still_partitions():
    seen_by: dict[int, set[int]] = defaultdict(set)
    lock = threading.Lock()

    def note(row, ctx):
        with lock:
            seen_by[row["g"]].add(ctx.instance.index)

    flow = Flow("partition_field", chunk_size=50)
    gen = flow.step("gen", steps.Map(lambda r: {"g": r["i"] % 10}), instances=3)
    src = flow.step("src", steps.Generate(300), instances=3)
    flow.hop(src, gen)
    flow.hop(gen, flow.step("note", note, instances=3), partition="g")
    assert flow.run().ok
    assert all(instances == {g % 3} for g, instances in seen_by.items())
    assert len(seen_by) == 10


def test_a_partition_function_that_raises_fails_the_flow_naming_the_hop():
    flow = Flow("bad_partition")
    gen = flow.step("gen", steps.Generate(5))
    flow.hop(gen, flow.step("sink", lambda r, c: None, instances=2), partition=lambda row: row["nope"])
    run = flow.run()
    assert not run.ok and run.failed_step == "gen"
    assert "flow 'bad_partition' hop 'gen'.out -> 'sink': the partition function raised KeyError: 'nope'" in run.message
