"""The loop's wake-up: an Event whose waiting thread also reads the pipes it watches (real threads, pipes)."""

from __future__ import annotations

import os
import threading

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
