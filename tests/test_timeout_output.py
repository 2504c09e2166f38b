"""What an attempt printed before it ran past its timeout is kept for ``logs`` (it said "no
output captured": what a user debugging a slow or hung node most wants to see). Real
subprocesses, a real journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOW = """
import time
from etherealfabric import Workflow, node

@node(timeout=3)
def slow():
    print("loaded 120 shards, starting the slow part", flush=True)
    time.sleep(60)
    return 1

with Workflow("timeouts") as wf:
    slow()
"""


def _ef(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_logs_show_what_a_timed_out_attempt_printed_on_the_thread_backend(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    run = _ef(tmp_path, "run", "flow.py", "--backend", "local")
    assert run.returncode == 1, run.stderr
    assert "NodeTimeoutError" in run.stderr, run.stderr
    logs = _ef(tmp_path, "logs", "latest", "slow")
    assert logs.returncode == 0, logs.stderr
    assert "loaded 120 shards, starting the slow part" in logs.stdout, logs.stdout
    assert "no output captured" not in logs.stdout, logs.stdout
