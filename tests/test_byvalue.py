"""A node sent by value to a worker process (a workflow file the CLI loads, a script's
``__main__``) whose own code pickles a helper by reference, as ``multiprocessing.Pool().map``
does: it worked on threads and failed on processes (``run/_byvalue.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FLOW = """
import multiprocessing as mp
from etherealfabric import Node, Workflow, node

def sq(x):
    return x * x

class Cube:
    def __call__(self, x):
        return x ** 3

@node
def squares(n):
    with mp.get_context("fork").Pool(2) as pool:
        return sum(pool.map(sq, range(n)))

class Cubes(Node):
    def __init__(self, n):
        super().__init__()
        self.n = n
        self.outputs = ["result"]
    def run(self):
        with mp.get_context("fork").Pool(2) as pool:
            return {"result": sum(pool.map(Cube(), range(self.n)))}

with Workflow("pool") as wf:
    squares(10)
    wf.add_node(Cubes(5))

if __name__ == "__main__":
    results = wf.execute(backend="processes", log_level="WARNING")
    print(results.executed, results["squares"]["result"], results["Cubes"]["result"])
"""


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_pool_over_a_helper_of_the_workflow_file_works_on_every_backend(
    tmp_path: Path, ef: Any, backend: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    home = str(tmp_path / "home")
    done = ef(tmp_path, "run", "flow.py", "--backend", backend, "--json", ETHEREALFABRIC_HOME=home)
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout)["executed"] == 2
    squares = ef(tmp_path, "cat", "latest", "squares", ETHEREALFABRIC_HOME=home)
    assert squares.stdout.strip() == "285"
    assert ef(tmp_path, "cat", "latest", "Cubes", ETHEREALFABRIC_HOME=home).stdout.strip() == "100"


def test_a_pool_over_a_helper_of_a_script_works_on_processes(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, "flow.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**env, "ETHEREALFABRIC_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "285", "100"]
