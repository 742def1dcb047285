"""The loop's wake-up: an Event whose waiting thread also reads the pipes it watches (real threads, pipes)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tinyo.waker import Waker


@pytest.fixture
def waker():
    made = Waker()
    yield made
    made.close()


@pytest.fixture
def pipe():
    """A real pipe (read end, write end), closed after the test."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        os.close(fd)


def test_a_set_from_another_thread_ends_a_wait_without_a_time_limit(waker):
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waker.wait()))
    thread.start()
    waker.set()
    thread.join(10)
    assert result == [True] and not thread.is_alive()


def test_set_before_the_wait_returns_at_once_and_clear_lets_it_time_out(waker):
    waker.set()
    assert waker.is_set() and waker.wait(None) is True
    waker.clear()
    assert waker.wait(0.01) is False


def test_a_watched_pipe_is_read_on_the_waiting_thread_and_its_reader_sets_the_flag(waker, pipe):
    r, w = pipe
    read: list[tuple[bytes, str]] = []

    def on_ready() -> None:
        read.append((os.read(r, 100), threading.current_thread().name))
        waker.set()

    waker.watch(r, on_ready)
    waker.clear()  # watch wakes a wait under way; none is
    os.write(w, b"report")
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waker.wait()), name="the-loop")
    thread.start()
    thread.join(10)
    assert result == [True] and read == [(b"report", "the-loop")]
    waker.unwatch(r)
    waker.clear()
    os.write(w, b"more")
    assert waker.wait(0.01) is False and len(read) == 1  # no longer read


def test_a_set_flag_still_reads_the_watched_pipes_that_are_ready(waker, pipe):
    # a loop that always has more to do (its flag set at every wait) must still take reports in
    r, w = pipe
    read: list[bytes] = []
    waker.watch(r, lambda: read.append(os.read(r, 100)))
    os.write(w, b"done")
    waker.set()
    assert waker.wait() is True and read == [b"done"]
    assert waker.wait() is True and read == [b"done"]  # nothing more there: nothing read, no wait either


def test_a_pipe_watched_from_another_thread_joins_a_wait_under_way(waker, pipe):
    r, w = pipe
    read: list[bytes] = []
    started = threading.Event()

    def loop() -> None:
        started.set()
        while not read:
            waker.wait()
            waker.clear()

    thread = threading.Thread(target=loop)
    thread.start()
    started.wait()
    waker.watch(r, lambda: read.append(os.read(r, 100)))
    os.write(w, b"x")
    thread.join(10)
    assert read == [b"x"] and not thread.is_alive()


def test_a_set_after_close_writes_nowhere():
    waker = Waker()
    waker.close()
    waker.set()  # e.g. a watcher thread reporting after the engine stopped
    assert waker.is_set()


@pytest.fixture
def two_pipes(pipe):
    """Two real pipes: ``pipe``'s and another, closed after the test."""
    r, w = os.pipe()
    yield pipe, (r, w)
    for fd in (r, w):
        os.close(fd)


def test_a_report_that_alone_wakes_the_wait_lingers_for_the_one_due_and_one_wait_reads_both(waker, two_pipes):
    # two workers' reports of one batch: the loop runs one cycle (one commit) for both, not one each
    (r1, w1), (r2, w2) = two_pipes
    read: list[bytes] = []
    due_asked = threading.Event()

    def first() -> None:
        read.append(os.read(r1, 100))
        waker.set()  # as the loop's sink does on its own thread

    def due() -> tuple[list[int], float]:
        due_asked.set()
        return [r2], 30.0  # far longer than the test waits: the second report ends it

    waker.watch(r1, first)
    waker.watch(r2, lambda: read.append(os.read(r2, 100)))
    waker.linger = due
    waker.clear()
    threading.Thread(target=lambda: (due_asked.wait(10), os.write(w2, b"second"))).start()
    os.write(w1, b"first")
    assert waker.wait() is True and read == [b"first", b"second"]


def test_a_set_from_another_thread_ends_a_linger_and_what_was_due_is_read_by_the_next_wait(waker, two_pipes):
    (r1, w1), (r2, w2) = two_pipes
    read: list[bytes] = []
    due_asked = threading.Event()

    def due() -> tuple[list[int], float]:
        due_asked.set()
        return [r2], 30.0

    waker.watch(r1, lambda: read.append(os.read(r1, 100)))
    waker.watch(r2, lambda: read.append(os.read(r2, 100)))
    waker.linger = due

    def command() -> None:  # a command, say, once the linger waits (its 30 s due would fail the time below)
        due_asked.wait(10)
        deadline = time.monotonic() + 10
        while not waker._sleeping and time.monotonic() < deadline:
            time.sleep(0.001)
        waker.set()

    waker.clear()
    threading.Thread(target=command, daemon=True).start()
    os.write(w1, b"first")
    start = time.monotonic()
    assert waker.wait() is True and read == [b"first"]
    assert time.monotonic() - start < 15  # ended by the set, not by the due
    os.write(w2, b"second")
    assert waker.wait() is True and read == [b"first", b"second"]


def test_no_linger_when_the_loop_has_more_to_do_or_nothing_is_due(waker, two_pipes):
    (r1, w1), (r2, _) = two_pipes
    read: list[bytes] = []
    asked: list[bool] = []
    waker.watch(r1, lambda: read.append(os.read(r1, 100)))
    waker.linger = lambda: (asked.append(True), ([r2], 30.0))[1]
    waker.set()  # set before the wait: the loop goes on at once, whatever is due
    os.write(w1, b"a")
    assert waker.wait() is True and read == [b"a"] and asked == []
    waker.clear()
    waker.linger = lambda: (asked.append(True), ([], 0.0))[1]  # e.g. a chain's link: no other worker holds ops
    os.write(w1, b"b")
    assert waker.wait() is False and read == [b"a", b"b"] and asked == [True]


def test_a_linger_ends_with_the_callers_timeout(waker, two_pipes):
    """Something is due when the caller's timeout ends (a timer, a retry): the linger lasts no longer."""
    (r1, w1), (r2, _) = two_pipes
    read: list[bytes] = []
    waker.watch(r1, lambda: read.append(os.read(r1, 100)))
    waker.watch(r2, lambda: read.append(os.read(r2, 100)))
    waker.linger = lambda: ([r2], 30.0)
    waker.clear()
    os.write(w1, b"a")
    start = time.monotonic()
    assert waker.wait(0.05) is False and read == [b"a"]
    assert time.monotonic() - start < 15  # not the 30 s the linger asked for
    os.write(w1, b"b")
    start = time.monotonic()
    assert waker.wait(0) is False and read == [b"a", b"b"]  # due now: no linger at all
    assert time.monotonic() - start < 15
