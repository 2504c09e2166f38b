"""On a full disk the commands that show runs still read the journal (read-only, with a
warning): SQLite cannot create the ``-shm`` file beside a journal closed cleanly, and every one
of them said "cannot open the journal" so the failed run could not be looked at. A real
journal; the full disk is a real file-size limit (RLIMIT_FSIZE 0: every file write that grows
a file fails with EFBIG, as on a full disk), in real subprocesses, no root needed."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
from etherealfabric import Workflow, node

@node
def load():
    return 41

@node
def fit(x):
    raise ValueError(f"diverged at {x}")

with Workflow("full") as wf:
    fit(load())
"""


def _ef(cwd: Path, *args: str, full: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    env["COLUMNS"] = "200"  # (else the width of whatever terminal the tests run from)

    def no_room() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
        preexec_fn=no_room if full else None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "shows"),
    [
        (["runs"], "failed"),
        (["show", "latest"], "ValueError: diverged at 41"),
        (["logs", "latest", "fit"], "diverged at 41"),
        (["explain", "latest", "fit"], "diverged at 41"),
        (["cat", "latest", "load"], "41"),
    ],
)
def test_reading_commands_work_on_a_full_disk(
    tmp_path: Path, command: list[str], shows: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    assert _ef(tmp_path, "run", "flow.py").returncode == 1
    journal = tmp_path / ".etherealfabric" / "journal.db"
    assert not journal.with_name("journal.db-wal").exists()  # closed cleanly
    before = journal.read_bytes()

    shown = _ef(tmp_path, *command, full=True)
    assert shown.returncode == 0, shown.stderr
    assert shows in shown.stdout, shown.stdout
    if command[0] != "cat":  # (cat opens the run as Python's open_run does: read-only)
        assert "showing it read-only" in shown.stderr, shown.stderr
    assert journal.read_bytes() == before  # nothing written

    # with room again, the home is used as before
    again = _ef(tmp_path, "run", "flow.py")
    assert again.returncode == 1, again.stderr
    assert "ValueError: diverged at 41" in again.stderr


def test_a_full_disk_still_fails_a_writing_command_naming_the_journal(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    assert _ef(tmp_path, "run", "flow.py").returncode == 1
    gc = _ef(tmp_path, "cache", "gc", full=True)
    assert gc.returncode == 2, gc.stderr
    assert "journal.db" in gc.stderr and "disk is not full" in gc.stderr, gc.stderr
