"""A node that is a Dask computation of its own (``context().dask_client``) on the dask
backend: on a cluster of single-threaded workers it must not wait forever for the tasks it
submits, queued behind itself (its thread leaves the worker's pool while it waits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
import etherealfabric
from etherealfabric import Workflow, node


def double(x):
    return x * 2


@node
def doubled_sum(n):
    client = etherealfabric.context().dask_client
    return sum(client.gather(client.map(double, range(n))))


@node
def twice(total):
    client = etherealfabric.context().dask_client
    first = client.submit(double, total).result()
    again = etherealfabric.context().dask_client  # asked twice in one node
    return again.submit(double, first).result()


with Workflow("dask-nodes") as workflow:
    twice(doubled_sum(10))
"""


def test_a_node_submitting_dask_work_on_a_single_threaded_worker_finishes(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    (tmp_path / "flow.py").write_text(FLOW)
    env = {
        **os.environ,
        "ETHEREALFABRIC_HOME": str(tmp_path / "home"),
        "ETHEREALFABRIC_EXECUTION_BACKEND": "dask",
        "ETHEREALFABRIC_MAX_WORKERS": "1",  # the engine's own LocalCluster: 1 worker, 1 thread
    }
    command = [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--json"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ran = json.loads(done.stdout)
    assert ran["nodes"] == {"doubled_sum": "succeeded", "twice": "succeeded"}
    value = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "cat", ran["run_id"], "twice"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert value.returncode == 0, value.stderr
    assert value.stdout.strip() == "360"  # 2 * 2 * sum(2 * i for i in range(10))
    again = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(json.loads(again.stdout)["nodes"].values()) == {"cached"}
