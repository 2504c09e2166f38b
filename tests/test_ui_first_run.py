"""``etherealfabric ui`` started on a home with no journal yet: an empty state (not an error),
and the runs as soon as the first run creates the journal, without restarting the server.
A real server on loopback and a real run in another process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from test_ui import UiServer, status_code, wait_for

FLOW = textwrap.dedent(
    """
    from etherealfabric import Workflow, node


    @node
    def first() -> int:
        return 1


    with Workflow("first-run") as workflow:
        first()
    """
)


def _first_run(tmp_path: Path, home: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    ran = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--home", str(home)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr


def test_the_ui_shows_an_empty_home_then_the_first_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = UiServer(home)
    try:
        empty = server.get("/api/runs")
        assert empty["runs"] == [] and empty["journal"] is False
        assert status_code(server, "/") == 200 and status_code(server, "/cache") == 200
        assert not home.exists(), "the UI must not create the home"

        _first_run(tmp_path, home)
        runs = wait_for(lambda: server.get("/api/runs")["runs"], "the first run in the UI")
        assert [(r["workflow"], r["status"]) for r in runs] == [("first-run", "succeeded")]
        assert server.get("/api/runs")["journal"] is True
        assert status_code(server, f"/runs/{runs[0]['id']}") == 200
        assert server.get("/api/cache")["records"] == 1
    finally:
        server.stop()


def test_the_runs_page_says_no_journal_yet_then_lists_the_first_run(tmp_path: Path) -> None:
    """The same in a browser (headless Chromium, when there is one): the runs page says there is
    no journal yet, with no error, and lists the first run once it is made, without a reload."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    home = tmp_path / "home"
    server = UiServer(home)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.base + "/")
            expect = sync_api.expect
            expect(page.locator("#runs-note")).to_have_text(
                "no journal yet: start a run", timeout=120_000
            )
            _first_run(tmp_path, home)
            row = page.locator("#runs tr[data-status=succeeded]")
            expect(row).to_contain_text("first-run", timeout=120_000)
            expect(page.locator("#runs-note")).to_have_text("", timeout=120_000)
            browser.close()
            assert errors == [], errors
    finally:
        server.stop()
