"""Shared fixtures: every test runs in its own working folder with its own home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cli_runner

# the contract suites the tests subclass: pytest's detailed assertion messages inside them too
pytest.register_assert_rewrite("etherealfabric.testing")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Any]:
    """A project folder whose modules a code-reach test writes, loads and edits
    (``test_code_reach.Project``), keys holding every package's version."""
    from etherealfabric.hashing._packages import set_package_versions
    from test_code_reach import Project

    made = Project(tmp_path / "project")
    made.root.mkdir()
    set_package_versions("full")
    yield made
    made.forget()
    set_package_versions(None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a fresh folder, with no ETHEREALFABRIC_* settings from the outside."""
    for var in list(os.environ):
        if var.startswith("ETHEREALFABRIC_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The default home of the test's working folder."""
    return tmp_path / ".etherealfabric"


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def ef() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real command line in a fresh process: ``ef(cwd, "run", "flow.py", NAME=value)``
    (extra ``ETHEREALFABRIC_*`` settings as keywords; none from the outside)."""
    return cli_runner.ef


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A short folder of the test's own for a run's ``TMPDIR`` (a process pool's or the
    forkserver's sockets go there: a pytest folder is too long a path for one)."""
    folder = Path(tempfile.mkdtemp(prefix="ef-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
