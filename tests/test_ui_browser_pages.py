# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``),
over journals written by direct inserts: pages a black-box review found broken or unusable
(an edited address dropping a map's items, a live graph of over 1,000 nodes kept as SVG, a
long name widening a page, a phone's tables) and small things it found wrong."""

from __future__ import annotations

from collections.abc import Iterator
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

MAPPED = "20260101-000000-3a9900"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ui-pages") / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, MAPPED, {"first": ("succeeded", [])}, workflow="mapped", total=2)
        with journal.write() as conn:
            insert_map(conn, MAPPED, "work", 30)
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[UiServer]:
    running = UiServer(home)
    yield running
    stderr = running.stop()
    assert "Traceback" not in stderr, stderr


# -- #8: a status no item can have, in the address, does not drop the Items section ------------
def test_a_bad_items_status_in_the_address_shows_every_item_and_says_why(
    page: Any, server: UiServer
) -> None:
    page.goto(f"{server.base}/runs/{MAPPED}/nodes/work?items_status=bogus")
    sync_api.expect(page.locator("#items-section")).to_be_visible()  # (it stayed hidden)
    sync_api.expect(page.locator("#items tbody tr")).to_have_count(30)
    note = page.locator("#items-cached")
    sync_api.expect(note).to_contain_text("not filtered by status")
    sync_api.expect(note).to_contain_text("'bogus' is no status an item can have")
    assert page.locator("#items-status").input_value() == ""
    assert "items_status" not in page.url  # the address no longer asks for it
    page.locator("#items-status").select_option("failed")  # the filter works, the note goes
    sync_api.expect(page.locator("#items tbody tr")).to_have_count(1)
    sync_api.expect(note).not_to_contain_text("not filtered")
