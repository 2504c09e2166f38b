"""Right after a run is killed with SIGKILL, the commands that show one run (``show``,
``logs``, ``explain``, ``cat``) call it ``interrupted``, as ``runs`` and ``status`` do; they said
``running``, as if it still went on. Real processes, a real SIGKILL, a real journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

FLOW = """
import time
from etherealfabric import Workflow, node

@node
def prepare():
    return 3

@node
def train(x):
    print("training", flush=True)
    time.sleep(600)
    return x

with Workflow("killed") as wf:
    train(prepare())
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}


def _ef(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def _train_started(cwd: Path) -> bool:
    """Whether the journal holds train's row (read without marking anything)."""
    import sqlite3

    path = cwd / ".etherealfabric" / "journal.db"
    if not path.exists():
        return False
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return bool(conn.execute("SELECT 1 FROM node_runs WHERE node='train'").fetchall())
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def _kill_while_training(tmp_path: Path, before: Callable[[], None] | None = None) -> None:
    """Run ``flow.py`` of ``tmp_path`` and SIGKILL it once ``train`` has started (after
    ``before()``, called while it runs)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"],
        cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _train_started(tmp_path):
            assert proc.poll() is None, "the run ended by itself"
            assert time.monotonic() < deadline, "train never started"
            time.sleep(0.2)
        if before is not None:
            before()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_commands_showing_a_killed_run_call_it_interrupted(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    _kill_while_training(tmp_path)

    shown = _ef(tmp_path, "show", "latest", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["run"]["status"] == "interrupted", doc["run"]
    assert {n["node"]: n["status"] for n in doc["nodes"]}["train"] == "interrupted", doc
    logs = _ef(tmp_path, "logs", "latest", "train")
    assert "attempt 1 (interrupted)" in logs.stdout, logs.stdout
    explained = _ef(tmp_path, "explain", "latest", "train", "--json")
    assert "running" not in explained.stdout, explained.stdout
    runs = json.loads(_ef(tmp_path, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["interrupted"]


def test_explain_alone_marks_a_killed_run(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    _kill_while_training(tmp_path)
    explained = _ef(tmp_path, "explain", "latest", "train")
    assert explained.returncode == 0, explained.stderr
    assert "(running)" not in explained.stdout, explained.stdout
    assert "(interrupted)" in explained.stdout, explained.stdout


def test_cat_of_a_node_a_killed_run_never_reached_says_so_and_points_at_resume(
    tmp_path: Path,
) -> None:
    flow = FLOW.replace("    train(prepare())", "    evaluate(train(prepare()))").replace(
        "with Workflow", "@node\ndef evaluate(model):\n    return model\n\nwith Workflow"
    )
    (tmp_path / "flow.py").write_text(flow)
    _kill_while_training(tmp_path)

    cat = _ef(tmp_path, "cat", "latest", "evaluate")
    assert cat.returncode != 0, cat.stdout
    assert "ended before" in cat.stderr, cat.stderr
    assert "interrupted" in cat.stderr, cat.stderr
    assert "etherealfabric resume" in cat.stderr, cat.stderr
    logs = _ef(tmp_path, "logs", "latest", "evaluate")  # the same words
    assert "ended before" in logs.stderr, logs.stderr
    explain = _ef(tmp_path, "explain", "latest", "evaluate")  # and explain, and show
    assert explain.returncode != 0 and "ended before" in explain.stderr, explain.stderr
    show = _ef(tmp_path, "show", "latest", "evaluate")
    assert show.returncode != 0 and "ended before" in show.stderr, show.stderr


def test_cat_and_plan_of_the_killed_node_say_it_was_interrupted_and_how_to_resume(
    tmp_path: Path,
) -> None:
    """The first commands after the kill (they mark nothing): ``cat`` said "it running" and
    ``plan`` "that run is still running, or died" (found by review)."""
    (tmp_path / "flow.py").write_text(FLOW)
    _kill_while_training(tmp_path)
    cat = _ef(tmp_path, "cat", "latest", "train")
    assert cat.returncode == 2, cat.stdout
    assert "its run stopped while it ran (`etherealfabric resume " in cat.stderr, cat.stderr
    plan = _ef(tmp_path, "plan", "flow.py", "--json")
    assert plan.returncode == 0, plan.stderr
    [train] = [n for n in json.loads(plan.stdout)["nodes"] if n["node"] == "train"]
    assert train["reason"].endswith("where it did not finish (interrupted)"), train


def test_logs_of_an_attempt_still_running_say_its_output_comes_at_its_end(
    tmp_path: Path,
) -> None:
    """It said "no output captured" of a node that had printed (the web UI says why)."""
    (tmp_path / "flow.py").write_text(FLOW)

    def look() -> None:
        logs = _ef(tmp_path, "logs", "latest", "train")
        assert logs.returncode == 0, logs.stderr
        assert "== train attempt 1 (running) ==" in logs.stdout, logs.stdout
        assert "no output yet: what a node prints is kept when its attempt ends" in logs.stdout

    _kill_while_training(tmp_path, look)
