"""The real command line in a fresh process, as a user starts it: one runner for every test
that needs it (the ``ef`` fixture of ``conftest.py`` is this one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ef", "ef_home", "ran", "ran_with_values"]


def ef(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m etherealfabric *args`` in ``cwd``: no ``ETHEREALFABRIC_*`` setting (nor
    ``COLUMNS``) from the outside, ``env`` added; stdout and stderr captured as text."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ETHEREALFABRIC_") and k != "COLUMNS"
    }
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=600,
        errors="backslashreplace",  # what a node printed need not be UTF-8
    )  # fmt: skip


def ef_home(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """:func:`ef` in ``tmp_path``, with the home ``tmp_path / "home"``."""
    return ef(tmp_path, *args, ETHEREALFABRIC_HOME=str(tmp_path / "home"))


def ran(cwd: Path, *args: str, **env: str) -> dict[str, Any]:
    """``run *args --json`` through :func:`ef` (``flow.py`` when no argument is given), which
    must succeed: the run's summary."""
    done = ef(cwd, "run", *(args or ("flow.py",)), "--json", **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def ran_with_values(cwd: Path, nodes: tuple[str, ...], *args: str, **env: str) -> dict[str, Any]:
    """:func:`ran`, and each of ``nodes``' value as ``cat`` prints it (an int), by its name."""
    summary = ran(cwd, *args, **env)
    for name in nodes:
        shown = ef(cwd, "cat", summary["run_id"], name, **env)
        assert shown.returncode == 0, shown.stderr
        summary[name] = int(shown.stdout)
    return summary
