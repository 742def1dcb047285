"""The soak benchmark in CI: a real engine under a steady stream of mixed events (file rewrites, a
timer, failing ops) must keep RSS, file descriptors, latency and the state file's size flat, and
lose no write. ``benchmarks/soak.py`` runs the full hour; here it runs 45 seconds (and, marked
``soak``, its two-minute ``--ci`` form: ``pytest -m soak``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def run_soak(tmp_path: Path, *args: str, timeout: float) -> dict:
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, str(SOAK), *args, "--json", str(out)], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = [f"{v['check']}: {v['detail']}" for v in report["verdicts"] if not v["ok"]]
    assert not failed, "\n".join(failed) + "\n" + result.stdout[-4000:]
    return report


@pytest.mark.timeout(200)
def test_short_soak_stays_flat(tmp_path):
    # retention 150 so the kept history is full well inside the run and the file must stop growing
    report = run_soak(tmp_path, "--duration", "45", "--retention", "150", "--sample", "3", timeout=180)
    assert report["writes"] >= 900 and report["counts"].get("op_failed", 0) > 0


@pytest.mark.soak
@pytest.mark.timeout(400)
def test_soak_ci(tmp_path):
    report = run_soak(tmp_path, "--ci", timeout=360)
    assert report["writes"] >= 2900
