"""The run graph of a workflow's first run whose branch failed: the nodes the failure blocked
(upstream failed) have no key components, and were drawn without edges (the previous runs that
the graph falls back on do not exist). Their events name their direct upstreams. A real run
(CLI, fresh process) and the UI's graph over HTTP on a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from test_ui import UiServer
from test_ui_gates import answer

PIPELINE = """
from etherealfabric import Workflow, node


@node
def load():
    return 1


@node
def broken(x):
    raise ValueError("no")


@node
def after(x):
    return x


@node
def last(x, y):
    return x + y


with Workflow("branch") as workflow:
    a = load()
    b = broken(a)
    c = after(b)
    d = last(c, a)
"""


def test_blocked_nodes_of_a_failed_first_run_keep_their_edges(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    out = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "wf.py", "--home", str(home)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0 and "broken" in out.stderr, out.stderr
    server = UiServer(home)
    try:
        status, body = answer(server, "/api/runs")
        assert status == 200, body
        [run] = json.loads(body)["runs"]
        status, body = answer(server, f"/api/runs/{run['id']}/graph")
        assert status == 200, body
    finally:
        server.stop()
    graph = json.loads(body)
    edges = {(e["from"], e["to"]) for e in graph["edges"]}
    assert {"load", "broken", "after", "last"} <= {n["node"] for n in graph["nodes"]}
    assert {("load", "broken"), ("broken", "after"), ("after", "last"), ("load", "last")} <= edges
