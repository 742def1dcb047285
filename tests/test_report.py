"""The headless log: one line per event while a person can read them, one summary line per second
under a flood, failures always on lines of their own; the JSON log prints every fact, a batch per write."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

from tinyo import events as ev
from tinyo.groups import GroupSummary
from tinyo.names import json_escaped
from tinyo.report import READABLE, JsonReporter, TextReporter


class Clock:
    """A monotonic clock the test moves (the reporter's seconds are its seconds)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _burst(report, clock: Clock, files: int, failing: set[int]) -> None:
    """What the engine publishes for ``files`` files, one op each, 1,000 files a (test) second."""
    for i in range(files):
        report(ev.EventReceived(1.0, i, f"/in/f{i}.csv", "file"))
        report(ev.OpStarted(1.0, i, f"d{i}", "load", "w1", 1, frozenset()))
        if i in failing:
            report(ev.OpFailed(1.0, i, f"d{i}", "load", "w1", 0.01, f"boom on f{i}", "Traceback ...", None))
        else:
            report(ev.OpFinished(1.0, i, f"d{i}", "load", "w1", 0.01, None))
        if i % 1000 == 999:
            clock.advance(1.0)


def test_a_flood_is_summed_up_per_second_and_every_failure_is_printed():
    clock = Clock()
    out = io.StringIO()
    report = TextReporter(out, color=False, clock=clock)
    failing = {17, 4_321, 9_998}
    _burst(report, clock, 10_000, failing)
    report.close()
    lines = out.getvalue().splitlines()
    assert lines, "the reporter printed nothing"
    failed = [line for line in lines if " FAILED " in line]
    assert [re.search(r"boom on f(\d+)", line).group(1) for line in failed] == ["17", "4321", "9998"]
    summaries = [line for line in lines if " summary " in line]
    assert summaries, "a flood must be summed up"
    shown = [line for line in lines if " summary " not in line and " FAILED " not in line]
    hidden = sum(int(re.search(r"summary ([\d,]+) lines not shown", s).group(1).replace(",", "")) for s in summaries)
    # every line the log would have printed is either printed or counted in a summary
    assert len(shown) + hidden == 3 * 10_000 - len(failing)
    # one by one only while readable: at most READABLE lines in each summed-up second
    assert len(shown) <= READABLE * (len(summaries) + 1)
    assert len(summaries) <= 11, "at most one summary line a second (and one at the close)"
    assert all("ok" in s and "events" in s and "failed" in s for s in summaries)


def test_a_flood_in_whole_batches_held_back_by_a_slow_terminal_still_prints_every_failure_and_counts_the_rest():
    """As the bus hands facts over (a cycle's at once), while the printer waits for the terminal: whole batches
    pile up, past the lines one second may show; every failure in them is printed, the rest counted by kind."""
    clock = Clock()
    out = GatedStream()
    report = TextReporter(out, color=False, clock=clock)
    report(ev.EventReceived(1.0, -1, "/in/first", "file"))
    assert out.entered.wait(5), "the printer is writing the first line (and waits for the terminal)"
    failing = {5, 777, 1_999}
    batch: list[ev.BusEvent] = []
    for i in range(2_000):
        batch.append(ev.EventReceived(1.0, i, f"/in/f{i}", "file"))
        batch.append(ev.OpStarted(1.0, i, f"d{i}", "load", "w1", 1, frozenset()))
        batch.append(ev.OpFailed(1.0, i, f"d{i}", "load", "w1", 0.01, f"boom on f{i}", None, None) if i in failing
                     else ev.OpFinished(1.0, i, f"d{i}", "load", "w1", 0.01, None))
        if len(batch) >= 600:
            report.many(batch)
            batch = []
    report.many(batch)
    out.gate.set()
    report.close()
    lines = out.getvalue().splitlines()
    failed = [re.search(r"boom on f(\d+)", line).group(1) for line in lines if " FAILED " in line]
    assert failed == ["5", "777", "1999"]
    summaries = [line for line in lines if " summary " in line]
    shown = [line for line in lines if " summary " not in line and " FAILED " not in line]
    hidden = sum(int(re.search(r"summary ([\d,]+) lines not shown", s).group(1).replace(",", "")) for s in summaries)
    assert len(shown) + hidden == 1 + 3 * 2_000 - len(failing), "every line printed or counted, none twice"
    assert len(shown) == READABLE, "one (test) second: READABLE lines one by one, then only counts"
    counted = sum(int(re.search(r"([\d,]+) events", s).group(1).replace(",", "")) for s in summaries)
    assert counted + sum(" event " in line for line in shown) == 2_001, "every event printed or counted by kind"
    assert " failed (load x3)" in summaries[-1], "the summary names the failures by op"


def test_a_quiet_log_prints_every_line_and_no_summary():
    clock = Clock()
    out = io.StringIO()
    report = TextReporter(out, color=False, clock=clock)
    for i in range(3):
        report(ev.EventReceived(1.0, i, f"in{i}", "manual"))
        report(ev.OpOutput(1.0, i, f"d{i}", "load", "w1", "stdout", f"loaded in{i}\x1b[2J"))
        clock.advance(1.0)
    report.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 2)[1:] for line in lines if "event" in line] == [
        ["event", f" in{i}  (manual #{i})"] for i in range(3)]
    assert "load[w1] | loaded in0\\x1b[2J" in lines, "control characters are shown escaped"
    assert not [line for line in lines if "summary" in line]


def test_the_json_log_prints_every_fact_in_order_a_batch_per_write():
    out = CountingStream()
    report = JsonReporter(out)
    total = 30_000  # more than the reporter keeps waiting: the publisher is held up, nothing is dropped
    for i in range(total):
        report(ev.EventReceived(1.0, i, f"e{i}", "manual"))
    report.close()
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event_id"] for r in rows] == list(range(total))
    assert out.writes < total // 10, f"{out.writes} writes for {total} facts: not batched"


def _to_json_line(event: ev.BusEvent) -> str:
    """The line ``tinyo run --json`` has always printed for a fact: its ``to_json``, compact, what JSON cannot
    carry shown as text, a file name's undecodable bytes as ``\\udcNN`` escapes."""
    return json_escaped(json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"), default=str)) + "\n"


def _every_kind_of_fact() -> list[ev.BusEvent]:
    tricky = 'a},{"type":"x \u00e9 \udcff \n \\ \x1b'  # the separator the batch's encoding relies on, inside a name
    return [
        ev.DocumentUpdated(1.25, tricky, 3, "event"),
        ev.EventReceived(1.5, 7, tricky, "file", 1.0, 1, 0),
        ev.EventReceived(1.5, 8, "hung", "timer", None, None, 1),
        ev.GeneratorError(2.0, "g", "e", "boom", "Traceback\n  line"),
        ev.DESRegistered(2.0, "abc", frozenset({tricky, "b", "a"}), frozenset({"t2", "t1"}), ("load", "save"), "g", "e"),
        ev.DESRejectedEvent(2.0, "abc", "g", "e", "no targs"),
        ev.DESStateChanged(2.5, "abc", "queued", "queued: never built", "new", ("t1", "t2")),
        ev.OpStarted(3.0, 1, "abc", "load", "w1", 2, frozenset({"t2", "t1"})),
        ev.OpOutput(3.1, 1, "abc", "load", "w1", "stderr", "warning: " + tricky, 4),
        ev.OpFinished(3.2, 1, "abc", "load", "w1", 0.1, "3 rows"),
        ev.OpFinished(3.2, 2, "abc", "load", "w1", 0.1, [{"type": "a"}, {"type": "b"}]),  # the separator in a value
        ev.OpFinished(3.2, 3, "abc", "load", "w1", 0.1, Path("/not/json")),
        ev.OpFailed(3.3, 1, "abc", "load", "w1", 0.2, "ValueError: x", "tb", 1.5),
        ev.OpCancelled(3.4, 1, "abc", "load", "w1"),
        ev.GroupsChanged(4.0, (GroupSummary("p.*", 2, "p.a", (("ok", 1), ("failed", 1))),)),
        ev.TimerFired(5.0, "tick", 4.5, "tick@4.5", True),
        ev.WorkerChanged(6.0, "w1", 123, "dead", "exit code -9"),
        ev.FlowMetrics(7.0, None, "f", "r", "s", 0, 2, "running", 3, {"out": 2}, 0, 1.5, 0.25, 8, {"bad": 1}),
        ev.EngineState(8.0, "running", "", 5),
        ev.EngineNotice(9.0, "error", tricky),
        ev.FactsMissed(10.0, 12),
    ]


def test_the_json_log_prints_each_fact_as_its_to_json_compact_whatever_the_batch():
    facts = _every_kind_of_fact()
    assert {type(f) for f in facts} >= {cls for cls in vars(ev).values() if isinstance(cls, type)
                                       and issubclass(cls, ev.BusEvent) and cls is not ev.BusEvent}
    expected = "".join(map(_to_json_line, facts))
    for batches in ([facts], [[f] for f in facts], [facts[:10], facts[10:11], facts[11:]]):
        out = io.StringIO()
        report = JsonReporter(out)
        for batch in batches:
            report.many(batch)
        report.close()
        assert out.getvalue() == expected


class GatedStream(io.StringIO):
    """A terminal that stops reading until ``gate`` is set (the printer waits in its write)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.gate.wait(10)
        return super().write(text)


def test_facts_the_text_log_has_no_line_for_never_reach_its_printer_nor_its_counts():
    out = GatedStream()
    report = TextReporter(out, color=False, clock=Clock())
    report(ev.EventReceived(1.0, 0, "in0", "manual"))
    assert out.entered.wait(5), "the printer is writing the first line (and waits for the terminal)"
    quiet = [ev.DESStateChanged(1.0, f"d{i}", "ok", "up to date", "queued", ("t",)) for i in range(25_000)]
    report.many(quiet)  # more than the printer keeps waiting: none of them may count as a line not shown
    for i in range(1, 11):
        report(ev.EventReceived(1.0, i, f"in{i}", "manual"))
    out.gate.set()
    report.close()
    lines = out.getvalue().splitlines()
    assert [line for line in lines if "summary" in line] == []
    assert len(lines) == 11 and all(" event " in line for line in lines)


def test_the_verbose_text_log_prints_state_changes():
    out = io.StringIO()
    report = TextReporter(out, color=False, verbose=True, clock=Clock())
    report.many([ev.DESStateChanged(1.0, "d1", "ok", "up to date", "queued", ("t",)),
                 ev.DocumentUpdated(1.0, "t", 2, "d1")])
    report.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and '"des_id": "d1"' in lines[0] and '"version": 2' in lines[1]


def test_the_verbose_text_log_prints_the_versions_and_first_state_other_facts_tell_as_their_own_facts_print():
    """An event's version, a new DES's first state and a run's targets' versions come inside those facts: the
    verbose log prints each as the line of the fact it stands for, after the line of the fact that tells it."""
    told = [ev.EventReceived(1.0, 7, "/in/a.csv", "file", 1.0, 1, 0, 1),
            ev.DESRegistered(1.0, "d1", frozenset({"/in/a.csv"}), frozenset({"t"}), ("load",), "on_file", "/in/a.csv",
                             False, "queued", "queued: never built"),
            ev.OpFinished(2.0, 1, "d1", "load", "w1", 0.01, None, ("t",), (1,))]
    out, plain = io.StringIO(), io.StringIO()
    for stream, verbose in ((out, True), (plain, False)):
        report = TextReporter(stream, color=False, verbose=verbose, clock=Clock())
        report.many(told)
        report.close()
    unfolded = io.StringIO()
    report = TextReporter(unfolded, color=False, verbose=True, clock=Clock())
    report.many([ev.DocumentUpdated(1.0, "/in/a.csv", 1, "event"),
                 ev.DESStateChanged(1.0, "d1", "queued", "queued: never built", "new", ("t",)),
                 ev.DocumentUpdated(2.0, "t", 1, "d1")])
    report.close()
    lines, plain_lines = out.getvalue().splitlines(), plain.getvalue().splitlines()
    assert len(plain_lines) == 3 and len(lines) == 6
    assert [lines[1], lines[3], lines[5]] == unfolded.getvalue().splitlines()
    assert [lines[0], lines[2], lines[4]] == plain_lines


RECIPE = '''
from pathlib import Path
from tinyo import DES, Config, Execution, TinyOConfig, meta_task


def load(context):
    path = next(iter(context["deps"]))
    if Path(path).name.startswith("bad"):
        raise ValueError(f"cannot load {Path(path).name}")


@meta_task(root=True)
def on_file(event):
    if not event.endswith(".csv"):
        return (None, [])
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["loaded " + Path(event).name]),
                        ops=[(load, Config({}))])])


config = TinyOConfig(sql_conn=DB, dirs=[INBOX], maxevents=200, max_workers=2, execution=Execution.THREADS)
'''


def test_tinyo_run_sums_up_a_burst_and_prints_its_failures(tmp_path: Path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(400):
        (inbox / f"f{i:03}.csv").write_text("x")
    for name in ("bad_one.csv", "bad_two.csv"):
        (inbox / name).write_text("x")
    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE.replace("DB", repr(str(tmp_path / "state.db"))).replace("INBOX", repr(str(inbox))))
    result = subprocess.run([sys.executable, "-m", "tinyo.cli", "run", str(recipe), "--idle-exit", "1"],
                            capture_output=True, text=True, timeout=120, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    failed = [line for line in lines if " FAILED " in line]
    assert len(failed) == 2 and any("cannot load bad_one.csv" in line for line in failed), result.stdout[-3000:]
    summaries = [line for line in lines if " summary " in line]
    assert summaries, "400 files at once must be summed up"
    assert any(" failed (load x" in line for line in summaries), "a summary names the failures"
    assert len(lines) < 400, "the log printed a line per event under a flood"
