# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): a
map whose items came from the cache lists them, as ``show RUN MAP --items`` does, over real runs
of a mapped workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from test_ui import UiServer  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)
from test_ui_items import mapped_runs  # noqa: E402


def test_a_map_taken_from_the_cache_lists_its_items_as_cached(page: Any, tmp_path: Path) -> None:
    home, warm, partial = mapped_runs(tmp_path)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/runs/{warm}/nodes/clean")
        rows = page.locator("#items tbody tr")
        sync_api.expect(rows).to_have_count(12)
        sync_api.expect(page.locator("#items-counts")).to_have_text("12 items: 12 cached")
        sync_api.expect(page.locator("#items-range")).to_have_text("1-12 of 12")
        sync_api.expect(rows.first.locator("td").nth(1)).to_have_text("f00.txt")
        sync_api.expect(rows.first.locator("td").nth(2)).to_have_text("cached")
        assert rows.first.locator("a").count() == 0  # it did not run here: no page of its own
        page.goto(f"{server.base}/runs/{partial}/nodes/clean")
        sync_api.expect(rows).to_have_count(12)
        sync_api.expect(page.locator("#items-counts")).to_have_text(
            "12 items: 11 cached, 1 succeeded"
        )
        sync_api.expect(rows.first.locator("td").nth(1)).to_have_text("f03.txt")
        page.locator("#items-status").select_option("cached")
        sync_api.expect(rows).to_have_count(11)
        sync_api.expect(page.locator("#items-range")).to_have_text("1-11 of 11")
        page.locator("#items-status").select_option("succeeded")
        sync_api.expect(rows).to_have_count(1)
        rows.first.locator("a").click()  # the one that ran opens its own page
        sync_api.expect(page.locator("h1")).to_contain_text("clean[f03.txt]")
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
