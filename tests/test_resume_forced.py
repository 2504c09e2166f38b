"""``resume`` of a run started with ``--force``: the forced nodes it did not finish run again
(continuing from the checkpoint the forced attempt saved), instead of being taken from the cache
the run was told to bypass. Real processes, a real SIGKILL, a real journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOW = """
import os, signal, warnings
from etherealfabric import FingerprintWarning, Workflow, checkpoint, node

warnings.filterwarnings("ignore", category=FingerprintWarning)  # TAG, KILL_AT: on purpose

@node
def train(steps):
    state = checkpoint.load(default={"step": 0, "tag": os.environ["TAG"]})
    print(f"starting at step {state['step']}", flush=True)
    for step in range(state["step"], steps):
        checkpoint.save({"step": step + 1, "tag": state["tag"]})
        if os.environ.get("KILL_AT") == str(step + 1):
            os.kill(os.getpid(), signal.SIGKILL)
    return state["tag"]

@node
def report(tag):
    return f"model {tag}"

with Workflow("forced") as wf:
    report(train(5))
"""


def _ef(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    src = Path(__file__).resolve().parent.parent / "src"
    full = {**os.environ, "PYTHONPATH": str(src), **env}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_resume_of_a_killed_forced_run_forces_what_it_did_not_finish(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    first = _ef(tmp_path, "run", "flow.py", TAG="old")
    assert first.returncode == 0, first.stderr
    # the user wants train recomputed (what its key does not cover changed): --force; the
    # machine dies in the middle of it, after checkpoint 3
    killed = _ef(tmp_path, "run", "flow.py", "--force", "train", TAG="new", KILL_AT="3")
    assert killed.returncode == -9, killed.stderr
    runs = _ef(tmp_path, "runs", "--status", "interrupted", "--json")
    [interrupted] = __import__("json").loads(runs.stdout)

    resumed = _ef(tmp_path, "resume", interrupted["id"], "--json", TAG="other")
    assert resumed.returncode == 0, resumed.stderr
    summary = __import__("json").loads(resumed.stdout)
    assert summary["nodes"] == {"train": "succeeded", "report": "succeeded"}, summary
    # train went on from the forced attempt's checkpoint, not from scratch, not from the cache
    logs = _ef(tmp_path, "logs", summary["run_id"], "train")
    assert "starting at step 3" in logs.stdout, logs.stdout
    shown = _ef(tmp_path, "cat", summary["run_id"], "report")
    assert shown.stdout.strip() == "'model new'", shown.stdout

    # the forced run, finished by its resume, is in the cache: the next plain run uses it
    again = _ef(tmp_path, "run", "flow.py", "--json", TAG="other")
    assert __import__("json").loads(again.stdout)["nodes"] == {
        "train": "cached",
        "report": "cached",
    }
    assert _ef(tmp_path, "cat", "latest", "report").stdout.strip() == "'model new'"
