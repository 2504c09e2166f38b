"""Workflow files the CLI cannot use, as a user meets them (fresh ``etherealfabric`` processes).

- A file that calls ``sys.exit()`` (or raises ``SystemExit``) at its top level ended the
  command with that code and no word: ``sys.exit()`` was a silent exit 0, as if the run had
  succeeded. It is now exit 2 with one line naming the file and line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
import sys
from etherealfabric import Workflow, node

@node
def one():
    return 1

with Workflow("exits") as wf:
    one()

{exit}
"""


def _ef(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(cwd / "home")
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("exit", "shown"),
    [
        ("sys.exit()", "sys.exit()"),
        ("sys.exit(0)", "sys.exit(0)"),
        ("sys.exit(3)", "sys.exit(3)"),
        ("raise SystemExit('no config')", "sys.exit('no config')"),
    ],
)
def test_a_workflow_file_that_exits_while_imported_is_exit_2_naming_it(
    tmp_path: Path, exit: str, shown: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW.format(exit=exit))
    done = _ef(tmp_path, "run", "flow.py")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: flow.py: importing it called {shown} (at flow.py:12)")
    assert 'if __name__ == "__main__":' in lines[0]
    assert not (tmp_path / "home").exists() or "exits" not in _ef(tmp_path, "runs").stdout


def test_a_workflow_factory_that_exits_is_exit_2_too(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        "import sys\n\ndef make():\n    sys.exit('which workflow?')\n"
    )
    done = _ef(tmp_path, "plan", "flow.py:make")
    assert done.returncode == 2, done.stderr
    assert "error: flow.py:make() called sys.exit('which workflow?') (at flow.py:4)" in (
        done.stderr
    )
