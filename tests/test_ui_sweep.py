"""Findings of a user sweep of the web UI that are not the page's behaviour: output previews,
the plan of a run with ``-p`` parameters, and the graph of a run whose hits came from a
teammate's shared store. Real runs (``etherealfabric run`` in child processes), a real UI
server on loopback; the browser side is in ``test_ui_browser.py``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from etherealfabric.ui import _views as views
from test_ui import UiServer, cli


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
