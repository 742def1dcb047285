"""The watcher process under a burst: a real observer and a real watcher process, files written by another
process; each file reported once, complete, with its state read through one open; large files hashed on a
thread of their own without reordering a file's states."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from tinyo import _watch_main
from tinyo.pipe import Pipe
from tinyo.watch import WatcherProcess

WRITER = r"""
import os, sys
folder, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(folder, f"f{i:05d}.txt"), "w") as fh:
        fh.write(str(i))
with open(os.path.join(os.fsencode(folder), b"caf\xe9-latin1.txt"), "wb") as fh:
    fh.write(b"not utf-8")
"""


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def test_a_file_still_being_written_when_a_burst_arrives_is_reported_once_complete(inbox):
    """A writer holds a file open past ``debounce`` (its create is looked at while the burst is read: open
    for writing, so its close reports it) while another process writes 2,000 files and one whose name is
    not UTF-8: every file is reported once, the slow one with its whole content's size and hash."""
    got: queue.Queue = queue.Queue()
    watcher = WatcherProcess([str(inbox)], lambda files: [got.put(item) for item in files], lambda: None,
                             debounce=0.1)
    watcher.start()
    try:
        slow = inbox / "slow.txt"
        fh = open(slow, "wb")
        fh.write(b"first half, ")
        fh.flush()
        n = 2000
        subprocess.run([sys.executable, "-c", WRITER, str(inbox), str(n)], check=True)
        time.sleep(0.3)  # past debounce: the slow file's create was looked at meanwhile
        fh.write(b"second half")
        fh.close()
        reported: dict[str, list] = {}
        deadline = time.monotonic() + 30
        while len(reported) < n + 2 and time.monotonic() < deadline:
            try:
                path, state = got.get(timeout=1)
            except queue.Empty:
                continue
            reported.setdefault(path, []).append(state)
        time.sleep(0.5)  # a late duplicate would show now
        while not got.empty():
            path, state = got.get()
            reported.setdefault(path, []).append(state)
    finally:
        watcher.stop()
    odd = os.fsdecode(os.path.join(os.fsencode(str(inbox)), b"caf\xe9-latin1.txt"))
    want = {str(inbox / f"f{i:05d}.txt") for i in range(n)} | {str(slow), odd}
    assert set(reported) == want
    assert [p for p, states in reported.items() if len(states) != 1] == [], "reported more than once"
    (state,) = reported[str(slow)]
    assert (state.size, state.digest) == (23, blake(b"first half, second half"))
    assert reported[odd][0].digest == blake(b"not utf-8")
    assert reported[str(inbox / "f01234.txt")][0].digest == blake(b"1234")


def test_a_large_file_is_read_beside_the_loop_and_its_states_reach_the_engine_in_order(tmp_path, monkeypatch):
    """A file over LARGE bytes is read on a thread of its own: while it is being read, small files still go
    out, and a later state of the same file (rewritten small meanwhile) waits behind it instead of being
    read on the loop thread and overtaken by the older one."""
    big = tmp_path / "big.dat"
    big.write_bytes(b"b" * (_watch_main.LARGE + 1))
    small = tmp_path / "small.txt"
    small.write_bytes(b"s")
    hold = threading.Event()
    real = _watch_main.read_state

    def read_state(path, limit=None):
        if limit is None:  # the large files' thread: held until the test lets it go
            hold.wait(10)
        return real(path, limit)

    monkeypatch.setattr(_watch_main, "read_state", read_state)
    r, w = os.pipe()
    incoming, outgoing = Pipe(r), Pipe(w)
    sender = _watch_main._Sender(outgoing, use_hash=True)
    try:
        sender.files([str(big)], 1.0)
        big.write_bytes(b"now small")
        sender.files([str(big), str(small)], 2.0)
        assert incoming.poll(5)
        kind, items, seen = incoming.recv()
        assert (kind, [item[0] for item in items], seen) == ("files", [str(small)], 2.0), \
            "the small file waited for the large one, or the big file's later state went first"
        assert not incoming.poll(0.2)
        hold.set()
        states = [incoming.recv()[1][0] for _ in range(2)]
    finally:
        hold.set()
        incoming.close()
        outgoing.close()
    assert [s[0] for s in states] == [str(big), str(big)]
    assert (states[-1][2], states[-1][3]) == (9, blake(b"now small")), "an older state of the file came last"


def test_where_watchdog_lacks_the_reader_hooks_a_plain_observer_feeds_the_same_loop(tmp_path, inbox, monkeypatch,
                                                                                    request):
    """Another platform or version of watchdog: a plain observer's handler hands each file to the loop's
    inbox, and the loop, on a thread of its own, debounces and reports as before: a file closed after
    writing, one moved in from outside, a hard link (no close: reported once quiet), one renamed while its
    writer has it open (at its close), each once; a temp name never."""
    from watchdog.observers import Observer

    from tinyo import watch_loop

    monkeypatch.setattr(watch_loop, "file_observer", lambda run, moved, closed, created: (Observer(), None))
    # as in the watcher process: a lease broken by a writer must not kill it (else no lease is asked for)
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)
    request.addfinalizer(lambda: signal.signal(signal.SIGIO, previous))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "moved_in.txt").write_text("m")
    (outside / "linked.txt").write_text("l")
    got: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_files(paths: list[str], seen: float) -> None:
        with lock:
            got.extend((os.path.basename(p), threading.current_thread().name) for p in paths)

    watcher = watch_loop.FileWatcher([str(inbox)], on_files, lambda: None, debounce=0.1, ignore_names=["*.tmp"])
    watcher.start()
    try:
        for i in range(50):
            (inbox / f"f{i}.txt").write_text(str(i))
        (inbox / "part.tmp").write_text("t")
        os.rename(outside / "moved_in.txt", inbox / "moved_in.txt")
        os.link(outside / "linked.txt", inbox / "linked.txt")
        with open(inbox / "early.txt", "wb") as fh:  # renamed before its writer is done: its close reports it
            fh.write(b"first half, ")
            fh.flush()
            os.rename(inbox / "early.txt", inbox / "named.txt")
            time.sleep(0.3)  # past debounce: a report of the renamed file would come now
            with lock:
                early = [p for p, _ in got if p == "named.txt"]
            fh.write(b"second half")
        want = {f"f{i}.txt" for i in range(50)} | {"moved_in.txt", "linked.txt", "named.txt"}
        deadline = time.monotonic() + 10
        while {p for p, _ in got} < want and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a late duplicate would show now
    finally:
        watcher.stop()
    assert early == [], "a file renamed while its writer had it open was reported before its close"
    assert sorted(p for p, _ in got) == sorted(want)
    assert {t for _, t in got} == {"tinyo-watch"}


def test_a_loop_that_fails_says_why_and_counts_as_a_watcher_to_replace(inbox):
    """A bug in the loop (here: the hand-over raising) stops the loop thread; the watcher then says why and
    ``roots_changed()`` is true, so the watcher process ends with that reason and the engine starts
    another (which rescans)."""
    from tinyo.watch_loop import FileWatcher

    def on_files(paths: list[str], seen: float) -> None:
        raise RuntimeError("hand-over failed")

    watcher = FileWatcher([str(inbox)], on_files, lambda: None, debounce=0.1)
    watcher.start()
    try:
        assert not watcher.roots_changed()
        (inbox / "a.txt").write_text("a")
        deadline = time.monotonic() + 10
        while watcher.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.failure == "RuntimeError: hand-over failed"
        assert watcher.roots_changed()
    finally:
        watcher.stop()


def test_a_file_renamed_while_its_writer_still_has_it_open_is_reported_once_at_its_close(inbox):
    """A writer renames its file within the watched folder before it is done (a log rotated under a
    writer, a tool that names its output early): the rename alone does not make the file complete; its
    close does, once, with the whole content."""
    got: queue.Queue = queue.Queue()
    watcher = WatcherProcess([str(inbox)], lambda files: [got.put(item) for item in files], lambda: None,
                             debounce=0.05)
    watcher.start()
    try:
        with open(inbox / "early.txt", "wb") as fh:
            fh.write(b"first half, ")
            fh.flush()
            os.rename(inbox / "early.txt", inbox / "named.txt")
            time.sleep(0.5)  # well past debounce: a report of the renamed file would come now
            fh.write(b"second half")
        reported = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(p.endswith("named.txt") for p, _ in reported):
            try:
                reported.append(got.get(timeout=0.2))
            except queue.Empty:
                pass
        time.sleep(0.5)  # a late duplicate would show now
        while not got.empty():
            reported.append(got.get())
    finally:
        watcher.stop()
    named = [state for path, state in reported if path == str(inbox / "named.txt")]
    assert [(s.size, s.digest) for s in named] == [(23, blake(b"first half, second half"))], \
        "reported before its writer closed it, or more than once"
