"""Rough edges of the everyday CLI loop (issue 10), each through the CLI in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE = """
import os
import time
from etherealfabric import File, Workflow, node


@node
def slow():
    time.sleep(0.5)
    with open("slow-ran", "w") as f:
        f.write("yes")
    return 1


@node
def load(path):
    return open(path).read()


@node
def count(text):
    return len(text.split())


with Workflow("daily") as workflow:
    s = slow()
    c = count(load(File("data.txt")))
"""


def cli(root: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_input_file_fails_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    out = cli(tmp_path, "run", "wf.py", "--json")
    assert out.returncode == 1
    summary = json.loads(out.stdout)
    assert summary["nodes"]["load"] == "failed"
    assert summary["executed"] == 0 and summary["failed"] == 1
    assert not (tmp_path / "slow-ran").exists()  # nothing else started
    assert "node 'load'" in out.stderr and str(tmp_path / "data.txt") in out.stderr


def test_one_line_per_failure_and_one_summary(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    out = cli(tmp_path, "run", "wf.py")
    assert out.returncode == 1
    assert out.stderr.count("load FAILED") == 1
    assert "etherealfabric.run:" not in out.stderr  # no log line repeating the progress
    summaries = [ln for ln in (out.stdout + out.stderr).splitlines() if " failed: " in ln]
    assert len(summaries) == 2  # progress (stderr) and, for scripts, stdout (not a terminal)
    assert len(out.stdout.strip().splitlines()) == 1


def test_run_ids_are_never_cut_in_the_runs_table(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "data.txt").write_text("a b")
    assert cli(tmp_path, "run", "wf.py").returncode == 0
    [run] = json.loads(cli(tmp_path, "runs", "--json").stdout)
    for columns in (50, 80, 200):
        table = cli(tmp_path, "runs", columns=columns)
        assert table.returncode == 0, table.stderr
        assert run["id"] in table.stdout, table.stdout
        assert all(len(line) <= columns for line in table.stdout.splitlines()), table.stdout


def test_explain_shows_what_changed_in_a_file(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    data = tmp_path / "data.txt"
    data.write_text("a b")
    assert cli(tmp_path, "run", "wf.py").returncode == 0
    data.write_text("a b c d e f")
    os.utime(data, (1_700_000_000, 1_700_000_000))
    assert cli(tmp_path, "run", "wf.py").returncode == 0
    runs = json.loads(cli(tmp_path, "runs", "--json").stdout)
    out = cli(tmp_path, "explain", runs[0]["id"], "load")
    assert out.returncode == 0, out.stderr
    assert "3 B" in out.stdout and "11 B" in out.stdout, out.stdout
    assert "2023-11-14" in out.stdout, out.stdout
