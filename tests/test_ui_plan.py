"""``/api/runs/ID/plan`` when the planner cannot plan, over HTTP on a real server: a run whose
workflow file no longer imports, or is gone, is an error status with the message (it was a
200 with an ``{error}`` body), and the plan answers again once the file is fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from test_ui import UiServer, cli
from test_ui_gates import answer

FLOW = """
from etherealfabric import Workflow, node

@node
def a():
    return 1

@node
def b(x):
    return x + 1

with Workflow("tiny") as wf:
    b(a())
"""


def tiny_run(folder: Path) -> tuple[Path, Path, str]:
    """A home, the workflow file and the id of a real run of it."""
    flow = folder / "flow.py"
    flow.write_text(FLOW)
    home = folder / "home"
    done = cli("run", str(flow), "--home", str(home), "--json", cwd=folder)
    return home, flow, json.loads(done.stdout)["run_id"]


def test_a_plan_that_fails_is_an_error_status_with_the_planner_s_message(tmp_path: Path) -> None:
    home, flow, run_id = tiny_run(tmp_path)
    server = UiServer(home)
    route = f"/api/runs/{run_id}/plan"
    try:
        status, body = answer(server, route)
        assert status == 200 and json.loads(body)["cached"] == ["a", "b"], body
        flow.write_text(FLOW + "\nsyntax error(\n")  # (a plan is kept 10 s: ask it afresh)
        status, body = _fresh(server, route, 200)
        assert status == 422, body
        error = json.loads(body)["error"]
        assert "cannot be planned" in error and "syntax error" in error, error
        flow.rename(tmp_path / "moved.py")
        status, body = answer(server, route)
        assert status == 404, body
        assert "is gone" in json.loads(body)["error"] and str(flow) in body, body
        (tmp_path / "moved.py").write_text(FLOW)
        (tmp_path / "moved.py").rename(flow)
        status, body = answer(server, route)  # a failure is not kept: fixed, it plans again
        assert status == 200 and json.loads(body)["cached"] == ["a", "b"], body
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def _fresh(server: UiServer, route: str, kept: int) -> tuple[int, str]:
    """The answer once the plan kept (status ``kept``) has expired (within 60 s)."""
    import time

    deadline = time.monotonic() + 60
    while True:
        status, body = answer(server, route)
        if status != kept or time.monotonic() > deadline:
            return status, body
        time.sleep(0.5)
