"""Property: random file DAGs, random input changes (several files at once) while the engine is down and
while it runs, outputs deleted or edited by hand while it is down. After each change set, with a real
watcher and a real engine:

- every output equals a clean build's (computed here from the inputs alone);
- each task ran at most once, and exactly the tasks whose dep values changed (early cutoff: an output
  rewritten with the same content stops the rebuild there) or whose output was deleted or edited ran.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Harness, write_recipe

RECIPE = """
import json
HERE = os.path.dirname(os.path.abspath(__file__))
PLAN = json.load(open(os.path.join(HERE, 'plan.json')))
IN, OUT, LEDGER = PLAN['inbox'], PLAN['out'], os.path.join(HERE, 'ledger')

def value(kind, parts):
    text = '|'.join(parts)
    return f'({text})' if kind == 'join' else str(len(text) % 3)

def task(context):
    j = context['config']['j']
    deps = PLAN['tasks'][j]['deps']
    parts = [open(IN + '/' + d if d.startswith('i') else OUT + '/' + d).read() for d in deps]
    with open(OUT + f'/t{j}', 'w') as fh:
        fh.write(value(PLAN['tasks'][j]['kind'], parts))
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f't{j}\\n'.encode())
    os.close(fd)

def path(d):
    return IN + '/' + d if d.startswith('i') else OUT + '/' + d

@meta_task(root=True)
def on_input(event):
    return (None, [DES(deps=[path(d) for d in t['deps']], targs=[OUT + f'/t{j}'], ops=[(task, Config(j=j))])
                   for j, t in enumerate(PLAN['tasks'])])

config = TinyOConfig(sql_conn=os.path.join(HERE, 's.db'), dirs=[IN], max_workers=2, execution=Execution.THREADS,
                     settle=0.1, settle_max=1.0, maxevents=100)
"""


def value(kind: str, parts: list[str]) -> str:
    text = "|".join(parts)
    return f"({text})" if kind == "join" else str(len(text) % 3)


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    n_inputs = draw(st.integers(2, 4))
    inputs = [f"i{k}" for k in range(n_inputs)]
    tasks = []
    for j in range(draw(st.integers(2, 5))):
        pool = inputs + [f"t{k}" for k in range(j)]
        deps = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        tasks.append({"deps": sorted(deps), "kind": draw(st.sampled_from(["join", "join", "mod3"]))})
    words = st.sampled_from(["a", "bb", "ccc", "dddd", "a", "x"])
    steps = draw(st.lists(st.fixed_dictionaries({
        "down": st.booleans(),
        "writes": st.dictionaries(st.sampled_from(inputs), words, min_size=1, max_size=n_inputs),
        "drift": st.dictionaries(st.integers(0, len(tasks) - 1), st.sampled_from(["delete", "edit"]), max_size=2),
    }), min_size=1, max_size=4))
    return {"inputs": inputs, "tasks": tasks, "start": {i: draw(words) for i in inputs}, "steps": steps}


def model(plan: dict[str, Any], inputs: dict[str, str]) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(every task's output, every task's dep values) of a clean build of ``inputs``."""
    values = dict(inputs)
    dep_values: dict[str, tuple[str, ...]] = {}
    for j, t in enumerate(plan["tasks"]):
        dep_values[f"t{j}"] = tuple(values[d] for d in t["deps"])
        values[f"t{j}"] = value(t["kind"], list(dep_values[f"t{j}"]))
    return {k: v for k, v in values.items() if k.startswith("t")}, dep_values


def ledger(root: Path) -> list[str]:
    try:
        return (root / "ledger").read_text().split()
    except FileNotFoundError:
        return []


def check(root: Path, plan: dict[str, Any], inputs: dict[str, str], before: dict[str, tuple[str, ...]] | None,
          drifted: set[str], seen: int) -> tuple[dict[str, tuple[str, ...]], int]:
    outputs, dep_values = model(plan, inputs)
    for name, want in outputs.items():
        assert (root / "out" / name).read_text() == want, f"{name} differs from a clean build"
    runs = ledger(root)[seen:]
    assert len(runs) == len(set(runs)), f"a task ran twice for one change set: {runs}"
    expected = {t for t in dep_values if before is None or dep_values[t] != before[t]} | drifted
    assert set(runs) == expected, f"ran {sorted(runs)}, expected {sorted(expected)}"
    return dep_values, seen + len(runs)


def write_inputs(inbox: Path, writes: dict[str, str]) -> None:
    """Several files at once, each whole: written beside, then renamed in (as a copy tool would)."""
    for name, text in writes.items():
        (inbox.parent / f".{name}.new").write_text(text)
    for name in writes:
        os.rename(inbox.parent / f".{name}.new", inbox / name)


def play(plan: dict[str, Any]) -> None:
    root = Path(tempfile.mkdtemp(prefix="tinyo-rebuild-"))
    try:
        inbox, out = root / "inbox", root / "out"
        inbox.mkdir()
        out.mkdir()
        (root / "plan.json").write_text(json.dumps({**plan, "inbox": str(inbox), "out": str(out)}))
        recipe = write_recipe(root, RECIPE)
        inputs = dict(plan["start"])
        write_inputs(inbox, inputs)
        harness = Harness(recipe)
        with harness as h:
            h.wait_idle(timeout=30, quiet=0.5)
        before, seen = check(root, plan, inputs, None, set(), 0)
        for step in plan["steps"]:
            changed = {k: v for k, v in step["writes"].items()}
            drifted: set[str] = set()
            if step["down"]:
                for j, how in step["drift"].items():
                    target = out / f"t{j}"
                    target.unlink() if how == "delete" else target.write_text("edited by hand")
                    drifted.add(f"t{j}")
                write_inputs(inbox, changed)
                inputs.update(changed)
                with Harness(recipe) as h:
                    h.wait_idle(timeout=30, quiet=0.5)
            else:
                with Harness(recipe) as h:
                    h.wait_idle(timeout=30, quiet=0.3)
                    seen = len(ledger(root))  # a start alone runs nothing
                    write_inputs(inbox, changed)
                    inputs.update(changed)
                    h.wait_idle(timeout=30, quiet=0.5)
            before, seen = check(root, plan, inputs, before, drifted, seen)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=int(os.environ.get("TINYO_PROPERTY_EXAMPLES", 6)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plans())
def test_random_dags_rebuild_exactly_what_changed_once(plan: dict[str, Any]) -> None:
    play(plan)
