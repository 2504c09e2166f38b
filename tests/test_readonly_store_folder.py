"""A shared folder that refuses writes, in mode read-write, degrades like a bucket that does:
the run goes on as in mode read-only (one warning naming the store and the setting), its results
stay in the home. A real read-only bind mount (as root) or a folder without write permission."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PIPELINE = """
from etherealfabric import Workflow, node


@node
def load(n):
    return list(range(n))


@node
def total(xs):
    return sum(xs)


with Workflow("rostore") as workflow:
    t = total(load(10))
"""


def cli(root: Path, home: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_STORE"] = str(store)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "--home", str(home)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An empty shared folder that this process cannot write."""
    source = tmp_path / "store-src"
    source.mkdir()
    if os.geteuid() != 0:
        source.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield source
        finally:
            source.chmod(stat.S_IRWXU)
        return
    view = tmp_path / "store"
    view.mkdir()
    ok = shutil.which("mount") is not None
    for command in (
        ["mount", "--bind", str(source), str(view)],
        ["mount", "-o", "remount,bind,ro", str(view)],
    ):
        if ok and subprocess.run(command, capture_output=True).returncode != 0:
            subprocess.run(["umount", str(view)], capture_output=True)
            ok = False
    if not ok:
        pytest.skip("running as root without permission to mount: cannot make a folder read-only")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_shared_folder_runs_as_mode_read_only(
    tmp_path: Path, read_only_folder: Path
) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    home = tmp_path / "home"
    out = cli(tmp_path, home, read_only_folder, "run", "wf.py")
    assert out.returncode == 0, out.stderr
    said = [
        line for line in out.stderr.splitlines() if "ETHEREALFABRIC_STORE_MODE=read-only" in line
    ]
    assert len(said) == 1, out.stderr  # warned once, naming the store and the setting
    assert str(read_only_folder) in said[0]
    assert "Traceback" not in out.stderr
    runs = cli(tmp_path, home, read_only_folder, "runs", "--json")
    run_id = json.loads(runs.stdout)[0]["id"]
    cat = cli(tmp_path, home, read_only_folder, "cat", run_id, "total")
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout.strip() == "45"  # the result stayed in the home
    assert os.listdir(read_only_folder) == []
    again = cli(tmp_path, home, read_only_folder, "run", "wf.py")  # a hit from the home
    assert again.returncode == 0, again.stderr
