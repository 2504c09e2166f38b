"""The processes backend with a long TMPDIR (a deep CI workspace, a per-job folder).

Its forkserver listens on a Unix socket under multiprocessing's temp folder, which is made
under TMPDIR, and a socket path may not be longer than 104 to 108 bytes: every node failed with
"OSError: AF_UNIX path too long". The backend now makes that folder under /tmp then
(``backends/_local._short_socket_folder``), and it goes when the run ends.
"""

from __future__ import annotations

from pathlib import Path

from cli_runner import ef

FLOW = """
from etherealfabric import Workflow, node

@node
def double(x):
    return 2 * x

with Workflow("long-tmpdir") as wf:
    double(21)
"""


def test_the_processes_backend_runs_with_a_tmpdir_too_long_for_a_socket(tmp_path: Path) -> None:
    long = tmp_path / ("t" * 60) / ("m" * 60)
    long.mkdir(parents=True)
    (tmp_path / "flow.py").write_text(FLOW)
    home, temp = str(tmp_path / "home"), str(long)
    done = ef(
        tmp_path, "run", "flow.py", "--backend", "processes", ETHEREALFABRIC_HOME=home, TMPDIR=temp
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 executed" in done.stderr, done.stderr
    shown = ef(tmp_path, "cat", "latest", "double", ETHEREALFABRIC_HOME=home, TMPDIR=temp)
    assert shown.stdout.strip() == "42", shown
