"""The JSON log's printer process (``tinyo.jsonlog``): what `tinyo run --json` prints comes from it, byte for byte
what the log encoded in the engine's process would print, and it ends with the engine, however that ends."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import drop, helper_pids, write_recipe
from test_report import _every_kind_of_fact, _to_json_line

from tinyo import events as ev
from tinyo.children import spawn_helper, stop_helper
from tinyo.control import jsonrows
from tinyo.jsonlog import JsonPrinter, batch_message, lines
from tinyo.pipe import Pipe

ONE_OP = """
def load(context):
    print("loaded", next(iter(context["deps"])))


@meta_task(root=True)
def on_file(event):
    return (event, [DES(deps=frozenset([event]), targs=frozenset(["loaded " + event]), ops=[(load, Config({}))])])


config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1, execution=Execution.PROCESSES)
"""


def _printers() -> list[int]:
    return helper_pids(b"tinyo.jsonlog")


def _printers_of(engine: int) -> set[int]:
    """The printer processes ``engine`` started (its children: not another session's running at the same time)."""
    ours = set()
    for pid in _printers():
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if int(fh.read().rsplit(b")", 1)[1].split()[1]) == engine:
                    ours.add(pid)
        except (OSError, ValueError, IndexError):
            continue
    return ours


def test_the_printer_process_prints_each_batch_as_the_log_in_process_would(capfd):
    facts = _every_kind_of_fact()
    unpicklable = ev.OpFinished(3.2, 4, "abc", "load", "w1", 0.1, lambda: None)  # its batch is encoded here
    printer = JsonPrinter()
    printer.send(facts[:7])
    printer.send([facts[7], unpicklable])
    printer.send(facts[8:])
    printer.close()
    out = capfd.readouterr().out
    assert out == "".join(map(_to_json_line, [*facts[:8], unpicklable, *facts[8:]]))


def test_a_printer_sent_a_batch_first_prints_it_and_the_rest_with_its_own_keys(capfd):
    facts = _every_kind_of_fact()
    sys.stdout.flush()
    read, write = os.pipe()
    try:
        process = spawn_helper("tinyo.jsonlog", (read,))
    finally:
        os.close(read)
    pipe = Pipe(write)
    pipe.send(batch_message(facts[:5]))  # no keys first (an engine of another version): the log is not lost
    pipe.send(batch_message(facts[5:]))
    pipe.close()
    stop_helper(process, 30)
    assert process.returncode == 0
    assert capfd.readouterr().out == "".join(map(_to_json_line, facts))


def _run(recipe: Path, *args: str, **kw) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tinyo", "run", str(recipe), "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_for_printer(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the engine starting: the printer is up and printing
    assert json.loads(first)["type"] == "engine_state", first


def test_ctrl_c_or_a_stop_to_every_process_still_prints_the_engines_last_facts(tmp_path, inbox):
    recipe = write_recipe(tmp_path, ONE_OP, db=tmp_path / "s.db", inbox=inbox)
    drop(inbox, "a.csv")
    proc = _run(recipe, start_new_session=True)  # a group of its own, as a shell's job is
    assert proc.stdout is not None
    seen = [json.loads(proc.stdout.readline())]
    while not (seen[-1]["type"] == "op_finished"):  # the engine runs, and has run the file's op
        seen.append(json.loads(proc.stdout.readline()))
    ours = _printers_of(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group gets it
    for pid in ours:
        os.kill(pid, signal.SIGTERM)  # and what a service manager's stop does: every process of the service
    out, _err = proc.communicate(timeout=30)
    facts = [json.loads(line) for line in out.splitlines()]
    assert [f["state"] for f in facts if f["type"] == "engine_state"] == ["stopping", "stopped"]
    assert facts[-1]["type"] == "engine_state", facts[-3:]
    assert proc.returncode == 0
    assert len(ours) == 1 and not ours & set(_printers())


def test_a_reader_that_goes_away_ends_the_printer_and_the_engine_goes_on_to_its_end(tmp_path, inbox):
    recipe = write_recipe(tmp_path, ONE_OP, db=tmp_path / "s.db", inbox=inbox)
    for i in range(20):
        drop(inbox, f"f{i}.csv")
    proc = _run(recipe, "--stop-after", "20", "--idle-exit", "0.2")
    _wait_for_printer(proc)
    ours = _printers_of(proc.pid)
    assert proc.stdout is not None
    proc.stdout.close()  # `| head -1`: the reader is gone
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert not ours & set(_printers()), "no printer process is left behind"


def test_a_killed_engine_leaves_no_printer_behind(tmp_path, inbox):
    recipe = write_recipe(tmp_path, ONE_OP, db=tmp_path / "s.db", inbox=inbox)
    proc = _run(recipe)
    _wait_for_printer(proc)
    ours = _printers_of(proc.pid)
    assert len(ours) == 1
    proc.kill()
    proc.wait(30)
    deadline = time.monotonic() + 10
    while ours & set(_printers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ours & set(_printers()), "the printer ends with the pipe from its engine"


def test_batches_waiting_together_are_printed_in_order_whatever_each_carries_and_however_long():
    facts = _every_kind_of_fact()
    unpicklable = ev.OpFinished(3.2, 4, "abc", "load", "w1", 0.1, lambda: None)
    waiting = [batch_message(facts[:3]), batch_message([unpicklable]), batch_message(facts[3:10]),
               batch_message(facts[10:]), batch_message(facts[:1])]
    assert [type(m) for m in waiting] == [bytes, str, bytes, str, bytes]  # rows, or (a value they cannot carry) lines
    expected = "".join(map(_to_json_line, [*facts[:3], unpicklable, *facts[3:], facts[0]]))
    assert lines(waiting).decode() == expected
    assert lines(waiting[1:2]).decode() == _to_json_line(unpicklable)
    plain = [f for f in facts if not isinstance(getattr(f, "result", None), Path)] * 40  # rows of several chunks
    assert len(plain) > 2 * jsonrows.CHUNK and isinstance(batch_message(plain), bytes)
    assert lines([batch_message(plain)]).decode() == "".join(map(_to_json_line, plain))


FLOOD_THEN_ONE = """
import sys
from tinyo import events as ev
from tinyo.report import JsonReporter

report = JsonReporter()  # printing to this process's standard output: through the printer process
for b in range({batches}):
    report.many([ev.EventReceived(1.0, b * 50 + i, "f%d.csv" % (b * 50 + i), "file") for i in range(50)])
sys.stdin.readline()  # the reader has read the flood
report.many([ev.EventReceived(2.0, -1, "lone", "manual")])
sys.stdin.readline()  # the reader has read the lone fact: only now does the log end
report.close()
"""


def _line_reader(stream) -> queue.Queue[bytes]:
    """Lines of ``stream`` as they come, read on a thread (a test waits for each with a bound, never forever)."""
    lines_read: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        for line in iter(stream.readline, b""):
            lines_read.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines_read


def test_a_floods_lines_come_whole_and_in_order_and_a_lone_fact_after_it_at_once():
    batches = 200
    proc = subprocess.Popen([sys.executable, "-c", FLOOD_THEN_ONE.format(batches=batches)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    came = _line_reader(proc.stdout)
    try:
        ids = [json.loads(came.get(timeout=20))["event_id"] for _ in range(batches * 50)]
        assert ids == list(range(batches * 50))
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        # the log is still open and nothing else comes: the lone fact is printed without waiting for more
        assert json.loads(came.get(timeout=20))["name"] == "lone"
        proc.stdin.write(b"\n")
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        assert came.empty()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
