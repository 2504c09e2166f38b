# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``),
following runs whose maps' items fail, run or never run: the run page's "Failed" section, a
map's item counts, a node's output while it runs, the timeline of retried attempts, and a map's
items page opened past its end. Every wait is bounded and generous; no timing is asserted."""

from __future__ import annotations

import contextlib
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
from test_ui_items import ITEM_ROW, insert_map, item, start_map  # noqa: E402


def live_home(tmp_path: Path, run_id: str, nodes: dict[str, Any], **run: Any) -> Path:
    """A home with one run ``run_id`` recorded running by this process (so alive to the UI),
    of ``nodes`` (as ``insert_run`` takes them)."""
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, run_id, nodes, status="running", **run)
    return home


@contextlib.contextmanager
def serving(home: Path) -> Iterator[UiServer]:
    """A UI server over ``home`` for the block; it must log no traceback."""
    server = UiServer(home)
    try:
        yield server
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def write(home: Path, rows: Any) -> None:
    """``rows(conn)`` inside a write transaction of ``home``'s journal."""
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        rows(conn)


# -- a map's failed items reach "Failed" while the run goes on ------------------------------
def test_failed_map_items_reach_the_failed_section_while_the_run_goes_on(
    page: Any, tmp_path: Path
) -> None:
    run_id = "20260101-000003-fa11ed"
    home = live_home(tmp_path, run_id, {"first": ("succeeded", [])}, total=2)
    with serving(home) as server:
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


# -- a map's items page opened past its end shows its last page ------------------------------
def test_a_map_s_items_page_past_its_end_shows_its_last_page(page: Any, tmp_path: Path) -> None:
    run_id = "20260101-000004-0ffe4d"
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, run_id, {"first": ("succeeded", [])}, total=2)
        with journal.write() as conn:
            insert_map(conn, run_id, "work", 250)
    with serving(home) as server:
        node = f"{server.base}/runs/{run_id}/nodes/work"
        for asked in (260, 251, 9999):
            page.goto(f"{node}?items_from={asked}")
            sync_api.expect(page.locator("#items-range")).to_have_text("201-250 of 250")
            sync_api.expect(page.locator("#items tbody tr")).to_have_count(50)
            assert page.url.endswith("?items_from=201")  # the address says what is shown
            assert page.locator("#items-next").is_disabled()
        page.goto(f"{node}?items_status=failed&items_from=40")  # one failed item: its page
        sync_api.expect(page.locator("#items-range")).to_have_text("1-1 of 1")
        sync_api.expect(page.locator("#items tbody tr")).to_contain_text("item_00005")
        assert page.url.endswith("?items_status=failed")
        page.goto(f"{node}?items_from=150")  # within it: as asked
        sync_api.expect(page.locator("#items-range")).to_have_text("150-249 of 250")


# -- a node without output yet says why, as `etherealfabric logs` does ------------------------
def test_an_attempt_running_or_cut_off_by_its_run_s_death_says_why_it_has_no_output(
    page: Any, tmp_path: Path
) -> None:
    live, dead = "20260101-000005-7a1c00", "20260101-000006-dead00"
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        nodes = {"a": ("succeeded", []), "talk": ("running", ["a"])}
        insert_run(journal, live, nodes, status="running")  # by this process: alive
        insert_run(journal, dead, nodes, status="running")
        with journal.write() as conn:
            conn.execute("UPDATE node_runs SET output = '' WHERE node = 'talk'")
            conn.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (dead,))  # gone
    with serving(home) as server:
        page.goto(f"{server.base}/runs/{live}/nodes/talk")
        sync_api.expect(page.locator("#node-status")).to_have_text("running")
        logs = page.locator("#attempts .logs")
        sync_api.expect(logs).to_contain_text("no output yet")
        sync_api.expect(logs).to_contain_text("kept when its attempt ends")
        page.goto(f"{server.base}/runs/{dead}/nodes/talk")
        sync_api.expect(page.locator("#node-status")).to_have_text("interrupted")
        sync_api.expect(logs).to_contain_text("the run's process died while this attempt ran")
        sync_api.expect(logs).to_contain_text("it was shown live as it was printed")
        page.goto(f"{server.base}/runs/{dead}/nodes/a")  # a finished attempt that printed
        sync_api.expect(logs).to_have_text("out")


# -- a map's node page counts all its items, those not started too ---------------------------
def test_a_map_s_node_page_counts_the_items_not_started_yet_or_never(
    page: Any, tmp_path: Path
) -> None:
    run_id = "20260101-000007-3a9000"
    home = live_home(tmp_path, run_id, {"first": ("succeeded", [])}, total=2)
    with serving(home) as server:
        write(home, lambda conn: start_map(conn, run_id, "work", 30))
        write(
            home,
            lambda conn: [item(conn, run_id, f"work[it{i:02d}]", "succeeded") for i in range(12)],
        )
        node = f"{server.base}/runs/{run_id}/nodes/work"
        page.goto(node)
        counts = page.locator("#items-counts")
        sync_api.expect(counts).to_have_text("30 items: 12 succeeded, 18 pending")
        sync_api.expect(page.locator("#items-cached")).to_contain_text("18 not started yet")
        write(home, lambda conn: item(conn, run_id, "work[it12]", "succeeded"))
        sync_api.expect(counts).to_have_text("30 items: 13 succeeded, 17 pending")  # it follows
        write(
            home,
            lambda conn: conn.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (run_id,)),
        )
        page.goto(node)  # the run's process is gone: the rest will never run
        sync_api.expect(counts).to_have_text("30 items: 13 succeeded, 17 not run")
        sync_api.expect(page.locator("#items-cached")).to_contain_text("17 never started")
        sync_api.expect(page.locator("#items-range")).to_have_text("1-13 of 13")  # the rows


# -- the timeline: a retried node's attempts each with its duration, drawn as failed ----------
GANTT_COLOURS = """() => {  // each row's bars' fill, sampled where paintGantt puts each bar
  const box = document.querySelector("#gantt"), g = box.gantt, canvas = box.querySelector("canvas");
  const ctx = canvas.getContext("2d"), ratio = window.devicePixelRatio || 1;
  const plot = Math.max(box.clientWidth - 20, 600) - 170 - 70;
  return Object.fromEntries(g.names.map((name, i) => [name, g.rows.get(name).map((a) => Array.from(
    ctx.getImageData(Math.round((170 + ((a.started_at - g.start) / g.span) * plot + 3) * ratio),
      Math.round((2 + i * 16 + 5) * ratio), 1, 1).data).slice(0, 3))]));
}"""


def test_a_retried_node_s_attempts_each_show_their_duration_drawn_as_failed(
    page: Any, tmp_path: Path
) -> None:
    run_id = "20260101-000008-7e7000"
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, run_id, {"other": ("succeeded", [])}, total=2)
        with journal.write() as conn:
            t = conn.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (t + 1.6, run_id))
            conn.execute("UPDATE node_runs SET finished_at = ?, duration = 1.5 WHERE run_id = ?",
                         (t + 1.5, run_id))  # fmt: skip
            for attempt, status in enumerate(["retrying", "retrying", "succeeded"], start=1):
                begun = t + (attempt - 1) * 0.5  # back to back, each 0.5 s
                conn.execute(ITEM_ROW, (run_id, "flaky", attempt, status, None, begun,
                                        begun + 0.5, 0.5, None, None, ""))  # fmt: skip
    with serving(home) as server:
        page.goto(f"{server.base}/runs/{run_id}")
        sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
        page.wait_for_function("() => document.querySelector('#gantt').gantt")
        colours = page.evaluate(GANTT_COLOURS)
        failed, succeeded = [255, 205, 210], [200, 230, 201]  # (running is 255, 249, 196)
        assert colours == {"flaky": [failed, failed, succeeded], "other": [succeeded]}, colours
        drawn = page.evaluate("document.querySelector('#gantt').gantt.drawn")
        flaky = next(row for row in drawn if row["node"] == "flaky")
        assert len(flaky["bars"]) == 3
        assert [text for _, _, text in flaky["labels"]] == ["500 ms"] * 3, flaky
        for at, width, _ in flaky["labels"]:  # no other bar covers a label
            own = [(x, w) for x, w in flaky["bars"] if x <= at and at + width <= x + w]
            others = [(x, w) for x, w in flaky["bars"] if (x, w) not in own]
            assert all(at + width <= x or x + w <= at for x, w in others), flaky
