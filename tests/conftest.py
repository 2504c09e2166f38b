"""Shared fixtures: every test runs in its own working folder with its own home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import cli_runner

# the contract suites the tests subclass: pytest's detailed assertion messages inside them too
pytest.register_assert_rewrite("etherealfabric.testing")

ROOT = Path(__file__).resolve().parent.parent


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
