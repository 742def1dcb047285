"""An attached console whose facts were lost on the way asks the engine again, and one whose engine died
does not go on showing its ops running."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from test_tui_attach import end_engine, recipe, tinyo  # noqa: F401 - `recipe` is a fixture
from test_tui_pilot import started, sync, until
from tinyo.control.client import ControlClient
from tinyo.control.handle import RemoteEngine
from tinyo.control.server import ControlServer
from tinyo.engine import Engine
from tinyo.recipe import load_recipe
from tinyo_tui.app import TinyoApp, build_app

FLOOD = 800
"""Events injected while the console does not read: several hundred KB of facts, past what can wait for it
(the outbox and the socket's buffers)."""


@pytest.fixture(autouse=True)
def _no_xdg(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def _mismatch(app: TinyoApp, engine: Engine) -> str:
    """How what the console shows differs from what the engine says ("" when it does not): group counts,
    cached documents, workers, the header's counters."""
    state = app.state
    groups = {g.pattern: (g.count, g.states) for g in engine.groups_summary()}
    shown = {p: (g.count, g.states) for p, g in state.groups.items()}
    if shown != groups:
        return f"groups {shown} != {groups}"
    docs = {info.name: info.state for info in engine.doc_infos(list(state.docs))}
    wrong = {name: (state.docs[name].state, want) for name, want in docs.items() if state.docs[name].state != want}
    if wrong:
        return f"documents (shown, engine): {dict(list(wrong.items())[:5])}"
    stats = engine.stats()
    busy = {w.name for w in engine.workers() if w.state == "busy"}
    shown_busy = {name for name, row in state.workers.items() if row.state == "busy"}
    if shown_busy != busy:
        return f"busy workers {shown_busy} != {busy}"
    if (state.running, state.queued) != (stats.running, stats.queued):
        return f"running, queued {(state.running, state.queued)} != {(stats.running, stats.queued)}"
    return ""


async def _until_match(pilot, app: TinyoApp, engine: Engine) -> None:
    try:
        await until(pilot, lambda: not _mismatch(app, engine), what="the panes to match the engine")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {_mismatch(app, engine)}") from None


@sync
@pytest.mark.parametrize("outbox_kb", [256, 64])
async def test_a_console_that_read_too_slowly_is_told_what_it_missed_and_asks_the_engine_again(
        recipe: Path, tmp_path: Path, outbox_kb: int) -> None:
    engine = Engine.from_path(recipe)
    # 256 KB, bigger than what the socket takes: the writer stalls with the socket full before it overflows, so
    # the flood makes one gap; 64 KB can overflow, drain into the socket and overflow again: two gaps or more
    server = ControlServer(engine, outbox_bytes=outbox_kb << 10).start()
    engine.start()
    remote = RemoteEngine(load_recipe(recipe), tmp_path / "state.db")
    reading = threading.Event()
    reading.set()
    remote.bus.subscribe(lambda _fact: reading.wait(60))  # while clear, the console's socket is not read
    app = build_app(remote, theme="dark")
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            engine.inject("echo_first")
            await until(pilot, lambda: getattr(app.state.docs.get("done.echo_first"), "state", "") == "up to date",
                        what="the first document built")
            reading.clear()
            for n in range(FLOOD * 3):
                engine.inject(f"echo_n{n}")
            with ControlClient.connect(tmp_path / "state.db", "test") as look:
                await until(pilot, lambda: look.query("stats")["events_total"] == FLOOD * 3 + 1 and engine.is_idle(),
                            timeout=60, what="the flood handled")
                assert any(c["missed"] for c in look.query("clients")), "the console's outbox did not overflow"
                for n in range(20):  # these come wholly in the gap: nothing of them reaches the console
                    engine.inject(f"echo_late{n}")
                await until(pilot, lambda: look.query("stats")["events_total"] == FLOOD * 3 + 21 and engine.is_idle(),
                            what="the late events handled")
            assert _mismatch(app, engine)  # the console is behind ...
            reading.set()
            await until(pilot, lambda: any("facts were missed" in row.line for row in app.state.output),
                        what="the console to say it missed facts")
            await _until_match(pilot, app, engine)
            lines = [row.line for row in app.state.output if "facts were missed" in row.line]
            assert lines and all("asked of the engine again" in line for line in lines)  # a note per gap (the writer
            # may take a part of the outbox before the socket is full: a first short gap, then the long one)
            assert app.state.groups["done.echo_n*"].count == FLOOD * 3 and app.state.groups["done.echo_late*"].count == 20
            # the events of the gap are in the stream too, in event order
            ids = [row.event_id for row in app.state.events if row.event_id is not None]
            assert ids == sorted(ids) and len(ids) == len(set(ids))
            assert {f"echo_late{n}" for n in range(20)} <= {row.name for row in app.state.events}
            await pilot.press("q")
            await pilot.pause(0.3)
    finally:
        reading.set()
        remote.stop()
        server.close()
        engine.stop(timeout=5)


@sync
async def test_after_a_resync_the_output_pane_has_the_lines_printed_in_the_gap_once_each(
        recipe: Path, tmp_path: Path) -> None:
    engine = Engine.from_path(recipe)
    server = ControlServer(engine, outbox_bytes=64 << 10).start()
    engine.start()
    remote = RemoteEngine(load_recipe(recipe), tmp_path / "state.db")
    reading = threading.Event()
    reading.set()
    remote.bus.subscribe(lambda _fact: reading.wait(60))  # while clear, the console's socket is not read
    app = build_app(remote, theme="dark")

    def printed() -> list[str]:
        return [row.line for row in app.state.output if row.kind == "stdout"]

    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            engine.inject("echo_first")
            await until(pilot, lambda: printed() == ["echo first"], what="the first line shown")
            reading.clear()
            for n in range(FLOOD):  # each op prints one line while the console reads nothing
                engine.inject(f"echo_n{n}")
            with ControlClient.connect(tmp_path / "state.db", "test") as look:
                await until(pilot, lambda: look.query("stats")["events_total"] == FLOOD + 1 and engine.is_idle(),
                            timeout=60, what="the flood handled")
                assert any(c["missed"] for c in look.query("clients")), "the console's outbox did not overflow"
                for n in range(20):  # wholly in the gap
                    engine.inject(f"echo_late{n}")
                await until(pilot, lambda: look.query("stats")["events_total"] == FLOOD + 21 and engine.is_idle(),
                            what="the late events handled")
            shown_before = len(printed())
            reading.set()
            for n in range(30):  # lines printed while the console asks again: both as facts and in its answer
                engine.inject(f"echo_more{n}")
            await until(pilot, lambda: any("facts were missed" in row.line for row in app.state.output),
                        what="the console to say it missed facts")
            await until(pilot, lambda: engine.stats().events_total == FLOOD + 51 and engine.is_idle(),
                        what="the last events handled")
            expected = [e.line for e in engine.recent_output(1000)]  # every line this engine printed
            assert len(expected) == FLOOD + 51 and shown_before < FLOOD + 21
            await until(pilot, lambda: printed() == expected, what="the output pane to show every line once")
            numbers = [row.line_no for row in app.state.output if row.kind == "stdout"]
            assert numbers == sorted(set(numbers))  # in the order printed, none twice
            engine.inject("echo_after")  # the live lines go on after the gap's
            await until(pilot, lambda: printed() == [*expected, "echo after"], what="a live line after them")
            await pilot.press("q")
            await pilot.pause(0.3)
    finally:
        reading.set()
        remote.stop()
        server.close()
        engine.stop(timeout=5)


@pytest.fixture
def service(recipe: Path):
    result = tinyo("start", str(recipe))
    assert result.returncode == 0, result.stderr
    pids = [int(result.stdout.split("(pid ")[1].split(")")[0])]
    yield pids
    for pid in pids:
        end_engine(recipe, pid)


@sync
async def test_the_ops_of_a_killed_engine_show_interrupted_then_what_the_restarted_engine_says(
        recipe: Path, tmp_path: Path, service: list[int]) -> None:
    from tinyo_tui.cli import _attach

    _, remote = _attach(recipe, None, False, False)
    app = build_app(remote, theme="dark")
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await started(pilot, app)
            await pilot.press("i", *"slow_op", "enter")
            await until(pilot, lambda: app.state.running == 1, what="the slow op running")
            run_id = next(row.run_id for row in app.state.workers.values() if row.state == "busy")
            des_id = app.state.runs.get(run_id).des_id
            os.killpg(service[0], signal.SIGKILL)  # no goodbye: the socket just ends
            await until(pilot, lambda: app.state.engine_state == "stopped", what="the console to see it gone")
            assert app.state.running == 0
            assert not [row for row in app.state.workers.values() if row.state == "busy"]
            assert app.state.runs.get(run_id).status == "interrupted"
            assert not list(app.state.history.running())  # the run timeline no longer draws it running
            assert app.state.docs["done.slow_op"].state == "interrupted"
            result = tinyo("start", str(recipe))
            assert result.returncode == 0, result.stderr
            service.append(int(result.stdout.split("(pid ")[1].split(")")[0]))
            await until(pilot, lambda: app.attached_to == service[1], timeout=30, what="the console to re-attach")
            with ControlClient.connect(tmp_path / "state.db", "test") as look:
                runs = {r["run_id"]: r for r in look.query("des_details", des_id=des_id)["runs"]}

                def as_the_engine_says() -> bool:
                    workers = {w["name"]: w["state"] for w in look.query("workers")}
                    stats = look.query("stats")
                    return ({n: w.state for n, w in app.state.workers.items() if n in workers} == workers
                            and app.state.running == stats["running"]
                            and app.state.runs.get(run_id).status == runs[run_id]["status"]
                            and not app.state.unsure_runs)

                await until(pilot, as_the_engine_says, timeout=20, what="the console to show what the engine says")
            await pilot.press("q")
            await pilot.pause(0.3)
    finally:
        remote.stop()


def _missed(look: ControlClient) -> int:
    (mine,) = [c for c in look.query("clients") if c["name"] == "tinyo attach (facts)"]
    return mine["missed"]


def test_an_attached_console_that_does_not_fold_facts_in_stops_reading_and_the_engine_counts_what_it_missed(
        recipe: Path, tmp_path: Path) -> None:
    """The console's buffer stays bounded without dropping anything itself: past ``ROOM`` facts its reader
    waits, the engine's outbox for it overflows (counted there), and once the console takes the facts the
    reader goes on and the bus says where facts were missed."""
    from tinyo import events as ev
    from tinyo_tui.bridge import ROOM, Bridge

    engine = Engine.from_path(recipe)
    server = ControlServer(engine, outbox_bytes=64 << 10).start()
    engine.start()
    remote = RemoteEngine(load_recipe(recipe), tmp_path / "state.db")
    bridge = Bridge()
    bridge.attach(remote.bus)
    remote.pace = bridge.wait_for_room
    remote.start()
    try:
        with ControlClient.connect(tmp_path / "state.db", "look") as look:
            for n in range(FLOOD * 4):  # 7-11 facts each: far past ROOM, the socket's buffers and the outbox
                engine.inject(f"echo_n{n}")
            deadline = time.monotonic() + 120
            while not (look.query("stats")["events_total"] == FLOOD * 4 and engine.is_idle()):
                assert time.monotonic() < deadline, "the flood was not handled"
                time.sleep(0.1)
            missed_then = _missed(look)
            assert missed_then > 0  # the engine counted what it could not send ...
            assert bridge.dropped_facts == 0  # ... the console dropped nothing itself ...
            assert bridge.received < ROOM * 3 // 2  # ... and holds a bounded backlog (its reader waited)
            told, missed = 0, missed_then
            # the UI takes the facts: the reader goes on, and is told of each gap. The engine may still count
            # a few more missed (facts it tells after the flood, while the outbox is full): each is told too
            while told < missed or told != (missed := _missed(look)):
                assert time.monotonic() < deadline, f"told of {told} missed facts, not {missed}"
                told += sum(e.count for e in bridge.drain() if isinstance(e, ev.FactsMissed))
                time.sleep(0.02)
            assert told == missed >= missed_then
    finally:
        remote.stop()
        server.close()
        engine.stop(timeout=5)


def test_a_document_first_heard_of_after_a_gap_shows_what_its_build_says(recipe: Path, tmp_path: Path) -> None:
    """A gap can end between a DES's registration and the end of its run: the console first hears of the
    document it made from the run's facts held after the gap, which the engine's answers did not cover (the
    console asked about what it held). The facts on the wire, the answers and the console's state are the
    real ones; only where the gap falls is chosen, at each place from the registration to the new version."""
    from tinyo import events as ev
    from tinyo.control.protocol import Facts, Live
    from tinyo_tui.resync import apply, read, wanted
    from tinyo_tui.state import ConsoleState

    engine = Engine.from_path(recipe)
    server = ControlServer(engine).start()
    engine.start()
    remote = RemoteEngine(load_recipe(recipe), tmp_path / "state.db")
    try:
        with ControlClient.connect(tmp_path / "state.db", "raw") as raw:
            stream = raw.subscribe_batches(history=False)
            assert isinstance(next(stream), Live)
            engine.inject("echo_gap")
            facts: list[ev.BusEvent] = []
            while not any(type(f) is ev.OpFinished and "done.echo_gap" in f.made for f in facts):
                message = next(stream)
                if isinstance(message, Facts):
                    facts.extend(message.facts)
        first = next(i for i, f in enumerate(facts) if type(f) is ev.DESRegistered and "done.echo_gap" in f.targs)
        # the run's end, which tells the new version
        made = next(i for i, f in enumerate(facts) if type(f) is ev.OpFinished and "done.echo_gap" in f.made)
        for end in range(first + 1, made + 1):  # the gap is facts[first:end]
            state = ConsoleState()
            state.apply(facts[:first])
            apply(state, read(remote, wanted(state)), time.time())
            state.apply(facts[end:])  # held until the answers were in
            shown = state.docs["done.echo_gap"].state
            assert shown == "up to date", f"a gap of {[type(f).__name__ for f in facts[first:end]]}: {shown}"
        assert engine.doc_infos(["done.echo_gap"])[0].state == "up to date"
    finally:
        remote.stop()
        server.close()
        engine.stop(timeout=5)


def test_a_subscriber_that_stops_reading_gets_every_fact_numbered_or_counted_in_its_place(
        recipe: Path, tmp_path: Path) -> None:
    """End to end on the socket, for a raw subscriber that stops reading through a flood and then reads on: each
    line of facts starts where the last ended, plus the facts a "missed" line said were lost in between (the
    hub's sends and its writer's keep their order, and a gap is told where it is, with its whole count)."""
    from tinyo import events as ev
    from tinyo.control.protocol import Facts, Live, Missed

    engine = Engine.from_path(recipe)
    server = ControlServer(engine, outbox_bytes=64 << 10).start()
    engine.start()
    try:
        with ControlClient.connect(tmp_path / "state.db", "raw") as raw, \
                ControlClient.connect(tmp_path / "state.db", "look") as look:
            stream = raw.subscribe_batches(history=False)
            assert isinstance(next(stream), Live)
            engine.inject("echo_first")
            got: list[Facts | Missed] = []
            while not any(isinstance(m, Facts) and any(type(f) is ev.OpFinished for f in m.facts) for m in got):
                got.append(next(stream))  # reading: the lines go straight from the hub
            for n in range(FLOOD):  # not reading
                engine.inject(f"echo_n{n}")
            deadline = time.monotonic() + 120
            while not (look.query("stats")["events_total"] == FLOOD + 1 and engine.is_idle()):
                assert time.monotonic() < deadline, "the flood was not handled"
                time.sleep(0.05)
            (mine,) = [c for c in look.query("clients") if c["name"] == "raw"]
            assert mine["missed"] > 0
            engine.inject("echo_last")
            while not any(isinstance(m, Facts) and any(type(f) is ev.EventReceived and f.name == "echo_last"
                                                       for f in m.facts) for m in got[-3:]):
                got.append(next(stream))
        expected, missed = got[0].seq - len(got[0].facts) + 1, 0
        for message in got:
            if isinstance(message, Missed):
                missed += message.count
                expected += message.count
                continue
            assert message.seq - len(message.facts) + 1 == expected, f"facts {message.seq} after {got.index(message)}"
            expected = message.seq + 1
        assert missed >= mine["missed"] > 0  # every fact lost was told, where it was lost
        names = [f.name for m in got if isinstance(m, Facts) for f in m.facts if type(f) is ev.EventReceived]
        assert names[0] == "echo_first" and names[-1] == "echo_last" and names == sorted(set(names), key=names.index)
    finally:
        server.close()
        engine.stop(timeout=5)
