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


def _executed(root: Path, *args: str) -> dict[str, str]:
    out = cli(root, "run", "wf.py", "--json", *args)
    assert out.returncode == 0, out.stderr
    return {n: s for n, s in json.loads(out.stdout)["nodes"].items()}


def test_force_reruns_a_node_and_what_follows_it(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "data.txt").write_text("a b")
    assert set(_executed(tmp_path).values()) == {"succeeded"}
    assert set(_executed(tmp_path).values()) == {"cached"}
    forced = _executed(tmp_path, "--force", "load")
    assert forced == {"slow": "cached", "load": "succeeded", "count": "succeeded"}
    for name in ("load", "count"):  # explain says it was forced, not "missing or corrupt"
        why = json.loads(cli(tmp_path, "explain", "latest", name, "--json").stdout)
        assert why["reason"] == "forced" and "--force" in why["detail"], why
    assert _executed(tmp_path, "--force", "s*")["slow"] == "succeeded"
    runs_before = json.loads(cli(tmp_path, "runs", "--json").stdout)
    bad = cli(tmp_path, "run", "wf.py", "--force", "lod")
    assert bad.returncode == 2
    assert "names no node" in bad.stderr and "'load'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # the typo recorded no run: no ghost row, found 'interrupted' later and shown as the latest
    assert json.loads(cli(tmp_path, "runs", "--json").stdout) == runs_before
    status = cli(tmp_path, "status")
    assert status.returncode == 0, status.stdout + status.stderr


def test_cache_forget_makes_a_node_run_again(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "data.txt").write_text("a b")
    _executed(tmp_path)
    out = cli(tmp_path, "cache", "forget", "load", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["forgotten"] == 1
    again = _executed(tmp_path)
    assert again["load"] == "succeeded" and again["slow"] == "cached"
    assert again["count"] == "cached"  # load made the same bytes: early cutoff


FRAMES = """
import pandas as pd
from etherealfabric import Workflow, node


@node(outputs=["frame", "rows"])
def table(n):
    frame = pd.DataFrame({"x": range(n), "y": [f"v{i}" for i in range(n)]})
    return frame, len(frame)


with Workflow("frames") as workflow:
    t = table(3)
"""


def test_cat_prints_and_writes_a_past_result(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(FRAMES)
    out = cli(tmp_path, "run", "wf.py", "--json")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    rows = cli(tmp_path, "cat", run_id[:15], "table", "rows")
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.strip() == "3"
    table = cli(tmp_path, "cat", run_id, "table", "frame")
    assert "v2" in table.stdout and "x" in table.stdout
    as_json = cli(tmp_path, "cat", run_id, "table", "frame", "--json")
    assert json.loads(as_json.stdout)[2] == {"x": 2, "y": "v2"}
    written = cli(tmp_path, "cat", run_id, "table", "frame", "-o", "out.csv")
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == ",x,y"
    ambiguous = cli(tmp_path, "cat", run_id, "table")
    assert ambiguous.returncode == 2 and "frame, rows" in ambiguous.stderr
    missing = cli(tmp_path, "cat", run_id, "nope")
    assert missing.returncode == 2 and "its nodes: table" in missing.stderr


def test_open_run_reads_a_past_run_from_python(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(FRAMES)
    out = cli(tmp_path, "run", "wf.py", "--json")
    run_id = json.loads(out.stdout)["run_id"]
    script = (
        "import etherealfabric as ef\n"
        f"r = ef.open_run({run_id!r}, home='.etherealfabric')\n"
        "print(r.status, r['table']['rows'], list(r['table']['frame']['y']))\n"
    )
    check = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "succeeded 3 ['v0', 'v1', 'v2']"


LISTING = """
from pathlib import Path
from etherealfabric import Directory, File, Workflow, node, root_path


@node
def listing(folder: Directory):
    return [File(str(p)) for p in sorted(Path(folder).glob("*.csv"))]


with Workflow("listing") as workflow:
    listing(Directory(root_path("data")))
"""


def test_cat_of_file_outputs_names_them_in_the_run_s_folder_from_anywhere(
    tmp_path: Path,
) -> None:
    """A File in a result is root-relative: opened from another folder it is still the file of
    the run's project, not a path under wherever ``cat`` is typed."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "a.csv").write_text("x\n")
    (project / "wf.py").write_text(LISTING)
    home = str(tmp_path / "home")
    out = cli(project, "run", "wf.py", "--json", "--home", home)
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    expected = f"[File({str(project / 'data' / 'a.csv')!r})]"
    for where in (project, tmp_path):
        shown = cli(where, "cat", run_id, "listing", "--home", home)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == expected
