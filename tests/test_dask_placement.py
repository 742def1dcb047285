"""Where the Dask executor pins runs: pure arithmetic, no cluster."""

from __future__ import annotations

from tinyo.executors.dask_placement import place


def test_runs_spread_to_the_least_loaded_worker_per_thread():
    workers = {"a": 1, "b": 2}
    load: dict[str, int] = {}
    assert place(3, workers, load, turn=0, sticky=1) == ["a", "b", "b"]
    assert load == {"a": 1, "b": 2}
    # the next run goes where a thread is least busy, ties to the worker whose turn it is
    assert place(2, workers, load, turn=1, sticky=1) == ["b", "a"]


def test_a_batch_of_fast_runs_stays_on_one_worker_while_it_has_room():
    workers = {"a": 1, "b": 1}
    load: dict[str, int] = {}
    assert place(5, workers, load, turn=0, sticky=4) == ["a", "a", "a", "a", "b"]


def test_no_usable_worker_leaves_runs_unpinned():
    load: dict[str, int] = {}
    assert place(2, {}, load, turn=3, sticky=1) == [None, None]
    assert load == {}
