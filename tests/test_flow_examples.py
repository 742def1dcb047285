"""The data-flow example recipes load, generate their DES, and their flows do what they say."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tinyo.flow import Flow, FlowFailed
from tinyo.recipe import load_recipe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flow-demo")
    saved = os.environ.get("TINYO_FLOW_DEMO")
    os.environ["TINYO_FLOW_DEMO"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("TINYO_FLOW_DEMO", None)
    else:
        os.environ["TINYO_FLOW_DEMO"] = saved


def _op_context(des):
    (op, cfg), = des.ops
    return op, {"deps": des.deps, "targs": des.targs, "config": cfg}


def test_flow_enrich_recipe_enriches_orders_when_a_master_file_lands(demo_dir):
    recipe = load_recipe(EXAMPLES / "flow_enrich.py")
    module = recipe.module
    if Path(module.BASE) != demo_dir:
        pytest.skip("the recipe was loaded earlier in this process with another demo folder")
    assert recipe.config.dirs == [str(demo_dir / "in")]
    assert module.on_master_file(str(demo_dir / "in" / "other.txt")) == (None, [])

    master = module.write_master_file()
    key, (des,) = module.on_master_file(master)
    assert key == master and des.deps == frozenset([master])
    op, context = _op_context(des)
    assert isinstance(op, Flow)
    assert op(context) == 5000 - 10  # every 500th order has no master record

    conn = sqlite3.connect(module.DB)
    rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT name), MIN(source), MAX(source) FROM orders_enriched").fetchone()
    assert rows == (4990, 40, os.path.basename(master), os.path.basename(master))
    assert conn.execute("SELECT COUNT(*) FROM orders_enriched WHERE name IS NULL").fetchone() == (0,)

    with pytest.raises(FlowFailed, match="master file .*missing.csv' does not exist"):
        op({**context, "config": {"master": str(demo_dir / "missing.csv")}})


def test_flow_partition_recipe_totals_per_customer_on_timer_and_file(demo_dir):
    recipe = load_recipe(EXAMPLES / "flow_partition.py")
    module = recipe.module
    if Path(module.BASE) != demo_dir:
        pytest.skip("the recipe was loaded earlier in this process with another demo folder")
    assert [t.name for t in recipe.config.timers] == ["totals_every_minute"]
    assert module.recompute_totals("something_else") == (None, [])
    _, (from_file,) = module.recompute_totals(str(demo_dir / "partition" / "recompute-1"))
    key, (des,) = module.recompute_totals("totals_every_minute_1730000040.0")
    assert key == "totals_every_minute_1730000040.0"
    op, context = _op_context(des)
    result = op(context)

    conn = sqlite3.connect(module.DB)
    expected = dict(conn.execute("SELECT customer, SUM(amount) FROM sales GROUP BY customer").fetchall())
    written = dict(conn.execute("SELECT customer, total FROM customer_totals").fetchall())
    assert written == expected
    assert result == {"customers": len(expected), "total": sum(expected.values())}
    assert len({r[0] for r in conn.execute("SELECT run FROM customer_totals")}) == 1
