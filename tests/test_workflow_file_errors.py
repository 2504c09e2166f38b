"""Workflow files the CLI cannot use, as a user meets them (fresh ``etherealfabric`` processes).

- A file that calls ``sys.exit()`` (or raises ``SystemExit``) at its top level ended the
  command with that code and no word: ``sys.exit()`` was a silent exit 0, as if the run had
  succeeded. It is now exit 2 with one line naming the file and line.
- A mistyped file name (``run pipline.py`` next to ``pipeline.py``) said only that there was no
  such file: it now suggests the close match among the folder's ``.py`` files.
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


def test_a_mistyped_workflow_file_suggests_the_close_one(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(FLOW.format(exit=""))
    (tmp_path / "helpers.py").write_text("")
    done = _ef(tmp_path, "run", "pipline.py")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: no such workflow file: pipline.py; did you mean pipeline.py? "
        "(expected FILE.py or FILE.py:NAME)"
    ]
    # in a folder, with a workflow name: the suggestion keeps both
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "train.py").write_text(FLOW.format(exit=""))
    done = _ef(tmp_path, "plan", "flows/trian.py:wf")
    assert done.returncode == 2, done.stderr
    assert "no such workflow file: flows/trian.py; did you mean flows/train.py:wf?" in (done.stderr)
    # nothing close: no suggestion
    done = _ef(tmp_path, "run", "zzz.py")
    assert done.returncode == 2
    assert "did you mean" not in done.stderr and "no such workflow file: zzz.py" in done.stderr
