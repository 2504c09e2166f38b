# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``),
following runs whose maps' items fail, run or never run: the run page's "Failed" section, a
map's item counts, a node's output while it runs, the timeline of retried attempts, and a map's
items page opened past its end. Every wait is bounded and generous; no timing is asserted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

ITEM_ROW = (
    "INSERT INTO node_runs (run_id, node, attempt, status, cache_key, started_at, finished_at, "
    "duration, error, traceback, host, pid, output, fallback) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,'h',1,?,0)"
)


def start_map(conn: Any, run_id: str, node: str, items: int, *, cached: int = 0) -> None:
    """The map ``node``'s own row (running) and its ``map_started`` event, as a run writes them."""
    t = time.time() - 5
    conn.execute(ITEM_ROW, (run_id, node, 1, "running", "m" * 32, t, None, None, None, None, ""))
    data = {"items": items, "children": items, "cached": cached, "to_run": items - cached}
    conn.execute(
        "INSERT INTO events (run_id, ts, kind, node, data) VALUES (?,?,'map_started',?,?)",
        (run_id, t, node, json.dumps(data)),
    )


def item(conn: Any, run_id: str, name: str, status: str, *, output: str = "") -> None:
    """One attempt of a map's item (or any node) that started a moment ago."""
    t = time.time() - 1
    done = None if status == "running" else t + 0.5
    error = "ValueError: bad item" if status == "failed" else None
    conn.execute(ITEM_ROW, (run_id, name, 1, status, None, t, done, done and 0.5, error,
                            error and "Traceback (most recent call last): ...", output))  # fmt: skip


def live_server(
    tmp_path: Path, run_id: str, nodes: dict[str, Any], **run: Any
) -> tuple[UiServer, Path]:
    """A server over a home with one run ``run_id`` recorded running by this process (so alive
    to the UI), of ``nodes`` (as ``insert_run`` takes them)."""
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, run_id, nodes, status="running", **run)
    return UiServer(home), home


def write(home: Path, rows: Any) -> None:
    """``rows(conn)`` inside a write transaction of ``home``'s journal."""
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        rows(conn)


# -- a map's failed items reach "Failed" while the run goes on ------------------------------
def test_failed_map_items_reach_the_failed_section_while_the_run_goes_on(
    page: Any, tmp_path: Path
) -> None:
    run_id = "20260101-000003-fa11ed"
    server, home = live_server(tmp_path, run_id, {"first": ("succeeded", [])}, total=2)
    try:
        write(home, lambda conn: start_map(conn, run_id, "work", 10))
        page.goto(f"{server.base}/runs/{run_id}")
        sync_api.expect(page.locator("#run-status")).to_have_text("running")
        sync_api.expect(page.locator('#nodes tr[data-node="work"]')).to_have_count(1)
        assert page.locator("#failures").is_hidden()
        for n, label in enumerate(["it03", "it07"], start=1):
            write(home, lambda conn, name=f"work[{label}]": item(conn, run_id, name, "failed"))
            # the map still counts once, running: no count changes, yet its item is listed
            sync_api.expect(page.locator("#failures .failure")).to_have_count(n)
            sync_api.expect(page.locator("#failures")).to_contain_text(f"work[{label}]")
        sync_api.expect(page.locator("#run-status")).to_have_text("running")
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
