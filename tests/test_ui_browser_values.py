# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``),
over a real run: what a black-box review found the pages saying wrong or leaving out, against
what the CLI prints (``cat``, ``explain``, ``plan``): a frame's ``False`` shown as an empty
cell, like a missing value; a fallback's outputs said to be none; explain's "not covered by
the key" and "stopped while it ran" lines left out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer, cli  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

EDGE = """
import os

import pandas as pd
from etherealfabric import Workflow, node


@node
def frame():
    return pd.DataFrame({"v": [0.1 + 0.2, 399.79999999999995, 1e-12, 2.5],
                         "flag": [True, False, None, False]})


def _fallback(err):
    return {"result": "fallback value"}


@node(on_error=_fallback)
def with_fallback():
    raise RuntimeError("primary failed, fallback used")


@node
def after_fallback(x):
    return x + "!"


@node
def reads_env():
    return os.environ.get("EDGE_SETTING", ".")


with Workflow("edge", keep_going=True) as wf:
    frame()
    after_fallback(with_fallback())
    reads_env()
"""
STOPPED = "20260101-000000-5701ed"  # interrupted while its node `b` ran


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiServer, str, Path]]:
    """A real run of the edge workflow (and an interrupted run, by direct inserts)."""
    pytest.importorskip("pandas")
    folder = tmp_path_factory.mktemp("ui-values")
    (folder / "flow.py").write_text(EDGE)
    home = folder / "home"
    done = cli("run", "flow.py", "--home", str(home), "--json", cwd=folder)
    run_id = json.loads(done.stdout)["run_id"]
    with Journal(home / "journal.db") as journal:
        nodes = {"a": ("succeeded", []), "b": ("interrupted", ["a"])}
        insert_run(journal, STOPPED, nodes, workflow="stops", status="interrupted",
                   started=time.time() - 600)  # fmt: skip
    running = UiServer(home)
    yield running, run_id, folder
    stderr = running.stop()
    assert "Traceback" not in stderr, stderr


def cells(page: Any, column: int) -> list[str]:
    """The texts of a column of the preview's rows (0: the index)."""
    rows = page.locator(".preview tbody tr")
    return [rows.nth(i).locator("th, td").nth(column).inner_text() for i in range(rows.count())]


# -- #5: a frame's False is False, a missing value is marked, floats at a display precision --
def test_a_frame_preview_shows_false_and_none_as_cat_prints_them(
    page: Any, edge: tuple[UiServer, str, Path]
) -> None:
    server, run_id, _ = edge
    page.goto(f"{server.base}/runs/{run_id}/nodes/frame")
    sync_api.expect(page.locator(".preview tbody tr")).to_have_count(4)
    assert cells(page, 2) == ["True", "False", "None", "False"]  # (it showed "true", "", "", "")
    missing = page.locator(".preview tbody tr").nth(2).locator("td").nth(1)
    assert missing.get_attribute("class") == "na"  # a missing value, marked as such
    assert cells(page, 1) == ["0.3", "399.8", "1e-12", "2.5"]  # not 0.30000000000000004
    exact = page.locator(".preview tbody tr").nth(1).locator("td").first
    assert exact.get_attribute("title") == "399.79999999999995"  # the exact value, on hover


# -- #6: a fallback's outputs are the node's outputs in its run, as `cat` prints them ---------
def test_a_fallback_node_s_outputs_are_listed_and_previewed(
    page: Any, edge: tuple[UiServer, str, Path]
) -> None:
    server, run_id, folder = edge
    shown = cli("cat", run_id, "with_fallback", "--home", str(folder / "home"), cwd=folder)
    assert "fallback value" in shown.stdout
    data = server.get(f"/api/runs/{run_id}/nodes/with_fallback")
    assert data["status"] == "fallback"
    assert [o["name"] for o in data["outputs"]] == ["result"]  # (it was [])
    preview = server.get(f"/api/runs/{run_id}/preview/result/with_fallback")
    assert preview == {"kind": "text", "text": "fallback value", "type": "builtins.str"}
    page.goto(f"{server.base}/runs/{run_id}/nodes/with_fallback")
    cell = page.locator('#outputs tr[data-output="result"] .preview')
    sync_api.expect(cell).to_have_text("fallback value")
    sync_api.expect(page.locator("#outputs")).not_to_contain_text("no stored outputs")


# -- #1: explain's lines as the CLI prints them ----------------------------------------------
def test_why_it_ran_names_what_the_key_does_not_cover(
    page: Any, edge: tuple[UiServer, str, Path]
) -> None:
    server, run_id, folder = edge
    said = cli("explain", run_id, "reads_env", "--home", str(folder / "home"), cwd=folder).stdout
    line = next(t.strip() for t in said.splitlines() if "not covered by the key" in t)
    assert "EDGE_SETTING" in line
    page.goto(f"{server.base}/runs/{run_id}/nodes/reads_env")
    sync_api.expect(page.locator("#explain .uncovered li")).to_have_text(line)
    sync_api.expect(page.locator("#explain .verdict")).to_have_text("ran (succeeded)")


def test_why_it_ran_says_a_node_was_stopped_while_it_ran(
    page: Any, edge: tuple[UiServer, str, Path]
) -> None:
    server, _, _ = edge
    explained = server.get(f"/api/runs/{STOPPED}/explain/b")
    assert explained["stopped"].startswith("it was stopped while it ran: the run's process died")
    page.goto(f"{server.base}/runs/{STOPPED}/nodes/b")
    sync_api.expect(page.locator("#explain .verdict")).to_have_text("ran (interrupted)")
    sync_api.expect(page.locator("#explain .stopped")).to_have_text(explained["stopped"])


def test_the_plan_names_what_the_keys_do_not_cover(
    page: Any, edge: tuple[UiServer, str, Path]
) -> None:
    server, run_id, _ = edge
    page.goto(f"{server.base}/runs/{run_id}")
    page.locator("#plan summary").click()
    sync_api.expect(page.locator("#plan-body .uncovered li")).to_contain_text(
        "reads_env: not covered by the key: os.environ.get('EDGE_SETTING'"
    )
