# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): the
page of a node a live run has not reached yet says so, and shows the node once it starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_nodes, insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

LIVE = "20260101-000000-11ee11"


def test_the_page_of_a_node_not_reached_yet_shows_it_once_it_starts(
    page: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:  # running, in this process: alive to the UI
        insert_run(journal, LIVE, {"a": ("succeeded", [])}, status="running", total=2)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/runs/{LIVE}/nodes/b")
        sync_api.expect(page.locator("body")).to_contain_text("has no node 'b' yet")
        sync_api.expect(page.locator("body")).to_contain_text("its nodes so far: a")
        with Journal(home / "journal.db") as journal, journal.write() as conn:
            insert_nodes(conn, LIVE, {"b": ("running", ["a"])}, time.time())
        sync_api.expect(page.locator("#node-status")).to_have_text("running")
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def test_the_runs_page_shows_a_running_run_s_counts_so_far(page: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:  # running, in this process: alive to the UI
        nodes = {"a": ("succeeded", []), "c": ("cached", []), "b": ("running", ["a"])}
        insert_run(journal, LIVE, nodes, status="running", total=4)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/")
        cells = page.locator(f'#runs tr[data-run="{LIVE}"] td')
        sync_api.expect(cells.nth(2)).to_have_text("running")
        sync_api.expect(cells.nth(5)).to_have_text("1")  # executed
        sync_api.expect(cells.nth(6)).to_have_text("1")  # cached
        sync_api.expect(cells.nth(7)).to_have_text("0")  # failed
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
