# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): the
run page's plan section of a run whose workflow file no longer plans shows the planner's
message (the API answers it with an error status, ``test_ui_plan.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from test_ui import UiServer  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)
from test_ui_plan import FLOW, tiny_run  # noqa: E402


def test_the_plan_section_shows_why_the_workflow_cannot_be_planned(
    page: Any, tmp_path: Path
) -> None:
    home, flow, run_id = tiny_run(tmp_path)
    flow.write_text(FLOW + "\nsyntax error(\n")
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/runs/{run_id}")
        page.locator("#plan summary").click()
        body = page.locator("#plan-body")
        sync_api.expect(body).to_contain_text("cannot be planned now")
        sync_api.expect(body).to_contain_text("syntax error")
        flow.unlink()
        page.reload()
        page.locator("#plan summary").click()
        sync_api.expect(body).to_contain_text("is gone (moved or deleted)")
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
