"""Exact intake and rebuild with real tools: temporary files of rsync, sed -i and editors are never taken
in; a file gone before its DES runs is waited for, not run on; a deleted or edited output is rebuilt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_recipe
from tinyo import DEFAULT_IGNORE
from tinyo import events as ev
from tinyo.watch import IgnoredNames

UPPER = """
def upper(context):
    src, dst = context['config']['src'], context['config']['dst']
    gate = context['config'].get('gate')
    while gate and not os.path.exists(gate):
        time.sleep(0.02)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    data = open(src).read()
    with open(dst, 'w') as fh:
        fh.write(data.upper())
    print('built', os.path.basename(dst))

@meta_task(root=True)
def on_file(event):
    if not event.startswith('{inbox}/') or event.endswith('.up'):
        return (None, [])
    name = os.path.basename(event)
    dst = '{out}/' + name + '.up'
    gate = '{gate}' if name.startswith('slow') else None
    return (None, [DES(deps=[event], targs=[dst], ops=[(upper, Config(src=event, dst=dst, gate=gate))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers={workers}, ignore={ignore})
"""


def recipe_for(tmp_path: Path, inbox: Path, *, out: Path | None = None, workers: int = 2,
               ignore: str = "DEFAULT_IGNORE") -> Path:
    header_ignore = "from tinyo import DEFAULT_IGNORE\n"
    path = write_recipe(tmp_path, UPPER, db=tmp_path / "s.db", inbox=inbox, out=out or tmp_path / "out",
                        gate=tmp_path / "gate", workers=workers, ignore=ignore)
    path.write_text(header_ignore + path.read_text())
    return path


def tinyo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def received(h) -> list[str]:
    return sorted(os.path.basename(e.name) for e in h.of(ev.EventReceived))


# ---------------------------------------------------------------- the ignore list


def test_the_default_ignore_list_names_the_well_known_temporary_files() -> None:
    ignored = IgnoredNames(DEFAULT_IGNORE)
    for temp in [".data.csv.AbC123", "sedAb12Cd", ".data.csv.swp", ".data.csv.swo", "data.csv~", ".#data.csv",
                 "#data.csv#", "4913", "data.csv.part", "data.csv.crdownload", "x.tmp", ".~lock.book.ods#",
                 ".DS_Store", "._data.csv"]:
        assert ignored(f"/in/{temp}"), temp
    for real in ["data.csv", ".hidden", "sed.txt", "data.csv.gz", "report_2024.xlsx", ".env", "a.b"]:
        assert not ignored(f"/in/{real}"), real


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (apt-get install rsync)")
def test_rsync_into_a_watched_folder_is_one_event_per_file(tmp_path: Path, inbox: Path, harness) -> None:
    """rsync writes .NAME.XXXXXX, then renames it: only NAME is taken in, and its op runs once."""
    source = tmp_path / "source"
    source.mkdir()
    for i in range(5):
        (source / f"part{i}.csv").write_text(f"row {i}\n" * 20000)
    with harness(recipe_for(tmp_path, inbox)) as h:
        subprocess.run(["rsync", "-a", f"{source}/", f"{inbox}/"], check=True)
        h.wait_for(lambda: len(h.of(ev.OpFinished)) >= 5, what="five ops")
        h.wait_idle(quiet=0.6)
        assert received(h) == [f"part{i}.csv" for i in range(5)]
        assert not h.of(ev.OpFailed) and len(h.of(ev.OpStarted)) == 5


def test_sed_in_place_is_one_event_for_the_file(tmp_path: Path, inbox: Path, harness) -> None:
    """sed -i writes sedXXXXXX and renames it over the file: one event, for the file."""
    target = inbox / "notes.txt"
    with harness(recipe_for(tmp_path, inbox)) as h:
        target.write_text("hello\n")
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 1, what="the first build")
        h.wait_idle()
        for word in ("world", "again"):
            subprocess.run(["sed", "-i", f"s/^.*$/{word}/", str(target)], check=True)
            h.wait_for(lambda w=word: (tmp_path / "out" / "notes.txt.up").read_text() == w.upper() + "\n",
                       what=f"the build after sed -i ({word})")
        h.wait_idle(quiet=0.6)
        assert received(h) == ["notes.txt"] * 3
        assert not h.of(ev.OpFailed) and len(h.of(ev.OpStarted)) == 3


def test_an_editor_style_save_is_one_event_for_the_file(tmp_path: Path, inbox: Path, harness) -> None:
    """vim's save: a swap file, the 4913 write test, a backup copy name~, the new content renamed over."""
    target = inbox / "conf.txt"
    with harness(recipe_for(tmp_path, inbox)) as h:
        (inbox / ".conf.txt.swp").write_bytes(b"swap")
        (inbox / "4913").write_text("")
        os.unlink(inbox / "4913")
        target.write_text("v1\n")
        shutil.copy(target, inbox / "conf.txt~")
        (inbox / ".conf.txt.new.tmp").write_text("v2\n")
        os.rename(inbox / ".conf.txt.new.tmp", target)
        os.unlink(inbox / ".conf.txt.swp")
        h.wait_for(lambda: (tmp_path / "out" / "conf.txt.up").exists()
                   and (tmp_path / "out" / "conf.txt.up").read_text() == "V2\n", what="the saved file's build")
        h.wait_idle(quiet=0.6)
        assert set(received(h)) == {"conf.txt"}
        assert not h.of(ev.OpFailed)


# ---------------------------------------------------------------- a file gone before its DES runs


def test_a_file_renamed_away_before_its_event_is_processed_is_waited_for(tmp_path: Path, inbox: Path,
                                                                          harness) -> None:
    """The event is stored, then the file is renamed away before the generators see it: no version, the
    DES waits for the file (`why` says so), nothing fails; the file coming back builds it."""
    with harness(recipe_for(tmp_path, inbox, ignore="[]")) as h:
        h.engine.pause()
        h.wait_for(lambda: h.engine.paused, what="paused")
        (inbox / "draft.csv").write_text("draft\n")
        h.wait_for(lambda: h.engine.stats().buffered >= 1, what="the event stored")
        os.rename(inbox / "draft.csv", tmp_path / "elsewhere.csv")
        h.engine.resume()
        h.wait_idle()
        assert received(h) == ["draft.csv"] and not h.of(ev.OpStarted) and not h.of(ev.OpFailed)
        reason = h.engine.explain(str(tmp_path / "out" / "draft.csv.up"))
        assert f"waiting for {inbox}/draft.csv (its file is gone)" in reason, reason
        os.rename(tmp_path / "elsewhere.csv", inbox / "draft.csv")  # back again (a move-in event)
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 1, what="the build once the file is back")
        assert (tmp_path / "out" / "draft.csv.up").read_text() == "DRAFT\n"
        assert h.engine.failures == 0


def test_a_file_deleted_while_its_des_is_queued_is_not_run_on(tmp_path: Path, inbox: Path, harness) -> None:
    """One worker busy; a second file's DES is queued behind it; the file is deleted; when the worker is
    free the DES is not run (it waits for its file) and `tinyo run --idle-exit` would exit 0."""
    gate = tmp_path / "gate"
    with harness(recipe_for(tmp_path, inbox, workers=1, ignore="[]")) as h:
        (inbox / "slow.csv").write_text("slow\n")
        h.wait_for(lambda: len(h.of(ev.OpStarted)) == 1, what="the slow op running")
        (inbox / "later.csv").write_text("later\n")
        h.wait_for(lambda: any(e.state == "queued" for e in h.told(ev.DESStateChanged)
                               if any("later" in t for t in e.targs)), what="the second DES queued")
        os.unlink(inbox / "later.csv")
        gate.write_text("go")
        h.wait_idle()
        assert [e.des_id for e in h.of(ev.OpStarted)] == [h.of(ev.OpStarted)[0].des_id]
        assert h.engine.failures == 0 and not h.of(ev.OpFailed)
        assert "its file is gone" in h.engine.explain(str(tmp_path / "out" / "later.csv.up"))


# ---------------------------------------------------------------- deleted or edited outputs


def test_a_deleted_or_edited_output_is_rebuilt_at_the_next_start(tmp_path: Path, inbox: Path) -> None:
    out = tmp_path / "out"  # not watched
    recipe = recipe_for(tmp_path, inbox, out=out)
    (inbox / "a.txt").write_text("hello\n")
    (inbox / "b.txt").write_text("other\n")
    first = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert first.returncode == 0 and first.stdout.count("built") == 2, first.stdout + first.stderr
    (out / "a.txt.up").unlink()
    why = tinyo("why", str(recipe), str(out / "a.txt.up"))
    assert f"stale: target {out}/a.txt.up is missing" in why.stdout, why.stdout
    second = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert second.returncode == 0 and second.stdout.count("built") == 1 and "built a.txt.up" in second.stdout
    assert (out / "a.txt.up").read_text() == "HELLO\n"
    (out / "b.txt.up").write_text("edited by hand\n")
    why = tinyo("why", str(recipe), str(out / "b.txt.up"))
    assert f"stale: target {out}/b.txt.up changed since it was built" in why.stdout, why.stdout
    third = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert third.stdout.count("built") == 1 and "built b.txt.up" in third.stdout
    assert (out / "b.txt.up").read_text() == "OTHER\n"
    os.utime(out / "b.txt.up", ns=(1, 1))  # touched only: same content, nothing to build
    fourth = tinyo("run", str(recipe), "--idle-exit", "0.3")
    assert fourth.returncode == 0 and "built" not in fourth.stdout, fourth.stdout


def test_an_output_edited_in_a_watched_folder_is_rebuilt_while_running(tmp_path: Path, inbox: Path,
                                                                       harness) -> None:
    with harness(recipe_for(tmp_path, inbox, out=inbox)) as h:  # outputs land in the watched folder
        (inbox / "a.txt").write_text("hello\n")
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 1, what="the first build")
        h.wait_idle(quiet=0.5)
        (inbox / "a.txt.up").write_text("edited by hand\n")
        h.wait_for(lambda: len(h.of(ev.OpFinished)) == 2, what="the rebuild")
        h.wait_idle(quiet=0.5)
        assert (inbox / "a.txt.up").read_text() == "HELLO\n"
        assert len(h.of(ev.OpStarted)) == 2 and not h.of(ev.OpFailed)


def test_a_consumer_of_a_deleted_output_waits_for_it_to_be_rebuilt(tmp_path: Path, inbox: Path, harness) -> None:
    """`final` reads `mid` (an output, not watched) and an input; `mid` is deleted, then the input changes:
    `mid`'s producer runs again first, then `final`, on the rebuilt file."""
    out = tmp_path / "out"
    body = """
def step(context):
    cfg = context['config']
    data = ''.join(open(d).read() for d in cfg['srcs'])
    with open(cfg['dst'], 'w') as fh:
        fh.write(data.upper())
    print('built', os.path.basename(cfg['dst']))

@meta_task(root=True)
def on_file(event):
    mid, final, a, b = '{out}/mid', '{out}/final', '{inbox}/a.txt', '{inbox}/b.txt'
    os.makedirs('{out}', exist_ok=True)
    return (None, [DES(deps=[a], targs=[mid], ops=[(step, Config(srcs=[a], dst=mid))]),
                   DES(deps=[mid, b], targs=[final], ops=[(step, Config(srcs=[mid, b], dst=final))])])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=2)
"""
    recipe = write_recipe(tmp_path, body, db=tmp_path / "s.db", inbox=inbox, out=out)
    with harness(recipe) as h:
        (inbox / "a.txt").write_text("a\n")
        (inbox / "b.txt").write_text("b\n")
        h.wait_for(lambda: (out / "final").exists() and (out / "final").read_text() == "A\nB\n", what="first build")
        h.wait_idle()
        before = len(h.lines())
        (out / "mid").unlink()
        (inbox / "b.txt").write_text("b2\n")
        h.wait_for(lambda: (out / "final").exists() and (out / "final").read_text() == "A\nB2\n", what="rebuild")
        h.wait_idle()
        assert h.lines()[before:] == ["built mid", "built final"]
        assert not h.of(ev.OpFailed)
