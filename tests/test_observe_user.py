"""What a user sees of a run, through the real command line: tracebacks of retried nodes,
subscribers that fail, mistyped node names, import-time prints next to JSON, log levels,
retry events on threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ef(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh process, in ``cwd``, with ``env`` added (this
    checkout's code first, whatever the installed one)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    path = os.pathsep.join(p for p in (str(ROOT / "src"), clean.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", "PYTHONPATH": path, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


RETRIED = """
from etherealfabric import Workflow, node

def helper(x):
    raise ValueError(f"bad value {x}")

@node(retries=2)
def flaky(n):
    return helper(n)

with Workflow("flaky") as wf:
    flaky(3)
"""


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_a_retried_node_s_traceback_starts_in_the_user_s_code(tmp_path: Path, backend: str) -> None:
    """The last attempt's error is re-raised by tenacity from its future: its traceback, as
    ``logs`` shows it and ``wf.execute()`` raises it, starts in the node, like the others."""
    _write(tmp_path, "flow.py", RETRIED)
    run = _ef(tmp_path, "run", "flow.py", "--backend", backend)
    assert run.returncode == 1, run.stderr
    logs = _ef(tmp_path, "logs", "latest", "flaky")
    assert logs.returncode == 0, logs.stderr
    tracebacks = logs.stdout.split("-- traceback --\n")[1:]
    assert len(tracebacks) == 3
    for text in tracebacks:
        frames = [line for line in text.splitlines() if line.startswith("  File ")]
        assert "in flaky" in frames[0], text
        assert "tenacity" not in text and "concurrent" not in text and "_worker" not in text

    script = _write(
        tmp_path,
        "api.py",
        RETRIED
        + textwrap.dedent(
            """
            from etherealfabric import RunFailedError
            try:
                wf.execute()
            except RunFailedError as exc:
                print(exc.__cause__.traceback)
            """
        ),
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    api = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    frames = [line for line in api.stdout.splitlines() if line.startswith("  File ")]
    assert frames and "in flaky" in frames[0], api.stdout + api.stderr
