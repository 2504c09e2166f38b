"""A checkpoint a kill left behind after its node's success was committed is never resumed.

The scheduler deletes a node's checkpoint once the node's success is committed to the journal.
A run SIGKILLed between the two leaves the checkpoint under the key: the node's final state.
When that key runs again (its record forgotten, dropped by ``cache gc``, damaged), the new
execution must start from the beginning, not from the state of an execution that had already
finished. A checkpoint saved by a later execution (killed in its turn) is still resumed.
The kill is real (SIGKILL, from inside the deletion), and each step runs in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

FLOW = textwrap.dedent(
    """
    import json, os, signal

    from etherealfabric import Workflow, checkpoint, node


    @node
    def train(steps: int) -> dict:
        start = checkpoint.load(default=0)
        print(json.dumps({"start": start}), flush=True)
        for step in range(start, steps):
            checkpoint.save(step + 1)
            if os.environ.get("EF_DIE_AT") == str(step + 1):
                os.kill(os.getpid(), signal.SIGKILL)
        return {"started_at_step": start}


    with Workflow("orphans") as workflow:
        train(5)
    """
)

#: The run, SIGKILLed right after train's success is committed, as it deletes the checkpoint.
KILLED_DELETE = textwrap.dedent(
    """
    import importlib, os, signal, sys

    from etherealfabric.store import LocalStore

    def die(self, key):
        os.kill(os.getpid(), signal.SIGKILL)

    LocalStore.delete_checkpoint = die
    sys.path.insert(0, os.getcwd())
    importlib.import_module("flow").workflow.execute()
    """
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETHEREALFABRIC_", "EF_"))}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    return env


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run(tmp_path, env, "-m", "etherealfabric", *args)


def _starts(out: str) -> list[int]:
    return [json.loads(line)["start"] for line in out.splitlines() if line.startswith('{"start"')]


def _checkpoints(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "home" / "checkpoints"
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp")]


def test_a_checkpoint_left_by_a_kill_after_the_success_is_never_resumed(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    env = _env(tmp_path)
    killed = _run(tmp_path, env, "-c", KILLED_DELETE)
    assert killed.returncode == -9, killed.stderr
    assert _starts(killed.stdout) == [0]
    assert len(_checkpoints(tmp_path)) == 1, "the kill must leave train's last checkpoint"

    cached = _cli(tmp_path, env, "run", "flow.py", "--json")  # committed: a hit
    assert cached.returncode == 0, cached.stderr
    assert json.loads(cached.stdout)["cached"] == 1

    forgot = _cli(tmp_path, env, "cache", "forget", "train")
    assert forgot.returncode == 0, forgot.stderr
    again = _cli(tmp_path, env, "run", "flow.py", "--json")
    assert again.returncode == 0, again.stderr
    assert _starts(again.stderr) == [0], "it resumed the state of an execution that had finished"
    assert json.loads(again.stdout)["executed"] == 1
    assert _checkpoints(tmp_path) == []


def test_a_later_executions_checkpoint_is_still_resumed(tmp_path: Path) -> None:
    """The key ran to success, was forgotten, then ran again and was killed at step 2: its
    checkpoint is newer than the success, so the next run resumes it."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = _env(tmp_path)
    first = _cli(tmp_path, env, "run", "flow.py")
    assert first.returncode == 0, first.stderr
    assert _cli(tmp_path, env, "cache", "forget", "train").returncode == 0
    dying = _cli(tmp_path, {**env, "EF_DIE_AT": "2"}, "run", "flow.py")
    assert dying.returncode == -9, dying.stderr
    assert _starts(dying.stdout) == [0]
    resumed = _cli(tmp_path, env, "run", "flow.py")
    assert resumed.returncode == 0, resumed.stderr
    assert _starts(resumed.stdout) == [2]
    assert _checkpoints(tmp_path) == []


MAP_FLOW = FLOW.replace("train(5)", "train.map([5])")


def test_a_map_childs_checkpoint_left_by_a_kill_after_its_success_is_never_resumed(
    tmp_path: Path,
) -> None:
    """A map's child has the plain node's guarantee: its checkpoint, left by a kill between the
    commit of its success and the checkpoint's deletion, is not resumed when its key runs again."""
    (tmp_path / "flow.py").write_text(MAP_FLOW)
    env = _env(tmp_path)
    killed = _run(tmp_path, env, "-c", KILLED_DELETE)
    assert killed.returncode == -9, killed.stderr
    assert _starts(killed.stdout) == [0]
    assert len(_checkpoints(tmp_path)) == 1, "the kill must leave the child's last checkpoint"

    forgot = _cli(tmp_path, env, "cache", "forget", "train*")  # the map and its child
    assert forgot.returncode == 0, forgot.stderr
    again = _cli(tmp_path, env, "run", "flow.py", "--json")
    assert again.returncode == 0, again.stderr
    assert _starts(again.stderr + again.stdout) == [0], "the child resumed a finished state"
    assert _checkpoints(tmp_path) == []


def _gc(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    gc = _cli(tmp_path, env, "cache", "gc", "--older-than", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    report: dict[str, object] = json.loads(gc.stdout)
    return report


def test_cache_gc_removes_a_checkpoint_left_after_its_keys_success(tmp_path: Path) -> None:
    """The kill leaves train's final checkpoint and its key stays a cache hit, so no run ever
    clears it: `cache gc` does (its key's success is committed after it was saved), unless a
    live run holds the key's lease; a checkpoint whose key never succeeded stays."""
    from etherealfabric.journal import Journal

    (tmp_path / "flow.py").write_text(FLOW)
    env = _env(tmp_path)
    killed = _run(tmp_path, env, "-c", KILLED_DELETE)
    assert killed.returncode == -9, killed.stderr
    [left] = _checkpoints(tmp_path)
    assert _cli(tmp_path, env, "run", "flow.py").returncode == 0  # a hit: nothing clears it
    assert _checkpoints(tmp_path) == [left]

    journal = Journal(tmp_path / "home" / "journal.db")  # a live run holds the home lease
    try:
        assert journal.claim_lease(left.name, node="train", run_id="going") == "home"
        assert _gc(tmp_path, env)["checkpoints_removed"] == []
        assert _checkpoints(tmp_path) == [left]
        journal.release_leases("going")
    finally:
        journal.close()

    dry = _cli(tmp_path, env, "cache", "gc", "--older-than", "0", "--dry-run")
    assert "would remove" in dry.stdout and "1 finished checkpoint(s)" in dry.stdout, dry.stdout
    assert _checkpoints(tmp_path) == [left]
    assert _gc(tmp_path, env)["checkpoints_removed"] == [left.name]
    assert _checkpoints(tmp_path) == []
    assert not left.parent.exists(), "its empty prefix folder stays"

    crashed = tmp_path / "crashed"  # a run killed mid-node: its checkpoint is progress
    crashed.mkdir()
    (crashed / "flow.py").write_text(FLOW)
    env = _env(crashed)
    assert _cli(crashed, {**env, "EF_DIE_AT": "2"}, "run", "flow.py").returncode == -9
    assert _gc(crashed, env)["checkpoints_removed"] == []
    assert len(_checkpoints(crashed)) == 1
