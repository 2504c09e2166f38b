# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``) in
another time zone than the server's: the runs page shows times in the browser's zone, and a
``since`` date or time typed there means that zone too (the server read it in its own, so the
list did not match the times shown beside it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import WAIT_MS, browser  # noqa: E402,F401  (fixtures)

EARLY, LATE = "20260101-120000-ea71ea", "20260101-200000-1a7e1a"
UTC = dt.timezone.utc


@pytest.fixture
def tokyo(browser: Any) -> Iterator[Any]:
    """A page in a browser whose zone is Asia/Tokyo (UTC+9, no summer time)."""
    context = browser.new_context(timezone_id="Asia/Tokyo")
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()


def test_since_typed_on_the_page_means_the_browser_s_zone(tokyo: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        for run_id, hour in ((EARLY, 12), (LATE, 20)):  # 21:00 and 05:00 (next day) in Tokyo
            started = dt.datetime(2026, 1, 1, hour, tzinfo=UTC).timestamp()
            insert_run(journal, run_id, {"a": ("succeeded", [])}, started=started)
    server = UiServer(home, env={"TZ": "UTC"})  # the server in UTC, the browser in Tokyo
    try:
        tokyo.goto(f"{server.base}/")
        row = tokyo.locator(f'#runs tr[data-run="{EARLY}"] td')
        sync_api.expect(row.nth(3)).to_have_text("2026-01-01 21:00:00")  # shown in Tokyo time
        tokyo.fill("#f-since", "2026-01-01T22:00")  # Tokyo: after EARLY, before LATE
        tokyo.locator("#f-since").press("Enter")
        sync_api.expect(tokyo.locator(f'#runs tr[data-run="{EARLY}"]')).to_have_count(0)
        sync_api.expect(tokyo.locator(f'#runs tr[data-run="{LATE}"]')).to_have_count(1)
        tokyo.fill("#f-since", "2026-01-02")  # Tokyo's midnight: 15:00 UTC on the 1st
        tokyo.locator("#f-since").press("Enter")
        sync_api.expect(tokyo.locator(f'#runs tr[data-run="{EARLY}"]')).to_have_count(0)
        sync_api.expect(tokyo.locator(f'#runs tr[data-run="{LATE}"]')).to_have_count(1)
        tokyo.fill("#f-since", "2026-01-01T20:30")
        tokyo.locator("#f-since").press("Enter")
        sync_api.expect(tokyo.locator(f'#runs tr[data-run="{EARLY}"]')).to_have_count(1)
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
