"""A ``max_workers`` far above what runs at once: the processes backend started one feeding
thread per slot up front, so ETHEREALFABRIC_MAX_WORKERS=100000 spent 20 s creating threads and
failed the first node with "can't start new thread" (found by review). Threads and processes
now start as tasks wait for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from etherealfabric.backends._local import ProcessBackend

FLOW = """
from etherealfabric import Workflow, node

@node
def item(i):
    return i * i

@node
def total(xs):
    return sum(xs)

with Workflow("many") as wf:
    total([item(i) for i in range(6)])
"""


def test_a_huge_max_workers_runs_a_small_workflow_on_processes(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_MAX_WORKERS="100000")
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--backend", "processes",
         "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["executed"] == 7


def _square(x: int) -> int:
    return x * x


def test_the_pool_starts_a_worker_per_waiting_task_up_to_its_slots() -> None:
    backend = ProcessBackend(max_workers=100_000)
    try:
        futures = [backend.submit(_square, i) for i in range(3)]
        assert [f.result(timeout=120) for f in futures] == [0, 1, 4]
        assert 1 <= len(backend._pool._threads) <= 3
        # one at a time: the worker that is free takes the next (no new one each time)
        for i in range(5):
            assert backend.submit(_square, i).result(timeout=120) == i * i
        assert len(backend._pool._threads) <= 4
    finally:
        backend.close()
