"""A run whose process died ends when it was last seen alive, not when a command noticed.

``mark_interrupted`` (any CLI command) gave a killed run the moment it was marked as its end,
so its duration grew with the wait before the next command; the web UI, which never marks,
showed no duration at all. The journal knows better: the run's latest node row or event, or
the last renewal of a lease it held. A real run killed with SIGKILL in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from etherealfabric.journal import Journal
from etherealfabric.journal._browse import shown

SCRIPT = """
import sys, time
from etherealfabric import Workflow, node

@node
def quick():
    return 1

@node
def slow(x):
    open(sys.argv[1], "w").close()
    time.sleep(120)
    return x

with Workflow("dies", home=sys.argv[2]) as wf:
    slow(quick())
wf.execute()
"""


def test_a_killed_run_ends_when_it_was_last_seen(tmp_path: Path) -> None:
    script, mark, home = tmp_path / "flow.py", tmp_path / "started", tmp_path / "home"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, str(script), str(mark), str(home)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "slow never started"
            time.sleep(0.05)
        time.sleep(1.0)  # slow's running row is committed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = time.time()
    time.sleep(2.5)  # a command that looks later must not stretch the run
    with Journal(home / "journal.db", read_only=True) as journal:
        [row] = journal.list_runs()
        seen = shown(row, journal)  # (the UI's view: nothing written)
    assert seen["status"] == "interrupted"
    assert seen["finished_at"] is not None and seen["finished_at"] <= killed_at
    with Journal(home / "journal.db") as journal:
        assert journal.mark_interrupted() == [row["id"]]
        [marked] = journal.list_runs()
    assert marked["finished_at"] == seen["finished_at"]
    assert marked["started_at"] <= marked["finished_at"] <= killed_at
