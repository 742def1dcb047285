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

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2, debounce=0.3, recursive={recursive})
"""


def recipe_for(tmp_path, inbox, recursive=False):
    return write_recipe(tmp_path, RECIPE, db=tmp_path / "w.db", inbox=inbox, recursive=recursive)


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
            h.engine._watcher.stop()
            h.engine._watcher = None

        h.engine.call(go_deaf)  # the watcher goes deaf: these files are never delivered
        for i in range(5):
            (inbox / f"missed_{i}.txt").write_text(str(i))
        time.sleep(0.3)
        assert h.of(ev.EventReceived) == []
        # what watchdog does on IN_Q_OVERFLOW: it only logs; tinyo hooks that log record
        from tinyo.watch import FileWatcher

        hook_watcher = FileWatcher([str(inbox)], lambda p: None, h.engine.rescan)
        hook_watcher.start()
        try:
            logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
            h.wait_idle()
        finally:
            hook_watcher.stop()
    assert sorted(h.lines()) == [f"missed_{i}.txt {i}" for i in range(5)]
    assert {e.source for e in h.of(ev.EventReceived)} == {"scan"}


def test_the_state_file_inside_a_watched_folder_is_not_an_event(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RECIPE, db=inbox / "state.db", inbox=inbox, recursive=False)
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
