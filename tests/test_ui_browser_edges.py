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


def test_a_status_the_list_does_not_offer_is_said_not_dropped(page: Any, tmp_path: Path) -> None:
    # a mistyped shared link (?status=Failed) showed every run, as if filtered
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, LIVE, {"a": ("succeeded", [])}, status="succeeded", total=1)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/?status=Failed")
        sync_api.expect(page.locator("#runs-note")).to_contain_text("status='Failed' is not one of")
        assert page.locator(f'#runs tr[data-run="{LIVE}"]').count() == 0
        page.goto(f"{server.base}/?status=succeeded")  # a known one filters as before
        sync_api.expect(page.locator(f'#runs tr[data-run="{LIVE}"]')).to_have_count(1)
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def test_an_unknown_run_is_a_page_with_the_site_header_and_a_way_back(
    page: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, LIVE, {"a": ("succeeded", [])}, status="succeeded", total=1)
    server = UiServer(home)
    try:
        response = page.goto(f"{server.base}/runs/nonexistent")
        assert response is not None and response.status == 404
        assert page.title().startswith("Not found")
        sync_api.expect(page.locator(".page-error")).to_contain_text("nonexistent")
        page.get_by_role("link", name="Back to the runs").click()
        sync_api.expect(page.locator(f'#runs tr[data-run="{LIVE}"]')).to_have_count(1)
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
