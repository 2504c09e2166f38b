"""examples/per_file.py: a mapped node per CSV file; one new or edited file re-runs exactly
one child and the aggregation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(folder: Path, *args: str) -> tuple[str, str]:
    """Run the example (its copy in ``folder``, so its data and home are made there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, str(folder / "per_file.py"), "--days", "200", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return lines[0], lines[-1]


def test_per_file_pipeline_reruns_one_child_per_changed_file(tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples" / "per_file.py", tmp_path)
    assert run(tmp_path) == (
        "clean: 200 files: 200 ran, 0 cached",
        "3 nodes executed, 0 cached, 0 failed",
    )
    assert len(list((tmp_path / "data" / "daily").glob("*.csv"))) == 200
    assert run(tmp_path) == (
        "clean: 200 files: 0 ran, 200 cached",
        "0 nodes executed, 3 cached, 0 failed",
    )
    # a new file: the listing, exactly one child (day 200), the aggregation
    assert run(tmp_path, "--add-day") == (
        "clean: 201 files: 1 ran, 200 cached",
        "3 nodes executed, 0 cached, 0 failed",
    )
    # an edited file: keyed by content, so its child runs again (and only it)
    assert run(tmp_path, "--touch", "7")[0] == "clean: 201 files: 1 ran, 200 cached"
    shown = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "show", _last_run(tmp_path), "clean", "--items",
         "--json"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    items = json.loads(shown.stdout)
    ran = [(r["node"], r["status"]) for r in items["items"] if r["status"] != "cached"]
    assert ran == [("clean[day_007.csv]", "succeeded")]
    assert items["map"]["cached"] == 200
    cached = [r["node"] for r in items["items"] if r["status"] == "cached"]
    assert len(cached) == 200 and "clean[day_200.csv]" in cached  # every child is listed


def _last_run(folder: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "runs", "--limit", "1", "--json"],
        cwd=folder, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return str(json.loads(done.stdout)[0]["id"])


def test_the_command_line_runs_it_from_any_folder_writing_its_data_beside_it(
    tmp_path: Path,
) -> None:
    """`etherealfabric run examples/per_file.py:build` from another folder: the files are made
    under the example's folder (its root) on the first run, as with `python per_file.py`; the
    current folder gets only the home."""
    example, elsewhere = tmp_path / "examples", tmp_path / "elsewhere"
    example.mkdir()
    elsewhere.mkdir()
    shutil.copy(ROOT / "examples" / "per_file.py", example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "../examples/per_file.py:build", "--json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert len(list((example / "data" / "daily").glob("*.csv"))) == 300
    assert sorted(p.name for p in elsewhere.iterdir()) == [".etherealfabric"]


def test_killed_while_making_its_files_the_next_run_makes_them_all(tmp_path: Path) -> None:
    """SIGKILL while the example writes its CSV files (a real process, killed at growing
    delays until one dies with files half made): the next run makes all of them again and
    adds up every day (it went on with the few files made before the kill)."""
    import signal
    import time

    shutil.copy(ROOT / "examples" / "per_file.py", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    daily, part = tmp_path / "data" / "daily", tmp_path / "data" / "daily.part"
    for delay in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
        child = subprocess.Popen(
            [sys.executable, str(tmp_path / "per_file.py"), "--days", "200"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (part.exists() or daily.exists()) and time.monotonic() < deadline:
            time.sleep(0.002)  # the files are being made (python's start-up took this long)
        time.sleep(delay / 50)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        if len(list(tmp_path.glob("data/*/*.csv"))) < 200:
            break  # killed with the files half made: what this test is about
        shutil.rmtree(tmp_path / "data")
        shutil.rmtree(tmp_path / ".etherealfabric", ignore_errors=True)
    assert len(list(tmp_path.glob("data/*/*.csv"))) < 200, "never killed while files were made"
    assert run(tmp_path) == (
        "clean: 200 files: 200 ran, 0 cached",
        "3 nodes executed, 0 cached, 0 failed",
    )
    assert len(list(daily.glob("*.csv"))) == 200 and not part.exists()
