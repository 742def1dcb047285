"""`tinyo cancel RUN_ID` names a run that does not exist, or has ended, instead of saying it was taken."""

from __future__ import annotations

import pytest

from test_control import _no_xdg, recipe, service, tinyo, wait_for  # noqa: F401 - fixtures
from tinyo.control.client import ControlClient


def _ended_run(db) -> int:
    """The id of a run that has ended ok (one is made)."""
    with ControlClient.connect(db, "test") as client:
        client.command("inject", event="go-once")
        built = wait_for(lambda: [d for d in client.query("doc_infos", names=["out/go-once"])
                                  if d["state"] == "up to date"], what="the run to end")
        des_id = built[0]["producer"]
        return client.query("des_details", des_id=des_id)["runs"][-1]["run_id"]


def test_cancelling_an_unknown_or_ended_run_says_so_through_the_channel_and_without_an_engine(
        recipe, tmp_path, service):
    unknown = tinyo("cancel", str(recipe), "999")
    assert unknown.returncode == 2, unknown.stdout
    assert "there is no run 999 in" in unknown.stderr and "took" not in unknown.stdout
    run_id = _ended_run(tmp_path / "s.db")
    ended = tinyo("cancel", str(recipe), str(run_id))
    assert ended.returncode == 2 and f"run {run_id} is not queued or running: it ended (ok)" in ended.stderr
    with ControlClient.connect(tmp_path / "s.db", "test") as client:
        assert client.query("stats")["state"] == "running"  # refused, and the engine goes on
    assert tinyo("stop", str(recipe)).returncode == 0
    offline = tinyo("cancel", str(recipe), "999")  # no engine: the state file says there is no such run
    assert offline.returncode == 2 and "there is no run 999 in" in offline.stderr
    offline = tinyo("cancel", str(recipe), str(run_id))
    assert offline.returncode == 2 and f"run {run_id} is not queued or running: it ended (ok)" in offline.stderr
