"""A node that keeps a process pool of its own open for later (an ``lru_cache``d
``ProcessPoolExecutor``) on the processes backend: the run ends, and so do the pool's processes.

Python ends such executors at the interpreter's exit, which a worker process skips, and then
multiprocessing's exit waited for their processes: every node had succeeded, yet ``etherealfabric
run`` never exited (SIGTERM recorded the run ``interrupted`` and it went on hanging). A worker
now ends the processes its nodes left running as it exits (``backends/_procpool.py``), and a
worker that still does not exit is stopped by a signal after ``EXIT_SECONDS``, with a warning.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cli_runner import ef

POOLS = """
import functools, multiprocessing as mp, os
from concurrent.futures import ProcessPoolExecutor

@functools.lru_cache
def executor():
    return ProcessPoolExecutor(2, mp_context=mp.get_context("fork"))

def square(x):
    with open(os.path.join(os.environ["EF_TEST_PIDS"], str(os.getpid())), "w"):
        pass
    return x * x
"""

FLOW = """
from etherealfabric import Workflow, node
from pools import executor, square

@node
def total():
    return sum(executor().map(square, range(4)))

with Workflow("kept-pool") as wf:
    total()
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # (a zombie, not reaped yet, is gone too)
        return fh.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_pool_a_node_keeps_open_neither_hangs_the_run_nor_outlives_it(tmp_path: Path) -> None:
    (tmp_path / "pools.py").write_text(POOLS)
    (tmp_path / "flow.py").write_text(FLOW)
    pids = tmp_path / "pids"
    pids.mkdir()
    home = str(tmp_path / "home")
    done = ef(tmp_path, "run", "flow.py", "--backend", "processes", ETHEREALFABRIC_HOME=home,
              EF_TEST_PIDS=str(pids))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 executed" in done.stderr and "did not exit" not in done.stderr, done.stderr
    started = [int(p.name) for p in pids.iterdir()]
    assert started  # the pool's processes ran the work
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in started), started
