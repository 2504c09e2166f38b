# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser, over runs a user makes: a workflow with a map over files, and
many runs. Reuses the browser fixtures of ``test_ui_browser.py`` (headless Chromium)."""

from __future__ import annotations

import json
import re
import textwrap
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer, cli  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

MAPPED = """
from pathlib import Path
from etherealfabric import Directory, File, Workflow, node, root_path

@node
def list_files(folder: Directory):
    return {p.name: File(str(p)) for p in sorted(Path(folder).glob("*.txt"))}

@node
def clean(f: File):
    return int(Path(f).read_text())

@node
def gather(d):
    return sum(d.values())

with Workflow("mapper") as wf:
    gather(clean.map(list_files(Directory(root_path("data")))))
"""


def test_a_map_counts_once_and_its_items_are_not_drawn_as_nodes(
    page: Any,
    tmp_path: Path,
) -> None:
    """A map over 12 files: the run page counts 3 nodes (as `status` does), and the graph
    draws the 3 nodes, not 12 items beside them (nor, in the next run that took everything
    from the cache, 12 'pending' items the run never had)."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        (data / f"f{i:02d}.txt").write_text(str(i))
    flow = tmp_path / "flow.py"
    flow.write_text(textwrap.dedent(MAPPED))
    home = tmp_path / "home"
    ran = [
        json.loads(cli("run", str(flow), "--home", str(home), "--json", cwd=tmp_path).stdout)
        for _ in range(2)
    ]
    assert [r["executed"] for r in ran] == [3, 0]
    server = UiServer(home)
    try:
        for run, shown in zip(ran, ("succeeded", "cached"), strict=True):
            status = json.loads(
                cli("status", run["run_id"], "--home", str(home), "--json", cwd=tmp_path).stdout
            )
            assert status["counts"] == {shown: 3}
            page.goto(f"{server.base}/runs/{run['run_id']}")
            sync_api.expect(page.locator("#counts")).to_have_text(re.compile(rf"^\s*3 {shown}\s*$"))
            drawn = page.locator("svg.graph [data-node]")
            sync_api.expect(drawn).to_have_count(3)
            names = drawn.evaluate_all("els => els.map((e) => e.getAttribute('data-node'))")
            assert sorted(names) == ["clean", "gather", "list_files"]
            api = server.get(f"/api/runs/{run['run_id']}")
            assert api["counts"] == {shown: 3}
            assert sorted(server.get(f"/api/runs/{run['run_id']}/graph")["statuses"]) == sorted(
                names
            )
        # the items' attempts are still listed (and each opens its page)
        page.goto(f"{server.base}/runs/{ran[0]['run_id']}")
        item = page.locator("#nodes a", has_text="clean[f03.txt]")
        sync_api.expect(item).to_have_count(1)
    finally:
        server.stop()


def test_the_runs_page_pages_back_through_many_runs(page: Any, tmp_path: Path) -> None:
    """250 runs: the page shows the newest 100 and a link to older ones, which leads, 100 at
    a time and keeping the filters, to the oldest run (it showed 100 and said nothing more)."""
    home = tmp_path / "home"
    t = time.time() - 3600
    ids = [f"20260101-{n:06d}-abcdef" for n in range(250)]
    with Journal(home / "journal.db") as journal:
        for n, run_id in enumerate(ids):
            insert_run(journal, run_id, {"a": ("succeeded", [])}, workflow=f"w{n % 2}",
                       started=t + n)  # fmt: skip
    server = UiServer(home)
    try:
        page.goto(server.base + "/")
        seen: list[str] = []
        for _ in range(3):
            rows = page.locator("#runs tbody tr[data-run]")
            sync_api.expect(rows.first).to_be_visible()
            shown = rows.evaluate_all("els => els.map((e) => e.dataset.run)")
            assert len(shown) <= 100
            seen += shown
            older = page.locator("#runs-more a.older")
            if len(seen) == len(ids):
                sync_api.expect(older).to_have_count(0)
                break
            older.click()
            sync_api.expect(page.locator("#runs tbody tr[data-run]").first).not_to_have_attribute(
                "data-run", shown[0]
            )
        assert seen == ids[::-1]  # every run once, newest first
        page.locator("#runs-more a.newest").click()  # and back to the newest
        sync_api.expect(page.locator("#runs tbody tr[data-run]").first).to_have_attribute(
            "data-run", ids[-1]
        )
        # the filters stay on the older pages
        page.goto(server.base + "/?workflow=w1")
        sync_api.expect(page.locator("#runs tbody tr[data-run]")).to_have_count(100)
        page.locator("#runs-more a.older").click()
        rows = page.locator("#runs tbody tr[data-run]")
        sync_api.expect(rows).to_have_count(25)
        assert rows.locator("td:nth-child(2)").all_inner_texts() == ["w1"] * 25
        assert "workflow=w1" in page.url
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("status=bogus", "status='bogus' is not one of running, succeeded, failed, cancelled, "
                         "interrupted"),
        ("limit=%C2%B2", "limit='²' is not a whole number of runs of at least 1"),
        ("before=yesterday", "before='yesterday' is not a time in seconds since the epoch, "
                             "nor a page cursor (<started_at>,<run id>: the 'next' of the page "
                             "before)"),
    ],
)  # fmt: skip
def test_a_bad_runs_filter_is_a_clear_400(tmp_path: Path, query: str, error: str) -> None:
    """An unknown status listed no runs (200), as if none had it; a digit such as '²' was a
    400 with Python's int() message."""
    home = tmp_path / "home"
    with Journal(home / "journal.db") as journal:
        insert_run(journal, "20260101-000000-abcdef", {"a": ("succeeded", [])})
    server = UiServer(home)
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            server.get(f"/api/runs?{query}")
        body = json.loads(caught.value.read())
        caught.value.close()
        assert (caught.value.code, body) == (400, {"error": error})
    finally:
        server.stop()
