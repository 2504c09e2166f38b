"""Counts given on the command line past SQLite's integers (2**63 and up) are exit 2 naming
the flag, never an OverflowError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
from etherealfabric import Workflow, node

@node
def one():
    return 1

with Workflow("one") as wf:
    one()
"""


@pytest.mark.parametrize("args", [("runs", "--limit"), ("cache", "gc", "--dry-run", "--keep-runs")])
def test_a_count_past_sqlites_integers_is_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    (tmp_path / "flow.py").write_text(FLOW)
    assert subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"], env=env, cwd=tmp_path,
        capture_output=True, timeout=300,
    ).returncode == 0  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "9" * 20], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and args[-1] in out.stderr, out.stderr
