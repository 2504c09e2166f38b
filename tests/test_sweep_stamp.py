"""The home's ``.temps-swept`` stamp (journal/_sweeps.py) damaged or replaced: a folder, a
FIFO, a symbolic link in its place. Runs still work, never hang, never touch what a link
points to, and the run after a kill -9 still removes the killed run's temp files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from test_restore_kill import FLOW, KILLED_WRITE, _cli


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    return env


def _stamp(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    first = _cli(tmp_path, _env(tmp_path), "run", "flow.py")
    assert first.returncode == 0, first.stderr
    stamp = tmp_path / "home" / ".temps-swept"
    assert stamp.is_file()
    stamp.unlink()
    return stamp


def test_a_folder_in_place_of_the_stamp_still_sweeps_after_a_kill(tmp_path: Path) -> None:
    """A folder there (fresh, so its time said 'swept just now'): the run that marked the
    killed run interrupted could not remove it, so the dead run's temp files stayed."""
    stamp = _stamp(tmp_path)
    stamp.mkdir()
    env = _env(tmp_path)
    assert _cli(tmp_path, env, "cache", "forget", "produce").returncode == 0  # so it writes
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    temps = tmp_path / "home" / "objects" / ".tmp"
    assert any(temps.iterdir())
    again = _cli(tmp_path, env, "run", "flow.py")
    assert again.returncode == 0, again.stderr
    assert not any(temps.iterdir()), sorted(os.listdir(temps))


def test_a_fifo_in_place_of_the_stamp_does_not_hang_a_run(tmp_path: Path) -> None:
    """Opening the stamp to touch it blocked for ever on a FIFO (no reader)."""
    stamp = _stamp(tmp_path)
    os.mkfifo(stamp)
    old = time.time() - 2 * 3600  # a sweep is due
    os.utime(stamp, (old, old))
    again = _cli(tmp_path, _env(tmp_path), "run", "flow.py")  # (TimeoutExpired: it hung)
    assert again.returncode == 0, again.stderr


def test_a_link_in_place_of_the_stamp_touches_nothing_it_points_to(tmp_path: Path) -> None:
    """The stamp was opened and its time set through a symbolic link: a file it pointed to
    got its time changed, a dangling one's target was created."""
    stamp = _stamp(tmp_path)
    target = tmp_path / "mine.txt"
    target.write_text("user data\n")
    old = time.time() - 3 * 3600
    os.utime(target, (old, old))
    stamp.symlink_to(target)
    assert _cli(tmp_path, _env(tmp_path), "run", "flow.py").returncode == 0
    assert abs(target.stat().st_mtime - old) < 1
    stamp.unlink()
    stamp.symlink_to(tmp_path / "created.txt")
    os.utime(stamp, (old, old), follow_symlinks=False)
    assert _cli(tmp_path, _env(tmp_path), "run", "flow.py").returncode == 0
    assert not (tmp_path / "created.txt").exists()
