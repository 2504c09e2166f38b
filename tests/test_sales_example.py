"""examples/sales_report.py: a pandas + scikit-learn pipeline whose results are files.

It runs, then runs again after ``rm -rf out``: nothing executes, and every output file is back
byte for byte. The second run starts in another folder: paths are relative to the workflow's
root (the script's folder), not to the current one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("pyarrow")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sales_report.py"


def run(script: Path, cwd: Path, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_outputs_come_back_byte_identical_after_rm_rf_and_nothing_runs(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    script = project / "sales_report.py"
    shutil.copy(EXAMPLE, script)
    home = tmp_path / "home"
    first = run(script, project, home)
    assert "6 nodes executed, 0 cached, 0 failed" in first
    written = files(project / "out")
    assert sorted(written) == [
        "dataset/region=east/part-0.parquet",
        "dataset/region=north/part-0.parquet",
        "dataset/region=south/part-0.parquet",
        "dataset/region=west/part-0.parquet",
        "model/features.json",
        "model/model.joblib",
        "report.html",
    ]
    assert b"Revenue by month and region" in written["report.html"]
    shutil.rmtree(project / "out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = run(script, elsewhere, home)
    assert "0 nodes executed, 6 cached, 0 failed" in second
    assert files(project / "out") == written
    assert not (elsewhere / "out").exists()
    assert first.split("\nrun ")[0] == second.split("\nrun ")[0]  # the same summary
