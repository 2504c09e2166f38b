"""The examples run as documented: the quickstart twice, the second run executing nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_second_run_executes_nothing(tmp_path: Path) -> None:
    first = run("quickstart.py", tmp_path)
    assert "8 nodes executed, 0 cached, 0 failed" in first
    r2 = float(re.search(r"R²: ([0-9.]+)", first).group(1))
    assert 0.9 < r2 <= 1.0  # the model really learned the synthetic prices
    second = run("quickstart.py", tmp_path)
    assert "0 nodes executed, 8 cached, 0 failed" in second
    assert first.split("\nrun ")[0] == second.split("\nrun ")[0]  # the same report


def test_quickstart_edit_reruns_only_what_depends_on_it(tmp_path: Path) -> None:
    run("quickstart.py", tmp_path)
    edited = tmp_path / "quickstart.py"
    text = (ROOT / "examples" / "quickstart.py").read_text()
    assert "RIDGE = 1e-3" in text
    edited.write_text(text.replace("RIDGE = 1e-3", "RIDGE = 1e-2"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run([sys.executable, str(edited)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 nodes executed, 5 cached" in done.stdout  # fit, evaluate, report
