"""A checkpoint saved after its key's last success (a later execution, killed) against a
damaged or edited journal: a success row whose finished_at is text, a blob, or in the future.
A run resumes it and `cache gc` keeps it; neither crashes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from test_checkpoint_orphans import FLOW, _checkpoints, _cli, _env, _gc, _starts


def _killed_after_a_success(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "flow.py").write_text(FLOW)
    env = _env(tmp_path)
    assert _cli(tmp_path, env, "run", "flow.py").returncode == 0
    assert _cli(tmp_path, env, "cache", "forget", "train").returncode == 0
    assert _cli(tmp_path, {**env, "EF_DIE_AT": "2"}, "run", "flow.py").returncode == -9
    assert len(_checkpoints(tmp_path)) == 1
    return env


def _set_finished(tmp_path: Path, value: object) -> None:
    with sqlite3.connect(tmp_path / "home" / "journal.db") as db:
        db.execute("UPDATE node_runs SET finished_at = ? WHERE status = 'succeeded'", (value,))


@pytest.mark.parametrize("value", ["abc", b"\x00", "", "1e999", 1e300])
def test_a_damaged_success_time_neither_crashes_nor_drops_the_checkpoint(
    tmp_path: Path, value: object
) -> None:
    """Text finished_at crashed `cache gc` (a ValueError traceback) and failed the node in a
    run (the check for finished checkpoints reads it before nodes run); one in the future (or
    infinite) made gc delete the checkpoint a resume needs, as 'saved before the success'."""
    env = _killed_after_a_success(tmp_path)
    _set_finished(tmp_path, value)
    gc = _cli(tmp_path, env, "cache", "gc", "--older-than", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["checkpoints_removed"] == []
    assert len(_checkpoints(tmp_path)) == 1
    if isinstance(value, float):  # a success time in the future: no proof either way
        return
    resumed = _cli(tmp_path, env, "run", "flow.py")
    assert resumed.returncode == 0, resumed.stderr
    assert _starts(resumed.stdout) == [2]
    assert _gc(tmp_path, env)["checkpoints_removed"] == []


@pytest.mark.parametrize(("expires", "acquired"), [("zzz", 0.0), (b"\x00", "?"), ("nan", 0.0)])
def test_a_damaged_lease_row_neither_crashes_gc_nor_a_run(
    tmp_path: Path, expires: object, acquired: object
) -> None:
    """A lease row whose expires_at is text or a blob made every lease check raise TypeError
    ('<' between str and float): `cache gc` and every run of the home crashed. Such a row is
    judged by its acquired_at, or taken as expired."""
    env = _killed_after_a_success(tmp_path)
    with sqlite3.connect(tmp_path / "home" / "journal.db") as db:
        db.execute(
            "INSERT INTO leases (key, node, run_id, host, pid, acquired_at, pid_start, "
            "expires_at) VALUES ('k', 'n', 'r', 'elsewhere', 1, ?, NULL, ?)",
            (acquired, expires),
        )
    gc = _cli(tmp_path, env, "cache", "gc", "--older-than", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    assert len(_checkpoints(tmp_path)) == 1
    resumed = _cli(tmp_path, env, "run", "flow.py")
    assert resumed.returncode == 0, resumed.stderr
    assert _starts(resumed.stdout) == [2]
