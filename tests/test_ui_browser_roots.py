# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): a
journal whose ``events`` table is forged to read another table's root page, while a live run's
page follows it, is said so on the page (it kept showing the last state, silently), and every
page opened then names the damaged journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)
from test_ui_items import insert_map  # noqa: E402
from test_ui_roots import point  # noqa: E402

LIVE = "20260101-000000-4007a1"


def test_a_journal_forged_while_a_page_follows_a_run_is_said_so(page: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = home / "journal.db"
    with Journal(path) as journal:  # running, in this process: alive to the UI
        insert_run(journal, LIVE, {"a": ("succeeded", [])}, status="running", total=3)
        with journal.write() as conn:
            insert_map(conn, LIVE, "m", 5)
        journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/runs/{LIVE}")
        sync_api.expect(page.locator("#run-status")).to_have_text("running")
        sync_api.expect(page.locator("#live")).to_have_class("live on")
        assert page.locator("#page-error").is_hidden()
        point(path, "events", "node_runs")
        banner = page.locator("#page-error")
        sync_api.expect(banner).to_be_visible()
        sync_api.expect(banner).to_contain_text("cannot follow the run now")
        sync_api.expect(banner).to_contain_text("have the same root page")
        sync_api.expect(banner).to_contain_text(str(path))
        for address in ("/", f"/runs/{LIVE}", f"/runs/{LIVE}/nodes/m", "/cache"):
            page.goto(server.base + address)
            sync_api.expect(page.locator("body")).to_contain_text(
                "is not a usable EtherealFabric journal"
            )
            sync_api.expect(page.locator("body")).to_contain_text("the file is damaged")
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
