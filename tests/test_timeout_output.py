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
    # its traceback: where the node was when its time was up, from its own code on (it was
    # the engine's frames only: the worker's call and the clock's thread)
    trace = logs.stdout.split("-- traceback --", 1)[1]
    assert "where it was when its time was up" in trace, trace
    assert 'flow.py", line 8, in slow\n    time.sleep(60)' in trace, trace
    assert "etherealfabric" + os.sep not in trace.replace("etherealfabric.errors", ""), trace


def test_logs_show_what_a_timed_out_attempt_printed_on_the_process_backend(
    tmp_path: Path,
) -> None:
    # the attempt runs in a child process killed at its timeout: what it printed before
    # reaches the worker as it is printed
    (tmp_path / "flow.py").write_text(FLOW)
    run = _ef(tmp_path, "run", "flow.py", "--backend", "processes")
    assert run.returncode == 1, run.stderr
    assert "NodeTimeoutError" in run.stderr, run.stderr
    assert "was stopped" in run.stderr, run.stderr
    logs = _ef(tmp_path, "logs", "latest", "slow")
    assert logs.returncode == 0, logs.stderr
    assert "loaded 120 shards, starting the slow part" in logs.stdout, logs.stdout
    assert "no output captured" not in logs.stdout, logs.stdout
    trace = logs.stdout.split("-- traceback --", 1)[1].strip()  # (stopped: its line only)
    assert trace.startswith("etherealfabric.errors.NodeTimeoutError: node 'slow'"), trace


SLOW_IMPORT = """
import time
time.sleep(15)  # a heavy library: every process that imports it waits this long

def one():
    return 1
"""

SLOW_START = """
import slowlib
from etherealfabric import Workflow, node

@node(timeout=5)
def quick():
    print("epoch 1 done", flush=True)
    return slowlib.one()

with Workflow("startup") as wf:
    quick()
"""


def test_the_timeout_of_a_process_counts_the_node_not_its_start_up(tmp_path: Path) -> None:
    # the child imports slowlib when it loads the node (15 s, far past the 5 s timeout); the
    # node itself takes milliseconds: the clock starts when the child starts running it
    (tmp_path / "slowlib.py").write_text(SLOW_IMPORT)
    (tmp_path / "flow.py").write_text(SLOW_START)
    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(tmp_path)])}
    run = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--backend", "processes"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "NodeTimeoutError" not in run.stderr, run.stderr
    logs = _ef(tmp_path, "logs", "latest", "quick")
    assert "epoch 1 done" in logs.stdout, logs.stdout


KILLED_FLOW = """
import os, signal
from etherealfabric import Workflow, node

@node(timeout=600)
def doomed():
    print("about to go", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

with Workflow("doomed") as wf:
    doomed()
"""


def test_an_attempt_whose_process_is_killed_says_by_what(tmp_path: Path) -> None:
    """A node with a timeout runs in a process of its own on the process backend: one killed
    says so ("killed by SIGKILL", and its pid), not "died (exit code None)"."""
    (tmp_path / "flow.py").write_text(KILLED_FLOW)
    run = _ef(tmp_path, "run", "flow.py", "--backend", "processes")
    assert run.returncode == 1, run.stderr
    assert "died: killed by SIGKILL" in run.stderr, run.stderr
    assert "exit code None" not in run.stderr
