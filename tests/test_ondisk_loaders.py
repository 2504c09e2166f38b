"""A module an import hook compiled its own way (pytest rewrites the asserts of test modules) is
never taken for one edited since it was loaded (hashing/_ondisk.py): its bytecode does not match
the file's, edited or not, and a test suite run right after a checkout failed every node defined
in a test module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEST_MODULE = """
from etherealfabric import Workflow, node

@node
def double(x):
    assert x > 0, "positive"  # rewritten by pytest: other bytecode than the file compiles to
    return 2 * x

def test_double(tmp_path):
    with Workflow("rewritten", home=str(tmp_path / "home")) as wf:
        out = double(21)
    assert wf.execute()[out] == 42
"""


def test_a_test_module_written_just_before_pytest_runs_it_is_not_an_edited_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_fresh.py").write_text(TEST_MODULE)  # modified as the process starts
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "test_fresh.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
