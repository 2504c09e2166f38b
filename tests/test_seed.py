"""The seed's usage example, verbatim: it must run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from etherealfabric import Node, Workflow

ROOT = Path(__file__).resolve().parent.parent


def test_seed_usage_example_runs_as_written() -> None:
    class MyNode(Node):
        def __init__(self, input_data):
            super().__init__()
            self.input_data = input_data
            self.outputs = ["output_data"]

        def run(self):
            # Perform some computation
            result = self.input_data * 2
            return {"output_data": result}

    # Create nodes
    node1 = MyNode(input_data=10)
    node2 = MyNode(input_data=node1.outputs["output_data"])

    # Define dependencies
    workflow = Workflow()
    workflow.add_node(node1)
    workflow.add_node(node2)
    workflow.add_dependency(node1, node2)

    # Execute the workflow
    results = workflow.execute()

    assert results[node2]["output_data"] == 40
    assert results[node1]["output_data"] == 20
    assert (results.executed, results.cached, results.failed) == (2, 0, 0)
    assert workflow.name_of(node1) == "MyNode"
    assert workflow.name_of(node2) == "MyNode-2"

    again = workflow.execute()
    assert (again.executed, again.cached) == (0, 2)
    assert again[node2]["output_data"] == 40


def test_seed_example_file_runs_as_a_script(tmp_path: Path) -> None:
    script = ROOT / "examples" / "seed_usage.py"
    first = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert "output_data = 40" in first.stdout
    assert "executed 2, cached 0" in first.stdout
    second = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert "executed 0, cached 2" in second.stdout
    assert (tmp_path / ".etherealfabric" / "journal.db").exists()


@pytest.mark.parametrize("backend", ["processes", "dask"])
def test_seed_example_as_written_on_the_backend_from_the_environment(
    tmp_path: Path, backend: str
) -> None:
    """The seed's script has no ``__main__`` guard; worker processes must not re-run it."""
    env = {**os.environ, "ETHEREALFABRIC_EXECUTION_BACKEND": backend}
    script = ROOT / "examples" / "seed_usage.py"
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "output_data = 40" in done.stdout and "executed 2, cached 0" in done.stdout
    assert done.stdout.count("output_data") == 1  # the workflow ran once, not in each worker
