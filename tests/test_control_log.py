"""The log of an engine started by `tinyo start` is bounded: rotated by size, the newest lines in the newest file."""

from __future__ import annotations

import os
import stat
import time

from test_control import _no_xdg, alive, recipe, tinyo, wait_for  # noqa: F401 - fixtures
from tinyo.control.client import ControlClient
from tinyo.control.logfile import KEEP

LIMIT_MB = 0.002
"""About 2 KB: some 20 of the engine's lines (it writes some 12 KB here)."""


def test_the_engine_log_is_rotated_by_size_keeping_a_few_old_files(tmp_path, recipe):
    started = tinyo("start", str(recipe), "--log-max-mb", str(LIMIT_MB))
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    log = tmp_path / "s.db.log"
    try:
        with ControlClient.connect(tmp_path / "s.db", "test") as client:
            for batch in range(5):  # a second apart: the log shows up to some 20 events a second in full
                for n in range(batch * 16, batch * 16 + 16):
                    client.command("inject", event=f"go-{n:03d}-" + "x" * 60)
                wait_for(lambda: client.query("stats")["events_total"] == batch * 16 + 16, what="the events taken")
                time.sleep(1.1)
        assert tinyo("stop", str(recipe)).returncode == 0
        assert not alive(pid)
    finally:
        if alive(pid):
            os.killpg(pid, 9)
    logs = sorted(tmp_path.glob("s.db.log*"))
    assert logs == [log, *(tmp_path / f"s.db.log.{n}" for n in range(1, KEEP + 1))]  # the oldest were removed
    limit = int(LIMIT_MB * (1 << 20))
    for path in logs:
        assert path.stat().st_size <= limit + 4096, f"{path.name}: {path.stat().st_size} bytes"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert log.read_text().endswith("engine stopped\n")  # the engine's last words are in the current file
    assert "go-079-" in (tmp_path / "s.db.log.1").read_text() + log.read_text()
    assert "go-000-" not in "".join(p.read_text() for p in logs)  # the first ones rotated out
