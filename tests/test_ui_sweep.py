"""Findings of a user sweep of the web UI that are not the page's behaviour: output previews,
the plan of a run with ``-p`` parameters, and the graph of a run whose hits came from a
teammate's shared store. Real runs (``etherealfabric run`` in child processes), a real UI
server on loopback; the browser side is in ``test_ui_browser.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from etherealfabric.ui import _views as views
from test_ui import WAIT, UiServer, cli


# -- previews ----------------------------------------------------------------------------------
def test_a_preview_of_text_is_the_text_itself() -> None:
    shown = views.preview("line one\nline two\t✓ café")
    assert shown["kind"] == "text" and shown["text"] == "line one\nline two\t✓ café"
    assert shown["type"] == "builtins.str"


def test_a_preview_of_other_values_is_their_repr() -> None:
    assert views.preview(None)["text"] == "None"
    assert views.preview({"name": "café", "n": 1})["text"] == "{'name': 'café', 'n': 1}"
    assert views.preview([1.5, None, True])["text"] == "[1.5, None, True]"
    np = pytest.importorskip("numpy")
    array = np.arange(6).reshape(2, 3)
    assert views.preview(array)["text"] == repr(array)  # lines as numpy prints them


def test_a_preview_of_a_series_and_a_frame_shows_their_index() -> None:
    pd = pytest.importorskip("pandas")
    series = pd.Series([1, 2], index=["a", "b"], name="n")
    assert views.preview(series)["text"] == series.to_string()
    days = pd.to_datetime(["2026-01-02", "2026-01-03"])
    frame = pd.DataFrame({"when": days, "v": [1.5, 2.5]}, index=pd.Index(["x", "y"], name="id"))
    table = views.preview(frame)
    assert table["kind"] == "table" and table["index"] == "id"
    assert table["columns"] == ["when", "v"] and table["shape"] == [2, 2]
    assert table["rows"] == [["x", "2026-01-02 00:00:00", 1.5], ["y", "2026-01-03 00:00:00", 2.5]]
    unnamed = views.preview(pd.DataFrame({"v": [1]}))
    assert unnamed["index"] is None and unnamed["rows"] == [[0, 1]]


# -- the plan of a run with parameters ---------------------------------------------------------
PARAMS_FLOW = """
from etherealfabric import Workflow, node

@node
def scaled(x):
    return x * 10

@node
def shifted(y):
    return y + 1

with Workflow("with-params", params={"x": 1}) as wf:
    shifted(scaled(wf.params.x))
"""


def test_the_plan_of_a_run_uses_the_parameters_it_ran_with(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "flow.py").write_text(textwrap.dedent(PARAMS_FLOW))
    done = cli("run", "flow.py", "--home", str(home), "-p", "x=5", "--json", cwd=tmp_path)
    run_id = json.loads(done.stdout)["run_id"]
    server = UiServer(home)
    try:
        plan = server.get(f"/api/runs/{run_id}/plan")
        assert "error" not in plan, plan
        # the run's own parameters: everything is cached (with x=1 both nodes would run)
        assert plan["to_run"] == [] and sorted(plan["cached"]) == ["scaled", "shifted"]
    finally:
        server.stop()


# -- hits from a teammate's shared store -------------------------------------------------------
SHARED_FLOW = """
from etherealfabric import Workflow, node

@node
def load():
    return [1, 2, 3]

@node
def double(xs):
    return [x * 2 for x in xs]

@node
def total(xs):
    return sum(xs)

with Workflow("team") as wf:
    total(double(load()))
"""


def _run(folder: Path, home: Path, store: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_STORE=str(store), ETHEREALFABRIC_SIGNING_KEY="team-secret-0123456789")
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--home", str(home), "--json"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_run_cached_from_a_shared_store_has_its_edges_and_components(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(textwrap.dedent(SHARED_FLOW))
    store = tmp_path / "team-store"
    _run(tmp_path, tmp_path / "alice", store)  # computes, and publishes to the shared store
    bob = tmp_path / "bob"
    first = _run(tmp_path, bob, store)  # every node a hit from the shared store
    again = _run(tmp_path, bob, store)  # every node a hit of bob's own index now
    assert first["cached"] == again["cached"] == 3
    server = UiServer(bob)
    try:
        for run_id in (first["run_id"], again["run_id"]):
            graph = server.get(f"/api/runs/{run_id}/graph")
            edges = {(e["from"], e["to"]) for e in graph["edges"]}
            assert edges == {("load", "double"), ("double", "total")}, run_id
            node = server.get(f"/api/runs/{run_id}/nodes/total")
            assert node["status"] == "cached" and node["components"] is not None
            assert [i["node"] for i in node["inputs"]] == ["double"]
    finally:
        server.stop()
