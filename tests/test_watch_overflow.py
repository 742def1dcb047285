"""A real inotify queue overflow: the kernel drops events while the watcher's loop is held, and the watcher
asks for a rescan only once its watches are whole again, so that the rescan and the watches between them
miss nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tinyo.watch_loop import FileWatcher


def watched_inodes() -> set[int]:
    """The inodes this process's inotify instances watch (from /proc/self/fdinfo)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            text = Path("/proc/self/fdinfo", fd).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("inotify wd:"):
                fields = dict(part.split(":", 1) for part in line.split()[1:])
                inodes.add(int(fields["ino"], 16))
    return inodes


def test_an_overflow_asks_for_a_rescan_once_a_folder_made_meanwhile_is_watched(tmp_path):
    """The loop thread is held (its hand-over blocks) while far more events than the kernel queues
    (fs.inotify.max_queued_events) happen, among them a new subfolder whose create is dropped. The rescan
    the watcher asks for must come once that folder is watched: a file written there after the rescan
    passed it would otherwise never be seen."""
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    inbox = tmp_path / "in"
    inbox.mkdir()
    held, release = threading.Event(), threading.Event()
    asked: list[bool] = []
    late = inbox / "late"

    def on_files(paths: list[str], seen: float) -> None:
        held.set()
        release.wait(30)

    def on_overflow() -> None:
        asked.append(os.stat(late).st_ino in watched_inodes())

    watcher = FileWatcher([str(inbox)], on_files, on_overflow, recursive=True, debounce=0.05)
    watcher.start()
    try:
        (inbox / "first.txt").write_text("x")
        assert held.wait(10), "the first file never reached the hand-over"
        for i in range(queued // 2 + 500):  # a create and a close each
            with open(inbox / f"f{i:05d}.txt", "w") as fh:
                fh.write("x")
        late.mkdir()
        release.set()
        deadline = time.monotonic() + 20
        while not asked and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a second request would show now
    finally:
        release.set()
        watcher.stop()
    assert asked, "the overflow never asked for a rescan"
    assert all(asked), "a rescan was asked for before the folder made during the overflow was watched"


def test_files_past_the_inbox_bound_ask_for_one_rescan_instead_of_growing_it(tmp_path, monkeypatch):
    """While the loop is held (by a slow hand-over), another thread hands it files (as a scan does with
    ``settle``, or watchdog's emitter with a folder moved in): past the inbox's bound they are not queued,
    and the engine is asked for a rescan once, until the loop takes the inbox in."""
    import tinyo.watch_loop as watch_loop

    monkeypatch.setattr(watch_loop, "INBOX_MAX", 10)
    inbox, other = tmp_path / "in", tmp_path / "other"
    inbox.mkdir()
    other.mkdir()
    held, release = threading.Event(), threading.Event()
    asked: list[float] = []
    got: set[str] = set()

    def on_files(paths: list[str], seen: float) -> None:
        got.update(paths)
        held.set()
        release.wait(30)

    watcher = FileWatcher([str(inbox)], on_files, lambda: asked.append(time.monotonic()), debounce=0.05)
    watcher.start()
    try:
        (inbox / "first.txt").write_text("x")
        assert held.wait(10), "the first file never reached the hand-over"
        for i in range(40):
            (other / f"f{i:02d}.txt").write_text("x")
            watcher.settle(str(other / f"f{i:02d}.txt"))
        assert len(asked) == 1, asked
        release.set()
        deadline = time.monotonic() + 10
        while len(got) < 11 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        watcher.settle(str(other / "f39.txt"))  # the inbox taken in: room again, and no second request
        deadline = time.monotonic() + 10
        while str(other / "f39.txt") not in got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        release.set()
        watcher.stop()
    assert sorted(got) == sorted([str(inbox / "first.txt"), *(str(other / f"f{i:02d}.txt") for i in range(10)),
                                  str(other / "f39.txt")])
    assert len(asked) == 1, asked
