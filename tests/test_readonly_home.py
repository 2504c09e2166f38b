"""A read-only home (issue 12.7): reading commands work, ``run`` says the home is read-only.

The home is made read-only for real: a read-only bind mount when the tests run as root (root
ignores file permissions), the permission bits otherwise. No message may advise moving a journal
aside that is not damaged (it holds the cache index and the small outputs).
"""

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


with Workflow("ro") as workflow:
    t = total(load(10))
"""


def cli(root: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "--home", str(home)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _mount_read_only(source: Path, target: Path) -> bool:
    target.mkdir()
    for command in (
        ["mount", "--bind", str(source), str(target)],
        ["mount", "-o", "remount,bind,ro", str(target)],
    ):
        if subprocess.run(command, capture_output=True).returncode != 0:
            subprocess.run(["umount", str(target)], capture_output=True)
            return False
    return True


@pytest.fixture
def read_only_home(tmp_path: Path) -> Iterator[Path]:
    """A home with one finished run, then made read-only (yielded: its read-only path)."""
    (tmp_path / "wf.py").write_text(PIPELINE)
    writable = tmp_path / "home"
    out = cli(tmp_path, writable, "run", "wf.py")
    assert out.returncode == 0, out.stderr
    if os.geteuid() == 0:
        view = tmp_path / "ro-home"
        if not shutil.which("mount") or not _mount_read_only(writable, view):
            pytest.skip("running as root without permission to mount: cannot make a home read-only")
        try:
            yield view
        finally:
            subprocess.run(["umount", str(view)], check=True)
        return
    modes = {p: p.stat().st_mode for p in [writable, *writable.rglob("*")]}
    for path in modes:
        path.chmod(modes[path] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield writable
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_reading_commands_work_on_a_read_only_home(tmp_path: Path, read_only_home: Path) -> None:
    home = read_only_home
    runs = cli(tmp_path, home, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    [run] = json.loads(runs.stdout)
    assert run["status"] == "succeeded"
    show = cli(tmp_path, home, "show", run["id"])
    assert show.returncode == 0, show.stderr
    assert "total" in show.stdout
    explain = cli(tmp_path, home, "explain", run["id"], "total")
    assert explain.returncode == 0, explain.stderr
    plan = cli(tmp_path, home, "plan", "wf.py", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["to_run"] == []  # it still sees the cache
    verify = cli(tmp_path, home, "cache", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for out in (runs, show, explain, plan, verify):
        assert "move it aside" not in out.stdout + out.stderr


def test_run_on_a_read_only_home_says_so_plainly(tmp_path: Path, read_only_home: Path) -> None:
    before = sorted((p.name, p.stat().st_size) for p in read_only_home.rglob("*") if p.is_file())
    out = cli(tmp_path, read_only_home, "run", "wf.py")
    assert out.returncode == 2, out.stderr
    assert "read-only" in out.stderr
    assert "move it aside" not in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    after = sorted((p.name, p.stat().st_size) for p in read_only_home.rglob("*") if p.is_file())
    assert after == before


SLOW = """
import time
from etherealfabric import Workflow, node


@node
def slow():
    time.sleep(120)
    return 1


with Workflow("slow") as workflow:
    slow()
"""


def test_a_killed_run_on_a_read_only_home_is_shown_interrupted(tmp_path: Path) -> None:
    """The journal cannot be marked, so the views say what ``mark_interrupted`` would: the
    run is ``interrupted`` (``status`` exits 1) and ``resume`` does not say to wait for it."""
    import signal
    import time

    (tmp_path / "slow.py").write_text(SLOW)
    writable = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    running = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "slow.py", "--home", str(writable)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            out = cli(tmp_path, writable, "status")
            if "running: slow" in out.stdout:
                break
            assert time.monotonic() < deadline, out.stdout + out.stderr
            time.sleep(0.2)
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()
    if os.geteuid() == 0:
        home = tmp_path / "ro-home"
        if not shutil.which("mount") or not _mount_read_only(writable, home):
            pytest.skip("running as root without permission to mount: cannot make a home read-only")
    else:
        home = writable
        for path in [writable, *writable.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        runs = cli(tmp_path, home, "runs", "--json")
        assert runs.returncode == 0, runs.stderr
        assert [r["status"] for r in json.loads(runs.stdout)] == ["interrupted"]
        status = cli(tmp_path, home, "status")
        assert status.returncode == 1, status.stdout + status.stderr
        assert "interrupted after" in status.stdout and "running:" not in status.stdout
        assert "1 interrupted" in status.stdout
        resume = cli(tmp_path, home, "resume", "latest")
        assert resume.returncode == 2
        assert "still running" not in resume.stderr and "read-only" in resume.stderr
        assert "Traceback" not in resume.stderr
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(home)], check=True)
        else:
            for path in [writable, *writable.rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
