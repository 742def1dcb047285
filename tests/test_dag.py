"""The readiness rule as pure logic: no processes, no files, no store."""

import pytest

from tinyo.dag import Graph, Node
from tinyo.errors import DESRejected
from tinyo.explain import explain_des, explain_document


def graph_of(*specs):
    g = Graph()
    for des_id, deps, targs in specs:
        node = Node(des_id, frozenset(deps), frozenset(targs), ("op",))
        g.check(node.id, node.deps, node.targs)
        g.add(node)
    return g


def settle_all(g):
    return g.settle(list(g.nodes))


def succeed(g, des_id):
    """Record a success of ``des_id`` as the engine does: trace = dep versions, targ versions bump."""
    node = g.nodes[des_id]
    node.status = None
    node.forced = False
    node.trace = g.current(node)
    touched = [des_id]
    for targ in node.targs:
        touched += g.set_version(targ, g.versions.get(targ, 0) + 1)
    return g.settle(touched)


def test_waits_until_every_dep_has_a_version():
    g = graph_of(("facts", ["staging", "dimension"], ["facts_table"]))
    ready, _ = settle_all(g)
    assert ready == [] and g.nodes["facts"].state == "waiting"
    assert "dimension (no version yet)" in g.nodes["facts"].reason
    g.set_version("staging", 1)
    ready, _ = g.settle(["facts"])
    assert ready == [] and "dimension" in g.nodes["facts"].reason
    g.set_version("dimension", 1)
    ready, _ = g.settle(["facts"])
    assert ready == ["facts"] and g.nodes["facts"].reason == "never built"


def test_up_to_date_after_success_and_stale_when_a_dep_changes():
    g = graph_of(("a", ["x"], ["y"]))
    g.set_version("x", 1)
    assert settle_all(g)[0] == ["a"]
    succeed(g, "a")
    assert g.nodes["a"].state == "ok"
    ready, _ = g.settle(g.set_version("x", 2))
    assert ready == ["a"] and g.nodes["a"].reason == "dep changed: x v1 -> v2"


def test_downstream_waits_while_upstream_is_pending_even_with_an_old_version():
    g = graph_of(("up", ["x"], ["y"]), ("down", ["y"], ["z"]))
    g.set_version("x", 1)
    settle_all(g)
    succeed(g, "up")
    assert g.nodes["down"].state == "stale"
    succeed(g, "down")
    # x changes: up is stale, so down must wait even though y has a version
    ready, _ = g.settle(g.set_version("x", 2))
    assert ready == ["up"]
    assert g.nodes["down"].state == "waiting" and "DES up is stale" in g.nodes["down"].reason
    g.nodes["up"].status = "running"
    g.settle(["up"])
    assert g.nodes["down"].state == "waiting" and "running" in g.nodes["down"].reason
    ready, _ = succeed(g, "up")
    assert ready == ["down"]


class CountingGraph(Graph):
    """A real graph that records which DES each settle evaluates."""

    def __init__(self):
        super().__init__()
        self.evaluated = []

    def evaluate(self, node):
        self.evaluated.append(node.id)
        return super().evaluate(node)


def test_a_new_reason_alone_is_told_but_walks_no_further():
    # p -> up -> mid -> down: up waits for p, mid and down wait behind it
    g = CountingGraph()
    for des_id, deps, targs in (("p", ["x"], ["y"]), ("up", ["y"], ["z"]), ("mid", ["z"], ["w"]),
                                ("down", ["w"], ["v"])):
        node = Node(des_id, frozenset(deps), frozenset(targs), ("op",))
        g.check(node.id, node.deps, node.targs)
        g.add(node)
    g.set_version("x", 1)
    settle_all(g)
    assert g.nodes["up"].reason == "waiting for y (DES p is stale)"
    assert g.nodes["mid"].reason == "waiting for z (DES up is waiting)"
    # p starts: up's reason changes (p is running), its state and blocking do not, so mid's verdict (which
    # names up's state) cannot change: mid is not evaluated again, and what it says is still true
    g.nodes["p"].status = "running"
    g.evaluated.clear()
    _, changed = g.settle(["p"])
    assert g.evaluated == ["p", "up"]
    assert [n.id for n in changed] == ["p", "up"] and g.nodes["up"].reason == "waiting for y (DES p is running)"
    assert g.nodes["mid"].reason == g.evaluate(g.nodes["mid"]).reason == "waiting for z (DES up is waiting)"
    # p succeeds: up's state moves (waiting -> stale), so mid is told what up is now; down's verdict stays
    g.evaluated.clear()
    ready, _ = succeed(g, "p")
    assert ready == ["up"] and g.evaluated == ["p", "up", "mid"]
    assert g.nodes["mid"].reason == "waiting for z (DES up is stale)"
    assert g.nodes["down"].reason == "waiting for w (DES mid is waiting)"


def test_a_reader_touched_before_its_finished_producer_is_evaluated_once():
    # a chain link ends: the new version of its target touches the next link first, then the link itself is
    # settled; the next link is evaluated after its producer (once, already stale), not before it and again
    g = CountingGraph()
    for des_id, deps, targs in (("p", ["x"], ["y"]), ("up", ["y"], ["z"]), ("mid", ["z"], ["w"])):
        node = Node(des_id, frozenset(deps), frozenset(targs), ("op",))
        g.check(node.id, node.deps, node.targs)
        g.add(node)
    g.set_version("x", 1)
    settle_all(g)
    node = g.nodes["p"]
    node.status, node.trace = None, g.current(node)
    g.evaluated.clear()
    ready, changed = g.settle([*g.set_version("y", 1), "p"])
    assert g.evaluated == ["p", "up", "mid"]
    assert ready == ["up"] and [n.id for n in changed] == ["p", "up", "mid"]
    assert g.nodes["mid"].reason == "waiting for z (DES up is stale)"


def test_transitive_blocking_through_an_up_to_date_middle():
    g = graph_of(("a", ["x"], ["y"]), ("b", ["y"], ["z"]), ("c", ["z"], ["w"]))
    g.set_version("x", 1)
    settle_all(g)
    for des_id in ("a", "b", "c"):
        succeed(g, des_id)
    assert {n.state for n in g.nodes.values()} == {"ok"}
    g.settle(g.set_version("x", 2))
    assert g.nodes["c"].state == "waiting", "c must wait for a, through b"


def test_early_cutoff_keeps_downstream_up_to_date():
    g = graph_of(("a", ["x"], ["y"]), ("b", ["y"], ["z"]))
    g.set_version("x", 1)
    settle_all(g)
    succeed(g, "a")
    succeed(g, "b")
    g.settle(g.set_version("x", 2))
    # a runs again but produces identical content: y keeps its version
    node = g.nodes["a"]
    node.trace = g.current(node)
    ready, _ = g.settle(["a"])
    assert ready == [] and g.nodes["b"].state == "ok"


def test_failure_blocks_downstream_until_deps_change_or_rerun():
    g = graph_of(("a", ["x"], ["y"]), ("b", ["y"], ["z"]))
    g.set_version("x", 1)
    settle_all(g)
    node = g.nodes["a"]
    node.failed_state, node.failed_trace = "failed", g.current(node)
    ready, _ = g.settle(["a"])
    assert ready == [] and node.state == "failed" and g.nodes["b"].state == "waiting"
    node.forced = True
    assert g.settle(["a"])[0] == ["a"]
    node.forced = False
    ready, _ = g.settle(g.set_version("x", 2) + ["a"])
    assert ready == ["a"]


def test_forced_rerun_runs_an_up_to_date_des():
    g = graph_of(("a", ["x"], ["y"]))
    g.set_version("x", 1)
    settle_all(g)
    succeed(g, "a")
    g.nodes["a"].forced = True
    ready, _ = g.settle(["a"])
    assert ready == ["a"] and g.nodes["a"].reason == "rerun requested"


def test_des_without_deps_runs_once():
    g = graph_of(("init", [], ["table"]))
    assert settle_all(g)[0] == ["init"]
    succeed(g, "init")
    assert g.settle(["init"])[0] == []


def test_conflict_on_a_target_is_rejected_with_both_named():
    g = graph_of(("a", ["x"], ["y"]))
    with pytest.raises(DESRejected, match="conflict: target 'y' is already produced by DES a"):
        g.check("b", frozenset(["q"]), frozenset(["y"]))


def test_cycles_are_rejected():
    g = graph_of(("a", ["x"], ["y"]), ("b", ["y"], ["z"]))
    with pytest.raises(DESRejected, match="cycle"):
        g.check("c", frozenset(["z"]), frozenset(["x"]))
    with pytest.raises(DESRejected, match="cycle"):
        g.check("d", frozenset(["w"]), frozenset(["w"]))


def test_settle_touches_only_what_changed():
    # 1,000 independent pairs; bumping one input evaluates only its own pair
    specs = []
    for i in range(1000):
        specs += [(f"a{i}", [f"x{i}"], [f"y{i}"]), (f"b{i}", [f"y{i}"], [f"z{i}"])]
    g = graph_of(*specs)
    for i in range(1000):
        g.set_version(f"x{i}", 1)
    settle_all(g)
    evaluated = []
    original = g.evaluate

    def counting(node):
        evaluated.append(node.id)
        return original(node)

    g.evaluate = counting  # type: ignore[method-assign]
    g.nodes["a7"].status = "running"
    g.settle(["a7"])
    assert set(evaluated) <= {"a7", "b7"}, evaluated


def test_long_chain_settles_without_recursion():
    n = 5000
    g = graph_of(*[(f"d{i}", [f"doc{i}"], [f"doc{i + 1}"]) for i in range(n)])
    g.set_version("doc0", 1)
    ready, _ = g.settle(reversed(list(g.nodes)))
    assert ready == ["d0"]
    assert g.nodes[f"d{n - 1}"].state == "waiting"


def test_explanations_name_the_cause():
    g = graph_of(("a", ["x"], ["y"]), ("b", ["y", "q"], ["z"]))
    g.set_version("x", 1)
    settle_all(g)
    text = explain_des(g, "b")
    assert "waiting" in text and "q (no version yet)" in text and "DES a is stale" in text
    doc = explain_document(g, "y")
    assert "produced by DES a" in doc and "read by 1 DES: b" in doc
    assert "no event has named it" in explain_document(g, "nothing")


def test_leaves_settle_in_one_pass_as_the_walk_settles_them():
    """DES nothing reads are settled without the walk (a burst's new DES, a run's DES as it starts and ends)
    to the same states, reasons, ready list and changes as ``settle``; a touched DES that something reads
    sends the whole lot to ``settle``, with nothing changed."""
    specs = [("new", ["x"], ["y1"]), ("waits", ["missing"], ["y2"]), ("up", ["x"], ["mid"]), ("down", ["mid"], ["z"])]
    leafy, walked = graph_of(*specs), graph_of(*specs)
    for g in (leafy, walked):
        g.set_version("x", 1)
    assert leafy.settle_leaves(["new", "up"]) is None, "up is read by down"
    assert leafy.nodes["new"].state == leafy.nodes["up"].state == "new", "nothing changed"
    ready, changed = leafy.settle_leaves(["waits", "new", "waits"])
    assert (ready, [n.id for n in changed]) == (["new"], ["waits", "new"])
    assert (ready, [n.id for n in changed]) == (lambda r, c: (r, [n.id for n in c]))(*walked.settle(["waits", "new"]))
    view = lambda g: {i: (n.state, n.was, n.blocking, n.reason) for i, n in g.nodes.items()}  # noqa: E731
    assert view(leafy) == view(walked)
    node, up = leafy.nodes["new"], leafy.nodes["up"]
    ids = lambda changed, undecided: ([n.id for n in changed], [n.id for n in undecided])  # noqa: E731
    node.status = "running"
    assert ids(*leafy.settle_leaves_in((node,), frozenset({"ok"}))) == ([], ["new"]), "running is not asked for"
    assert ids(*leafy.settle_leaves_in((node,), frozenset({"running"}))) == (["new"], [])
    assert (node.was, node.state) == ("stale", "running")
    assert ids(*leafy.settle_leaves_in((node,), frozenset({"running"}))) == ([], []), "no change the second time"
    node.status, node.trace = None, {"x": 1}
    assert ids(*leafy.settle_leaves_in((node,), frozenset({"running", "ok"}))) == (["new"], [])
    assert node.state == "ok" and not node.blocking
    assert ids(*leafy.settle_leaves_in((up, node), frozenset({"stale", "new"}))) == ([], ["up", "new"]), (
        "up has a reader; new's verdict (ok) is not asked for")
