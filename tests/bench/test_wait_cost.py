"""Smoke run of bench/wait_cost.py in its smallest mode: the figures are sane, and the
primary ran WAIT only in the rounds that wait (the bench measures what it says)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_wait_cost_smoke(tmp_path: Path) -> None:
    out = tmp_path / "wait.json"
    args = ["--ops", "30", "--jobs", "30", "--concurrency", "4", "--rounds", "1", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.wait_cost", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    waits = {row["mode"]: row["waits"] for row in data["rounds"]}
    # 30 submits and 30 commits, then 30 jobs of a submit and up to 3 commits each.
    assert waits["nowait"] == 0 and waits["wait"] >= 90
    for figure in data["summary"].values():
        assert figure["wait"] > 0 and figure["nowait"] > 0
