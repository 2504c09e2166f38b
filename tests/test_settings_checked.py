"""Which command checks which ``ETHEREALFABRIC_*`` variable (docs/cli.md, exit codes).

The general settings (home, store, workers, log level, durability, store mode, local cache
size, store timeout) are resolved, hence checked, by every command: a bad value is exit 2
naming the variable. ``ETHEREALFABRIC_EXECUTION_BACKEND`` is checked by ``run`` only, the one
command that picks a backend (``resume`` uses the backend its run recorded; the others run no
node): elsewhere its value is not used, so it is not an error. Real CLI processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOW = textwrap.dedent(
    """
    import os

    from etherealfabric import Workflow, node


    @node
    def one() -> int:
        if os.environ.get("EF_FAIL"):
            raise ValueError("failing on purpose")
        return 1


    with Workflow("checked") as workflow:
        one()
    """
)


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ETHEREALFABRIC_", "EF_"))}
    base.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    failed = _cli(tmp_path, "run", "flow.py", EF_FAIL="1")
    assert failed.returncode == 1, failed.stderr
    return tmp_path


@pytest.mark.parametrize("command", [["runs"], ["status"], ["plan", "flow.py"]])
def test_a_bad_general_setting_is_exit_2_for_every_command(home: Path, command: list[str]) -> None:
    got = _cli(home, *command, ETHEREALFABRIC_STORE_TIMEOUT="soon")
    assert got.returncode == 2, got.stdout + got.stderr
    assert "ETHEREALFABRIC_STORE_TIMEOUT" in got.stderr


def test_an_unknown_backend_in_the_variable_is_exit_2_for_run_only(home: Path) -> None:
    bad = {"ETHEREALFABRIC_EXECUTION_BACKEND": "dusk"}
    ran = _cli(home, "run", "flow.py", **bad)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "ETHEREALFABRIC_EXECUTION_BACKEND" in ran.stderr and "dask" in ran.stderr
    for command in (["runs"], ["status"], ["plan", "flow.py"]):  # no backend used: not checked
        got = _cli(home, *command, **bad)
        assert got.returncode in (0, 1), (command, got.stderr)
        assert "ETHEREALFABRIC_EXECUTION_BACKEND" not in got.stderr
    [row] = [r for r in json.loads(_cli(home, "runs", "--json").stdout) if r["status"] == "failed"]
    resumed = _cli(home, "resume", row["id"], **bad)  # the backend its run recorded: local
    assert resumed.returncode == 0, resumed.stderr


def test_an_unknown_backend_given_to_the_workflow_fails_as_the_file_is_imported(
    tmp_path: Path,
) -> None:
    """`Workflow(backend="proceses")` in a workflow file: exit 2 with one line that names the
    argument, the value, the closest backend and every known one (before: accepted when the
    Workflow was made; only `execute()` said so)."""
    (tmp_path / "bad.py").write_text(
        FLOW.replace('Workflow("checked")', 'Workflow("checked", backend="proceses")')
    )
    for command in ("run", "plan"):
        got = _cli(tmp_path, command, "bad.py")
        assert got.returncode == 2, got.stdout + got.stderr
        [line] = got.stderr.strip().splitlines()
        assert "Workflow(backend=...)" in line and "'proceses'" in line, line
        assert "did you mean 'processes'?" in line, line
        assert "celery, dask, local, processes, spark, threads" in line, line
        assert "Traceback" not in got.stderr
