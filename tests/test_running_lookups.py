"""Looking at a run while another process runs it: a node it has not reached yet is "no node
... yet" with the nodes so far and how to watch the run (``show``, ``logs``, ``cat``, ``show --items``),
not a node the run does not have, nor "not a map"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

FLOW = """
import os, time
from pathlib import Path
from etherealfabric import Workflow, node

@node
def numbers(n):
    return list(range(n))

@node
def wait_here(xs):
    Path(os.environ["EF_TEST_STARTED"]).touch()
    release = Path(os.environ["EF_TEST_RELEASE"])
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sum(xs)

@node
def square(x):
    return x * x

@node
def later(total, squares):
    return total + sum(squares)

with Workflow("running") as wf:
    xs = numbers(5)
    later(wait_here(xs), square.map(numbers(3)))
"""


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_node_a_running_run_has_not_reached_is_named_as_not_started_yet(tmp_path: Path) -> None:
    home, started, release = tmp_path / "home", tmp_path / "started", tmp_path / "release"
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(EF_TEST_STARTED=str(started), EF_TEST_RELEASE=str(release))
    run = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--home", str(home)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not started.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), run.communicate()
        for args in (
            ("show", "latest", "later"),
            ("logs", "latest", "later"),
            ("cat", "latest", "later"),
        ):
            shown = _cli(home, *args)
            assert shown.returncode == 2, shown
            err = shown.stderr.strip()
            assert "has no node 'later' yet; its nodes so far: numbers" in err, err
            assert "still going" in err and "etherealfabric status" in err, err
            assert len(err.splitlines()) == 1, err
        items = _cli(home, "show", "latest", "later", "--items")
        assert items.returncode == 2 and "has no node 'later' yet" in items.stderr, items
    finally:
        release.touch()
        _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert _cli(home, "show", "latest", "later").returncode == 0
    ended = _cli(home, "show", "latest", "nope")
    assert ended.returncode == 2 and "has no node 'nope'; its nodes: later" in ended.stderr
    assert "yet" not in ended.stderr
