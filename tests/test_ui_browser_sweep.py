"""The web UI in a real browser, over runs a user makes: a workflow with a map over files, and
many runs. Reuses the browser fixtures of ``test_ui_browser.py`` (headless Chromium)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from test_ui import UiServer, cli  # noqa: E402
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
    tmp_path: Path,  # noqa: F811
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
