"""File states: the content hash read with the size a stat just gave is the hash of the whole file."""

import hashlib
import os

import pytest

from tinyo import filedigest, intake
from tinyo.intake import compare_file, digest_file


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 2, 4095, 4096, 70_000])
@pytest.mark.parametrize("hint", ["exact", "none", "smaller", "larger"])
def test_the_digest_is_of_the_whole_file_whatever_size_it_is_told(tmp_path, monkeypatch, size, hint):
    monkeypatch.setattr(filedigest, "READ_CHUNK", 4096)  # several reads for the larger files (read there)
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    told = {"exact": size, "none": None, "smaller": max(0, size - 3), "larger": size + 5}[hint]
    # "smaller": the file grew after the stat; "larger": it shrank: either way, all of it is read
    assert digest_file(str(path), told) == blake(data)


def test_an_unreadable_or_missing_file_has_no_digest(tmp_path):
    assert digest_file(str(tmp_path / "missing")) is None
    assert digest_file(str(tmp_path)) is None  # a folder cannot be read as a file


def test_compare_file_reads_the_hash_only_when_mtime_or_size_moved(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one")
    changed, first = compare_file(str(path), None, True)
    assert changed and first.digest == blake(b"one") and first.size == 3
    assert compare_file(str(path), first, True) == (False, first)  # same mtime and size: not read
    os.utime(path, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))  # touched, same content
    changed, touched = compare_file(str(path), first, True)
    assert not changed and touched.digest == first.digest and touched.mtime_ns != first.mtime_ns
    path.write_text("two!")
    changed, second = compare_file(str(path), touched, True)
    assert changed and second.digest == blake(b"two!")


def test_events_waiting_in_the_store_are_not_read_again_when_their_turn_comes(tmp_path, inbox, harness, monkeypatch):
    """Past the in-memory backlog, file events wait in the store only; when they are taken back, the state
    the watcher read at intake comes with them, as it does for the events that stayed in memory: the engine
    neither stats nor hashes those files again, and each file is still processed once, whole."""
    from conftest import drop, write_recipe
    from tinyo.core import inflow as engine_mod

    monkeypatch.setattr(engine_mod, "BACKLOG_MAX", 4)
    reads: list[str] = []
    real_digest, real_stat = intake.digest_file, intake.stat_file
    monkeypatch.setattr(intake, "digest_file", lambda path, size=None: reads.append(path) or real_digest(path, size))
    monkeypatch.setattr(intake, "stat_file", lambda path: reads.append(path) or real_stat(path))
    recipe = write_recipe(tmp_path, """
def load(context):
    (src,) = context['deps']
    print('load', os.path.basename(src), open(src).read())

@meta_task(root=True)
def gen(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['loaded.' + os.path.basename(event)]),
                           ops=[(load, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, execution=Execution.THREADS, maxevents=3)
""", db=tmp_path / "s.db", inbox=inbox)
    with harness(recipe) as h:
        h.engine.pause()
        h.wait_for(lambda: h.engine.paused, what="paused")
        for i in range(12):
            drop(inbox, f"f{i:02d}.csv", f"v{i}")
        h.wait_for(lambda: h.engine.events_taken >= 12, what="12 events stored")
        assert h.engine.call(lambda: h.engine.loop.inflow.backlog_in_store), "events wait in the store only"
        reads.clear()
        h.engine.resume()
        h.wait_for(lambda: len(h.lines()) >= 12, what="12 loads")
        h.wait_idle()
    assert sorted(h.lines()) == [f"load f{i:02d}.csv v{i}" for i in range(12)]
    assert reads == [], f"files read again by the engine: {reads}"
