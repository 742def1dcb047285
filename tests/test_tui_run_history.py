"""The console's run history (timeline bars, rates, durations) and the header's figures, without Textual."""

from __future__ import annotations

from tinyo import events as ev
from tinyo_tui import run_history as rh
from tinyo_tui.run_history import RunHistory, sparkline
from tinyo_tui.widgets.status_header import abbreviate, rate

T0 = 1_730_000_000.0


def started(run_id: int, worker: str, at: float, op: str = "load") -> ev.OpStarted:
    return ev.OpStarted(ts=T0 + at, run_id=run_id, des_id=f"d{run_id}", op=op, worker=worker, attempt=1,
                        targs=frozenset())


def finished(run_id: int, worker: str, at: float, took: float, op: str = "load") -> ev.OpFinished:
    return ev.OpFinished(ts=T0 + at, run_id=run_id, des_id=f"d{run_id}", op=op, worker=worker, duration=took)


def failed(run_id: int, worker: str, at: float, took: float, op: str = "load") -> ev.OpFailed:
    return ev.OpFailed(ts=T0 + at, run_id=run_id, des_id=f"d{run_id}", op=op, worker=worker, duration=took,
                       error="ValueError: x", traceback="")


def test_a_run_covers_the_cells_of_its_seconds() -> None:
    history = RunHistory()
    history.apply([started(1, "w1", 10), finished(1, "w1", 20, 10)])
    cells = history.cells("w1", T0 + 60, 60, 60)  # one cell a second
    busy = [index for index, cell in enumerate(cells) if cell.status is not None]
    assert busy == list(range(10, 20))
    assert all(cells[i].status == "ok" and cells[i].busy == 1.0 for i in busy)


def test_a_failed_run_is_marked_failed_and_wins_a_shared_cell() -> None:
    history = RunHistory()
    history.apply([started(1, "w1", 10), finished(1, "w1", 12.5, 2.5),
                   started(2, "w1", 12.5), failed(2, "w1", 14, 1.5)])
    cells = history.cells("w1", T0 + 60, 60, 30)  # two seconds a cell
    # cells 5 = [10, 12) ok; 6 = [12, 14) shared by both runs: failed; 7 = [14, 16) idle
    assert [c.status for c in cells[5:8]] == ["ok", "failed", None]
    assert history.runs[-1].status == "failed" and history.runs[-1].error == "ValueError: x"


def test_a_running_run_reaches_now() -> None:
    history = RunHistory()
    history.apply([started(1, "w2", 50)])
    cells = history.cells("w2", T0 + 60, 60, 60)
    assert [c.status for c in cells[50:]] == ["running"] * 10
    assert cells[49].status is None
    [record] = history.running()
    assert record.duration(T0 + 60) == 10


def test_a_run_ended_before_the_console_watched_is_rebuilt_from_its_duration() -> None:
    history = RunHistory()
    history.apply([finished(7, "w1", 30, 5.0)])
    [record] = history.runs
    assert (record.start, record.end, record.status) == (T0 + 25, T0 + 30, "ok")


def test_percentiles_per_op() -> None:
    history = RunHistory()
    batch: list[ev.BusEvent] = []
    for n in range(1, 101):
        batch += [started(n, "w1", n, op="transform"), finished(n, "w1", n + n / 100, n / 100, op="transform")]
    history.apply(batch)
    p50, p95, count = history.percentiles("transform") or (0, 0, 0)
    assert (round(p50, 2), round(p95, 2), count) == (0.5, 0.95, 100)
    assert history.percentiles("never_ran") is None


def test_memory_stays_bounded_under_a_flood_of_runs_workers_and_ops() -> None:
    """An hour of short runs on churning workers and op names keeps fixed-size buffers (the hour spans more
    seconds than the window keeps, the workers and op names more than it tracks)."""
    history = RunHistory()
    run_id = 0
    for second in range(0, 3600, 3):  # an hour, sampled: 300 runs every third second
        batch: list[ev.BusEvent] = []
        for k in range(300):
            run_id += 1
            worker, op = f"w{run_id % 97}", f"op{run_id % 311}"
            at = second + k / 300
            batch += [started(run_id, worker, at, op), finished(run_id, worker, at + 0.0004, 0.0004, op)]
        batch.append(ev.EventReceived(ts=T0 + second, event_id=second, name="x", source="file"))
        history.apply(batch)
    assert len(history.runs) == rh.MAX_RUNS
    assert len(history._activity) <= rh.MAX_WORKERS
    assert all(len(seconds) <= rh.MAX_WINDOW + rh.SLACK for seconds in history._activity.values())
    assert len(history._durations) <= rh.MAX_OPS
    assert all(len(kept) <= rh.MAX_DURATIONS for kept in history._durations.values())
    assert len(history.events.seconds) <= rh.MAX_WINDOW + rh.SLACK
    assert len(history.finished.seconds) <= rh.MAX_WINDOW + rh.SLACK
    assert not list(history.running())


def test_rates_count_whole_seconds_before_now() -> None:
    history = RunHistory()
    history.apply([ev.EventReceived(ts=T0 + s + 0.5, event_id=s, name="e", source="file")
                   for s in (1, 2, 2, 3, 3, 3, 4)])
    # the seconds T0-1 .. T0+3; second T0+4 is not over yet
    assert history.events.series(T0 + 4.2, 5) == [0, 0, 1, 2, 3]


def test_sparkline_scales_to_the_largest_value() -> None:
    assert sparkline([0, 1, 2, 4, 8]) == "▁▂▃▅█"
    assert sparkline([0, 1, 1000]) == "▁▂█"  # anything above zero shows above the floor
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""


def test_counts_and_rates_abbreviate_to_a_few_cells() -> None:
    assert [abbreviate(n) for n in (0, 999, 1000, 9949, 9950, 12_345, 999_499, 999_500, 1_234_567,
                                    45_000_000, 1_200_000_000)] == [
        "0", "999", "1.0k", "9.9k", "10k", "12k", "999k", "1.0M", "1.2M", "45M", "1.2G"]
    assert [rate(x) for x in (0, 0.04, 0.4, 12.4, 2_345.0)] == ["0", "0.0", "0.4", "12", "2.3k"]


def test_kept_runs_draw_exactly_in_cells_finer_than_a_second() -> None:
    history = RunHistory()
    history.apply([started(1, "w1", 10.0), failed(1, "w1", 10.2, 0.2)])
    cells = history.cells("w1", T0 + 30, 30, 60)  # half a second a cell
    assert [index for index, cell in enumerate(cells) if cell.status is not None] == [20]
    assert round(cells[20].busy, 2) == 0.4


def test_runs_no_longer_kept_as_records_still_draw_from_their_seconds() -> None:
    history = RunHistory(max_runs=3)
    batch: list[ev.BusEvent] = [started(1, "w1", 10), failed(1, "w1", 14, 4)]
    for n in range(2, 6):
        batch += [started(n, "w1", 20 + n), finished(n, "w1", 20.5 + n, 0.5)]
    history.apply(batch)
    assert history.find(1) is None
    cells = history.cells("w1", T0 + 60, 60, 60)
    assert [index for index, cell in enumerate(cells) if cell.status == "failed"] == [10, 11, 12, 13]
    # run 2 (22 s) is dropped too and drawn from its second; runs 3-5 from their records
    assert [index for index, cell in enumerate(cells) if cell.status == "ok"] == [22, 23, 24, 25]
