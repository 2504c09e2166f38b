"""A node's own process pool started by ``spawn`` or ``forkserver`` (Python 3.14's default on
Linux), mapping a function of the workflow file: it hung for good under ``etherealfabric run``
(its workers could not import ``etherealfabric_workflow_flow``) and, for a script run with the
processes backend, there too (the workers' ``__main__`` is an empty module). See
``run/_importable.py`` and ``run/_byvalue.py``. Each run is a fresh process group, killed whole
at its time limit, so a hang fails the test instead of hanging the suite."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from etherealfabric import Workflow, node

with open("imported.txt", "a") as f:  # each process that runs the top level of this file
    f.write(f"{os.getpid()}\\n")

def square(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x

@node
def spawned(n: int = 5) -> int:
    with mp.get_context("spawn").Pool(2) as pool:
        return sum(pool.map(square, range(n)))

@node
def forkserved(n: int = 6) -> int:
    with ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver")) as ex:
        return sum(ex.map(square, range(n)))

@node
def failing(n: int = -1) -> int:
    with mp.get_context("spawn").Pool(1) as pool:
        return sum(pool.map(square, [n]))

with Workflow("pools") as wf:
    spawned()
    forkserved()

with Workflow("fails") as bad:
    failing()

if __name__ == "__main__":
    import sys
    with open("main-ran.txt", "a") as f:
        f.write(f"{os.getpid()}\\n")
    results = wf.execute(backend=sys.argv[1], log_level="WARNING")
    print(results.executed, results["spawned"]["result"], results["forkserved"]["result"])
"""

LIMIT = 240  # seconds: a few on an idle machine; a hang runs into it


def _run(cwd: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(cwd / "home")
    with open(cwd / "out.txt", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{args} hung (killed after {LIMIT}s):\n{(cwd / 'out.txt').read_text()}")
        finally:
            _end_group(proc.pid)
    return code, (cwd / "out.txt").read_text()


def _end_group(group: int) -> None:
    """Kill what is left of a run's process group (a pool's worker on a failure)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_spawned_pool_over_a_function_of_the_workflow_file_runs_under_the_cli(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    code, out = _run(
        tmp_path, "-m", "etherealfabric", "run", "flow.py:wf", "--backend", backend, "--json"
    )
    assert code == 0, out
    summary = json.loads(out[out.index("{") :])
    assert summary["executed"] == 2
    # the pools' workers ran the file's top level (as spawn does with a script), not its main
    assert len(set((tmp_path / "imported.txt").read_text().split())) >= 3
    assert not (tmp_path / "main-ran.txt").exists()


def test_a_spawned_pool_over_a_function_of_a_script_runs_on_processes(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    code, out = _run(tmp_path, "flow.py", "processes")
    assert code == 0, out
    assert out.split()[-3:] == ["2", "30", "55"]
    assert len((tmp_path / "main-ran.txt").read_text().split()) == 1  # the script's main, once


def test_an_error_in_a_spawned_worker_fails_the_node_and_names_the_workflow_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    code, out = _run(tmp_path, "-m", "etherealfabric", "run", "flow.py:bad")
    assert code != 0, out
    assert "failing" in out and "ValueError: negative: -1" in out, out
    code, logs = _run(tmp_path, "-m", "etherealfabric", "logs", "latest", "failing")
    assert code == 0, logs
    # the worker's traceback names the workflow file's own line, not a stand-in module
    assert f'{os.path.realpath(tmp_path / "flow.py")}", line 12, in square' in logs, logs
