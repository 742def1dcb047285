"""Timer grid, event naming and catch-up policies (pure, with explicit times)."""

from datetime import datetime, timedelta

from tinyo.intake import TimerSchedule, first_tick_at_or_after, timer_event
from tinyo.model import TimerSpec

SPEC = TimerSpec("ten_seconds", datetime(2024, 10, 27), timedelta(seconds=10))


def test_event_name_uses_the_tick_timestamp():
    tick = datetime(2024, 10, 27, 0, 0, 10)
    assert timer_event("ten_seconds", tick) == f"ten_seconds_{tick.timestamp()}"
    assert timer_event("ten_seconds", tick).endswith(".0")


def test_first_tick_is_the_first_grid_point_at_or_after_start():
    assert first_tick_at_or_after(SPEC, datetime(2024, 10, 27, 0, 0, 3)) == datetime(2024, 10, 27, 0, 0, 10)
    assert first_tick_at_or_after(SPEC, datetime(2024, 10, 27, 0, 0, 10)) == datetime(2024, 10, 27, 0, 0, 10)
    assert first_tick_at_or_after(SPEC, datetime(2020, 1, 1)) == SPEC.initial


def test_due_fires_each_grid_point_once_and_skips_a_stall():
    sched = TimerSchedule([SPEC])
    sched.start(datetime(2024, 10, 27, 0, 0, 1), {}, "skip", 100)
    assert sched.due(datetime(2024, 10, 27, 0, 0, 9)) == []
    assert sched.due(datetime(2024, 10, 27, 0, 0, 10)) == [("ten_seconds", datetime(2024, 10, 27, 0, 0, 10))]
    assert sched.due(datetime(2024, 10, 27, 0, 0, 15)) == []
    # a stalled loop does not flood: only the latest grid point fires
    assert sched.due(datetime(2024, 10, 27, 0, 1, 5)) == [("ten_seconds", datetime(2024, 10, 27, 0, 1, 0))]
    assert sched.next_due() == datetime(2024, 10, 27, 0, 1, 10)


def test_catch_up_policies():
    last = datetime(2024, 10, 27, 0, 0, 30).timestamp()
    now = datetime(2024, 10, 27, 0, 1, 5)
    assert TimerSchedule([SPEC]).start(now, {"ten_seconds": last}, "skip", 100) == []
    assert TimerSchedule([SPEC]).start(now, {"ten_seconds": last}, "latest", 100) == [
        ("ten_seconds", datetime(2024, 10, 27, 0, 1, 0))]
    ticks = TimerSchedule([SPEC]).start(now, {"ten_seconds": last}, "all", 100)
    assert [t.second for _, t in ticks] == [40, 50, 0]
    bounded = TimerSchedule([SPEC]).start(now, {"ten_seconds": last}, "all", 2)
    assert [t.second for _, t in bounded] == [50, 0]
    # never fired before: nothing to catch up
    assert TimerSchedule([SPEC]).start(now, {}, "all", 100) == []
