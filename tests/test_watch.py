"""File intake with a real watchdog observer: complete files only, bursts coalesced, overflow rescued."""

import logging
import os
import time

from tinyo import events as ev

from conftest import write_recipe

RECIPE = """
def note(context):
    (src,) = context['deps']
    print(os.path.basename(src), open(src).read())

@meta_task(root=True)
def gen(event):
    if os.path.isabs(event):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['seen.' + event]), ops=[(note, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, debounce={debounce}, recursive={recursive})
"""


def recipe_for(tmp_path, inbox, recursive=False, debounce=0.3):
    return write_recipe(tmp_path, RECIPE, db=tmp_path / "w.db", inbox=inbox, recursive=recursive, debounce=debounce)


def test_a_file_written_slowly_is_one_event_after_close(tmp_path, inbox, harness):
    with harness(recipe_for(tmp_path, inbox)) as h:
        with open(inbox / "slow.txt", "w") as fh:
            for part in ("a", "b", "c", "d"):
                fh.write(part)
                fh.flush()
                time.sleep(0.15)
        h.wait_idle()
    assert h.lines() == ["slow.txt abcd"], "processed before it was complete, or more than once"
    assert len(h.of(ev.EventReceived)) == 1


def test_burst_of_rewrites_coalesces_and_identical_rewrite_is_ignored(tmp_path, inbox, harness):
    with harness(recipe_for(tmp_path, inbox)) as h:
        for i in range(30):
            (inbox / "hot.txt").write_text(f"v{i}")
        h.wait_idle()
        first_round = len(h.of(ev.EventReceived))
        assert 1 <= first_round <= 30
        assert h.lines()[-1] == "hot.txt v29"
        (inbox / "hot.txt").write_text("v29")  # same content again
        os.utime(inbox / "hot.txt")
        h.wait_idle()
        assert len(h.of(ev.EventReceived)) == first_round


def test_moved_in_files_and_subfolders(tmp_path, inbox, harness):
    outside = tmp_path / "staging.txt"
    outside.write_text("moved")
    (inbox / "sub").mkdir()
    with harness(recipe_for(tmp_path, inbox, recursive=True)) as h:
        os.rename(outside, inbox / "moved.txt")
        (inbox / "sub" / "deep.txt").write_text("deep")
        h.wait_idle()
    assert sorted(h.lines()) == ["deep.txt deep", "moved.txt moved"]


def test_overflow_triggers_a_rescan_that_finds_missed_files(tmp_path, inbox, harness):
    with harness(recipe_for(tmp_path, inbox)) as h:
        def go_deaf() -> None:
            # on the engine thread: from outside, the engine's folder check could see the stopped
            # watcher's dead emitter between stop and unset, and start a fresh (hearing) one
            h.engine.loop.inflow.watcher.stop()
            h.engine.loop.inflow.watcher = None

        h.engine.call(go_deaf)  # the watcher goes deaf: these files are never delivered
        for i in range(5):
            (inbox / f"missed_{i}.txt").write_text(str(i))
        time.sleep(0.3)
        assert h.of(ev.EventReceived) == []
        # what watchdog does on IN_Q_OVERFLOW: it only logs; tinyo hooks that log record
        from tinyo.watch import FileWatcher

        hook_watcher = FileWatcher([str(inbox)], lambda paths, seen: None, h.engine.rescan)
        hook_watcher.start()
        try:
            logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
            h.wait_idle()
        finally:
            hook_watcher.stop()
    assert sorted(h.lines()) == [f"missed_{i}.txt {i}" for i in range(5)]
    assert {e.source for e in h.of(ev.EventReceived)} == {"scan"}


def test_the_state_file_inside_a_watched_folder_is_not_an_event(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=inbox / "state.db", inbox=inbox, recursive=False, debounce=0.3)
    with harness(recipe) as h:
        (inbox / "real.txt").write_text("r")
        h.wait_idle()
    assert [os.path.basename(e.name) for e in h.of(ev.EventReceived)] == ["real.txt"]


def test_a_hard_link_without_a_close_is_reported_once_quiet(tmp_path, inbox, harness):
    source = tmp_path / "outside.txt"
    source.write_text("linked")
    with harness(recipe_for(tmp_path, inbox)) as h:
        os.link(source, inbox / "link.txt")  # IN_CREATE only: no close, no move
        h.wait_for(lambda: h.lines(), what="the linked file", timeout=10)
        h.wait_idle()
    assert h.lines() == ["link.txt linked"]


def test_a_linked_file_still_being_written_elsewhere_is_reported_once_it_is_quiet(tmp_path, inbox, harness):
    source = tmp_path / "growing.txt"
    with harness(recipe_for(tmp_path, inbox, debounce=1.0)) as h, open(source, "w") as fh:
        os.link(source, inbox / "grow.txt")  # IN_CREATE only; the writes below go through the other name
        for part in "abcdefghijklmnop":  # written for 1.6 s: past the first look, 1 s after the link
            fh.write(part)
            fh.flush()
            time.sleep(0.1)  # each write moves the mtime, well within the debounce (1 s)
        h.wait_for(lambda: h.lines(), what="the linked file", timeout=10)
        h.wait_idle()
    assert h.lines() == ["grow.txt abcdefghijklmnop"], "reported while still being written, or more than once"


# ---------------------------------------------------------------- the watcher runs in its own process


def test_the_watcher_process_sends_each_completed_file_with_its_state_read_there(tmp_path, inbox):
    import queue

    from tinyo.intake import digest_file
    from tinyo.watch import WatcherProcess

    got: queue.Queue = queue.Queue()
    watcher = WatcherProcess([str(inbox)], lambda files: [got.put(f) for f in files], lambda: got.put("overflow"))
    watcher.start()
    try:
        assert watcher._process.pid != os.getpid()
        for i in range(20):
            (inbox / f"f{i}.txt").write_text(f"content {i}")
        seen = {}
        while len(seen) < 20:
            path, state = got.get(timeout=10)
            seen[path] = state
    finally:
        watcher.stop()
    for i in range(20):
        path = str(inbox / f"f{i}.txt")
        st = os.stat(path)
        assert (seen[path].mtime_ns, seen[path].size, seen[path].digest) == (st.st_mtime_ns, st.st_size, digest_file(path))
    assert watcher._process.poll() == 0, "the watcher process did not exit when stopped"


def test_a_stopped_watcher_process_reports_nothing_more(tmp_path, inbox):
    from tinyo.watch import WatcherProcess

    got = []
    watcher = WatcherProcess([str(inbox)], got.extend, lambda: None)
    watcher.start()
    watcher.stop()
    (inbox / "late.txt").write_text("late")
    time.sleep(0.5)
    assert got == []


def test_a_watcher_process_that_cannot_watch_says_which_folder_and_why(tmp_path):
    import pytest

    from tinyo.errors import WatchError
    from tinyo.watch import WatcherProcess

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    watcher = WatcherProcess([str(blocker / "inbox")], lambda files: None, lambda: None)
    with pytest.raises(WatchError, match=r"cannot watch .*a_file/inbox: NotADirectoryError"):
        watcher.start()


def test_a_killed_watcher_process_is_replaced_and_nothing_is_lost(tmp_path, inbox, harness):
    import signal

    with harness(recipe_for(tmp_path, inbox)) as h:
        (inbox / "before.txt").write_text("b")
        h.wait_for(lambda: h.lines(), what="the first file", timeout=10)
        first = h.engine.loop.inflow.watcher
        os.kill(first._process.pid, signal.SIGKILL)
        (inbox / "while_dead.txt").write_text("d")  # nobody watches now: the rescan after the restart finds it
        h.wait_for(lambda: h.engine.loop.inflow.watcher is not first, what="a new watcher", timeout=10)
        h.wait_for(lambda: len(h.lines()) >= 2, what="the file written while no watcher ran", timeout=10)
        (inbox / "after.txt").write_text("a")
        h.wait_for(lambda: len(h.lines()) >= 3, what="a file seen by the new watcher", timeout=10)
        h.wait_idle()
    assert sorted(h.lines()) == ["after.txt a", "before.txt b", "while_dead.txt d"]
    sources = {os.path.basename(e.name): e.source for e in h.of(ev.EventReceived)}
    assert sources["after.txt"] == "file"
    notices = [n.message for n in h.of(ev.EngineNotice) if "watcher" in n.message]
    assert notices == ["the watcher process stopped (killed by signal 9): watching anew and rescanning"]


def test_the_engine_process_runs_no_watchdog_threads(tmp_path, inbox, harness):
    import threading

    with harness(recipe_for(tmp_path, inbox)) as h:
        (inbox / "one.txt").write_text("1")
        h.wait_for(lambda: h.lines(), what="the file", timeout=10)
        names = [t.name for t in threading.enumerate()]
        kinds = {type(t).__module__ for t in threading.enumerate()}
    assert not any(k.startswith("watchdog") for k in kinds), names
    assert "tinyo-debounce" not in names


def test_a_writer_pausing_longer_than_debounce_is_one_event_at_its_close(tmp_path, inbox, harness):
    """A download-like writer: 10 MB in 1 MB pieces, flushed, 0.5 s apart (over twice ``debounce``): one
    event, after the close, and the op reads the whole file."""
    body = RECIPE.replace("print(os.path.basename(src), open(src).read())",
                          "print(os.path.basename(src), len(open(src, 'rb').read()))")
    recipe = write_recipe(tmp_path, body, db=tmp_path / "w.db", inbox=inbox, recursive=False, debounce=0.2)
    with harness(recipe) as h:
        with open(inbox / "download.bin", "wb") as fh:
            for _ in range(10):
                fh.write(b"x" * (1 << 20))
                fh.flush()
                time.sleep(0.5)
            assert not h.of(ev.EventReceived), "taken in before the writer closed the file"
        h.wait_idle(quiet=0.5)
    assert h.lines() == [f"download.bin {10 << 20}"]
    assert len(h.of(ev.EventReceived)) == 1


def test_a_stop_during_a_burst_ends_the_watcher_and_loses_no_file(tmp_path, inbox, harness):
    """The watcher process is asked to stop at the start of the stop and ends while the workers do; what it
    reported until then is stored, the rest is found by the next start's scan: one event per file."""
    from tinyo.store import Store

    recipe = recipe_for(tmp_path, inbox, debounce=0.0)
    h = harness(recipe)
    with h:
        h.wait_for(lambda: all(w.state == "idle" for w in h.engine.workers()), what="workers ready")
        watcher = h.engine.loop.inflow.watcher._process
        workers = [w.process for w in h.engine.loop.executor._workers]
        for i in range(300):
            (inbox / f"b_{i:03d}.txt").write_text(str(i))
    # the harness's exit stopped the engine: both kinds of child process are gone, none left behind
    assert watcher.poll() is not None
    assert all(p.poll() is not None for p in workers)
    with harness(recipe) as again:
        again.wait_idle()
    store = Store(str(tmp_path / "w.db"))
    try:
        rows = store.conn.execute("SELECT name, count(*) FROM events GROUP BY name").fetchall()
    finally:
        store.close()
    counts = {os.path.basename(name): n for name, n in rows}
    assert sorted(counts) == [f"b_{i:03d}.txt" for i in range(300)]
    assert set(counts.values()) == {1}, "a file taken in twice"


def test_each_way_a_file_arrives_is_reported_once_without_the_observers_queue(tmp_path, inbox):
    """A real observer, recursive: a file closed after writing, renamed within the folders, moved in from
    outside, hard-linked in, written in a new subfolder, inside a folder moved within the watched tree; a
    temp name is ignored. Each is reported once, and a file's close reaches the watcher on the thread that
    parses the kernel's events, not through the emitter's and the observer's queues and threads."""
    import threading

    from tinyo.watch import FileWatcher

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "moved_in.txt").write_text("m")
    (outside / "linked.txt").write_text("l")
    (inbox / "old").mkdir()
    (inbox / "old" / "carried.txt").write_text("c")
    got: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_files(paths: list[str], seen: float) -> None:
        with lock:
            got.extend((os.path.relpath(path, inbox), threading.current_thread().name) for path in paths)

    watcher = FileWatcher([str(inbox)], on_files, lambda: None, recursive=True, debounce=0.1, ignore_names=["*.tmp"])
    watcher.start()
    try:
        (inbox / "closed.txt").write_text("w")
        (inbox / "part.tmp").write_text("r")
        os.rename(inbox / "part.tmp", inbox / "renamed.txt")
        os.rename(outside / "moved_in.txt", inbox / "moved_in.txt")
        os.link(outside / "linked.txt", inbox / "linked.txt")
        (inbox / "new").mkdir()
        time.sleep(0.2)  # the new folder is watched
        (inbox / "new" / "deep.txt").write_text("d")
        os.rename(inbox / "old", inbox / "moved_dir")
        want = {"closed.txt", "renamed.txt", "moved_in.txt", "linked.txt", os.path.join("new", "deep.txt"),
                os.path.join("moved_dir", "carried.txt")}
        deadline = time.monotonic() + 10
        while {p for p, _ in got} < want and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a late duplicate would show now
        handing_threads = {watcher._observer.name} | {emitter.name for emitter in watcher._observer.emitters}
    finally:
        watcher.stop()
    paths = [p for p, _ in got]
    assert sorted(paths) == sorted(want), got
    by_path = dict(got)
    for direct in ("closed.txt", os.path.join("new", "deep.txt")):
        assert by_path[direct] not in handing_threads, f"{direct} went through watchdog's queues"


def test_a_fifo_in_a_watched_folder_is_not_reported_and_does_not_hang_the_watcher_process(tmp_path, inbox):
    """The watcher process reads a file's stat and content through one open: a FIFO (no writer ever comes)
    must be passed over, not waited on, and the files after it still reported."""
    import queue

    from tinyo.watch import WatcherProcess

    got: queue.Queue = queue.Queue()
    watcher = WatcherProcess([str(inbox)], lambda files: [got.put(path) for path, _ in files], lambda: None,
                             debounce=0.05)
    watcher.start()
    try:
        os.mkfifo(inbox / "pipe")
        time.sleep(0.5)  # the FIFO's create is looked at (debounce) and handed to the reading thread
        (inbox / "after.txt").write_text("after")
        assert got.get(timeout=10) == str(inbox / "after.txt")
        time.sleep(0.3)
        assert got.empty()
    finally:
        watcher.stop()


def test_a_file_wakes_an_engine_that_has_nothing_else_to_wait_for(tmp_path, inbox, harness):
    # an in-memory store, no timers: the loop sleeps until something wakes it, so only the watcher's report
    # can bring the file in (a report that only queued the file waited for the next timeout: forever here)
    recipe = write_recipe(tmp_path, RECIPE, db=":memory:", inbox=inbox, recursive=False, debounce=0.3)
    with harness(recipe) as h:
        h.wait_idle()
        (inbox / "late.txt").write_text("hello")
        h.wait_for(lambda: h.lines() == ["late.txt hello"], what="the op on the file dropped into an idle engine")
