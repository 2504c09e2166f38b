"""The web UI in a real browser: headless Chromium (the system's, driven by Playwright) against
a real ``etherealfabric ui`` server and a journal written by real runs.

``make test`` installs Debian's ``chromium`` when it is missing. Without a Chromium these
tests are skipped on a developer's machine and fail under CI (``CI=true``), so a CI run never
passes without having driven a browser. Screenshots of each page go to the test's temporary
folder (and to ``$ETHEREALFABRIC_UI_SCREENSHOTS`` when set, which is how the README's was
made). Every wait is bounded and generous; nothing asserts how long anything took.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer, finish, make_home, start_live_run, write_flow  # noqa: E402
from test_ui_browse import insert_nodes, insert_run, layered  # noqa: E402

WAIT_MS = 120_000
sync_api.expect.set_options(timeout=WAIT_MS)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("ETHEREALFABRIC_UI_SCREENSHOTS")

if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("no chromium on PATH: `make test` installs Debian's chromium package")
    pytest.skip("no chromium on PATH (apt-get install chromium)", allow_module_level=True)

#: fill colours of a node's box by status (observe/_export.STATUS_COLOURS), as CSS computes them
FILL = {
    "succeeded": "rgb(200, 230, 201)",
    "failed": "rgb(255, 205, 210)",
    "running": "rgb(255, 249, 196)",
    "cached": "rgb(207, 216, 220)",
}
#: runs of thousands of nodes, made by direct inserts (as benchmarks/ui.py makes its own)
BIG, BIG_LIVE = "20260101-000000-b16b16", "20260101-000001-11fe11"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_home(tmp_path_factory.mktemp("ui-browser"))


@pytest.fixture(scope="module")
def server(made: dict[str, Any]) -> Iterator[UiServer]:
    running = UiServer(made["home"])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    refused: list[str] = []  # what the page's content security policy blocked
    opened.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert refused == [], f"the page did what its content security policy forbids: {refused}"


def shoot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(SHOTS) / path.name)
    assert path.stat().st_size > 0
    return path


def fill_of(page: Any, node: str) -> str:
    return str(
        page.locator(f'svg.graph [data-node="{node}"]').evaluate("el => getComputedStyle(el).fill")
    )


def test_runs_page_lists_a_run_started_during_the_test(
    page: Any, server: UiServer, made: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(server.base + "/")
    row = page.locator(f'#runs tr[data-run="{made["first"]}"]')
    sync_api.expect(row).to_be_visible()
    proc, signal = start_live_run(tmp_path, made["home"])
    try:
        live = page.locator('#runs tr[data-status="running"]')
        sync_api.expect(live).to_have_count(1)  # no reload: the list refreshes itself
        sync_api.expect(live.locator("td").nth(1)).to_have_text("live")
        sync_api.expect(page.locator("#live")).to_have_class("live on")
        shoot(page, tmp_path, "runs")
        run_id = live.get_attribute("data-run")
        signal.touch()
        sync_api.expect(page.locator(f'#runs tr[data-run="{run_id}"]')).to_have_attribute(
            "data-status", "succeeded"
        )
        page.select_option("#f-status", "failed")
        sync_api.expect(page.locator(f'#runs tr[data-run="{run_id}"]')).to_have_count(0)
        sync_api.expect(page.locator(f'#runs tr[data-run="{made["first"]}"]')).to_be_visible()
    finally:
        signal.touch()
        finish(proc)


def test_run_page_colours_the_graph_by_status(
    page: Any, server: UiServer, made: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(f"{server.base}/runs/{made['first']}")
    sync_api.expect(page.locator("#run-status")).to_have_text("failed")
    for node, status in [("load", "succeeded"), ("square", "succeeded"),
                         ("total", "succeeded"), ("boom", "failed")]:  # fmt: skip
        box = page.locator(f'svg.graph [data-node="{node}"]')
        sync_api.expect(box).to_have_class(f"n st-{status}")
        assert fill_of(page, node) == FILL[status]
    sync_api.expect(page.locator("#failures")).to_contain_text("ValueError: no good at all")
    sync_api.expect(page.locator("#failures pre.tb")).to_contain_text("Traceback")
    sync_api.expect(page.locator("#resume")).to_contain_text(
        f"etherealfabric resume {made['first']}"
    )
    sync_api.expect(page.locator("#gantt canvas")).to_have_attribute("data-bars", "4")
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(4)
    shoot(page, tmp_path, "run")
    # pan by dragging: the view box moves
    before = page.locator("svg.graph").get_attribute("viewBox")
    box = page.locator("#graph-box").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 100, steps=5)
    page.mouse.up()
    assert page.locator("svg.graph").get_attribute("viewBox") != before
    # find a node by part of its name: it is centred and marked
    page.fill("#graph-find", "tot")
    page.press("#graph-find", "Enter")
    sync_api.expect(page.locator("#graph-found")).to_contain_text("total")
    sync_api.expect(page.locator('svg.graph [data-node="total"]')).to_have_attribute(
        "data-selected", ""
    )
    # a click on a node opens its page
    page.locator('svg.graph [data-node="total"]').click()
    page.wait_for_url(f"**/runs/{made['first']}/nodes/total")


def test_node_page_shows_logs_explain_diff_and_outputs(
    page: Any, server: UiServer, made: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(f"{server.base}/runs/{made['second']}/nodes/load")
    sync_api.expect(page.locator("#node-status")).to_have_text("succeeded")
    sync_api.expect(page.locator("#explain li")).to_have_text("param n: 1000 → 2000")
    sync_api.expect(page.locator("#explain")).to_contain_text(made["first"])
    sync_api.expect(page.locator("#attempts pre.logs")).to_have_text("loading 2000")
    sync_api.expect(page.locator('#outputs tr[data-output="result"]')).to_contain_text("json")
    sync_api.expect(page.locator('#outputs tr[data-output="result"] .preview')).to_contain_text(
        "[0, 1, 2,"
    )
    sync_api.expect(page.locator("#components")).to_contain_text("n = 2000")
    shoot(page, tmp_path, "node")
    page.goto(f"{server.base}/runs/{made['second']}/nodes/total")
    sync_api.expect(page.locator("#attempts pre.logs")).to_have_text("WARNING flow: summing 2000")
    sync_api.expect(page.locator("#explain li")).to_contain_text("input xs: square.result changed")
    sync_api.expect(page.locator(".preview")).to_have_text(str(sum(x * x for x in range(2000))))


def test_run_page_follows_a_slow_node_live(
    page: Any, server: UiServer, made: dict[str, Any], tmp_path: Path
) -> None:
    proc, signal = start_live_run(tmp_path, made["home"])
    try:
        page.goto(server.base + "/")
        live = page.locator('#runs tr[data-status="running"] a')
        sync_api.expect(live).to_have_count(1)
        live.click()
        slow = page.locator('svg.graph [data-node="slow"]')
        sync_api.expect(slow).to_have_class("n st-running")
        assert fill_of(page, "slow") == FILL["running"]
        sync_api.expect(page.locator("#run-status")).to_have_text("running")
        sync_api.expect(page.locator("#resume")).to_contain_text("in progress")
        shoot(page, tmp_path, "run-live")
        signal.touch()  # the node finishes; the page must follow without a reload
        sync_api.expect(slow).to_have_class("n st-succeeded")
        # last reads slow's output, equal to the earlier run's: early cutoff may make it cached
        sync_api.expect(page.locator('svg.graph [data-node="last"]')).to_have_class(
            re.compile(r"^n st-(succeeded|cached)$")
        )
        sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
        sync_api.expect(page.locator("#resume")).to_have_text("succeeded: nothing to resume")
        assert fill_of(page, "slow") == FILL["succeeded"]
    finally:
        signal.touch()
        finish(proc)


def test_cache_page_charts_hit_rates(
    page: Any, server: UiServer, made: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(server.base + "/cache")
    sync_api.expect(page.locator("#by-node tbody tr")).not_to_have_count(0)
    sync_api.expect(page.locator("#by-workflow")).to_contain_text("squares")
    sync_api.expect(page.locator("#hit-svg circle.run-dot")).not_to_have_count(0)
    sync_api.expect(page.locator("#cache-total")).to_contain_text("cache records")
    widest = page.locator("#by-node .meter").first  # sized under the CSP (no style attribute)
    assert widest.evaluate("e => e.getBoundingClientRect().width") > 10
    shoot(page, tmp_path, "cache")


def test_a_fresh_home_and_the_readme_screenshot(browser: Any, tmp_path: Path) -> None:
    """A home with a cached re-run and a failure: the run page the README shows."""
    made = make_home(tmp_path)
    write_flow(tmp_path, 1000)  # back to the first parameters: load, square and total cached
    from test_ui import cli

    cli("run", str(made["flow"]), "--home", str(made["home"]), cwd=tmp_path)
    server = UiServer(made["home"])
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.base + "/")
        latest = page.locator("#runs tbody tr").first.get_attribute("data-run")
        page.goto(f"{server.base}/runs/{latest}")
        sync_api.expect(page.locator('svg.graph [data-node="load"]')).to_have_class("n st-cached")
        assert fill_of(page, "load") == FILL["cached"]
        sync_api.expect(page.locator('svg.graph [data-node="boom"]')).to_have_class("n st-failed")
        shoot(page, tmp_path, "readme-run")
        context.close()
    finally:
        server.stop()


# -- runs of thousands of nodes: the graph on a canvas -----------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiServer, Path]]:
    home = tmp_path_factory.mktemp("ui-big") / "home"
    with Journal(home / "journal.db") as journal:
        insert_run(journal, BIG, layered(2000, ["succeeded", "cached", "failed", "succeeded"]))
    running = UiServer(home)
    yield running, home
    running.stop()


def pixel(page: Any, node: str) -> str:
    """The colour the canvas drew inside ``node``'s box (read back from its pixels)."""
    return str(page.evaluate("n => document.querySelector('#graph-box').graph.pixel(n)", node))


def test_a_run_of_thousands_of_nodes_is_drawn_on_a_canvas_and_opens_a_node(
    page: Any, big: tuple[UiServer, Path], tmp_path: Path
) -> None:
    server, _ = big
    nodes = layered(2000, ["succeeded", "cached", "failed", "succeeded"])
    page.goto(f"{server.base}/runs/{BIG}")
    canvas = page.locator('#graph-box[data-mode="canvas"] canvas.graph-canvas')
    sync_api.expect(canvas).to_have_attribute("data-nodes", "2000")
    edges = sum(len(ups) for _, ups in nodes.values())
    sync_api.expect(canvas).to_have_attribute("data-edges", str(edges))
    assert page.locator("svg.graph").count() == 0
    for node in ("node_00000", "node_00001", "node_00002", "node_01999", "node_01234"):
        assert pixel(page, node) == FILL[nodes[node][0]], node
    shoot(page, tmp_path, "run-big")
    # pan by dragging
    page.locator("#fit").click()
    before = page.evaluate("document.querySelector('#graph-box').graph.view")
    box = page.locator("#graph-box").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 100, steps=5)
    page.mouse.up()
    assert page.evaluate("document.querySelector('#graph-box').graph.view") != before
    # the node table: a page of 100 attempts at a time, filtered
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(100)
    sync_api.expect(page.locator("#nodes-range")).to_have_text("1-100 of 2000")
    page.locator("#nodes-next").click()
    sync_api.expect(page.locator("#nodes-range")).to_have_text("101-200 of 2000")
    page.fill("#nodes-filter", "failed")
    sync_api.expect(page.locator("#nodes-range")).to_have_text("1-100 of 500")
    sync_api.expect(page.locator("#nodes tbody .badge.st-failed")).to_have_count(100)
    # choose a node by name, then click it on the canvas: its page opens
    page.fill("#graph-find", "node_01234")
    page.press("#graph-find", "Enter")
    sync_api.expect(page.locator("#graph-found")).to_contain_text("node_01234")
    sync_api.expect(canvas).to_have_attribute("data-selected", "node_01234")
    at = page.evaluate("document.querySelector('#graph-box').graph.locate('node_01234')")
    page.mouse.click(at["x"], at["y"])
    page.wait_for_url(f"**/runs/{BIG}/nodes/node_01234")
    sync_api.expect(page.locator("#node-status")).to_have_text("failed")


def test_a_big_live_run_is_recoloured_and_grows_on_the_canvas(
    page: Any, big: tuple[UiServer, Path]
) -> None:
    server, home = big
    nodes = layered(2000, ["succeeded"])
    names = list(nodes)
    begun = {n: ("running" if i >= 1400 else "succeeded", nodes[n][1]) for i, n in enumerate(names[:1500])}  # fmt: skip
    with Journal(home / "journal.db") as journal:
        insert_run(journal, BIG_LIVE, begun, workflow="live-big", status="running", total=2000)
    page.goto(f"{server.base}/runs/{BIG_LIVE}")
    canvas = page.locator('#graph-box[data-mode="canvas"] canvas.graph-canvas')
    sync_api.expect(canvas).to_have_attribute("data-nodes", "1500")
    sync_api.expect(page.locator("#run-status")).to_have_text("running")
    assert pixel(page, "node_01450") == FILL["running"]
    # the run goes on while the page is open: its running nodes finish, the rest appear
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        rest = {n: ("succeeded", nodes[n][1]) for n in names[1400:]}
        insert_nodes(conn, BIG_LIVE, rest, time.time())
        conn.execute(
            "UPDATE runs SET status = 'succeeded', finished_at = ? WHERE id = ?",
            (time.time(), BIG_LIVE),
        )
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
    sync_api.expect(canvas).to_have_attribute("data-nodes", "2000")
    for node in ("node_01450", "node_01999"):
        page.wait_for_function(
            "([n, want]) => document.querySelector('#graph-box').graph.pixel(n) === want",
            arg=[node, FILL["succeeded"]],
            polling=200,
        )


# -- findings of a user sweep ------------------------------------------------------------------
WAITING = """
import time
from pathlib import Path
from etherealfabric import Workflow, node

FOLDER = Path({folder!r})

def wait_for(name):
    deadline = time.time() + 300
    while not (FOLDER / name).exists() and time.time() < deadline:
        time.sleep(0.05)

@node
def first():
    return 1

@node
def quick(x):
    wait_for("quick")
    return x + 1

@node
def slow(x):
    wait_for("slow")
    return x + 2

@node
def bad(x):
    wait_for("bad")
    raise ValueError("bad broke")

@node
def last(y):
    return y

with Workflow("learning", keep_going=True) as wf:
    x = first()
    quick(x)
    bad(x)
    last(slow(x))
"""


def y_of(page: Any, node: str) -> float:
    return float(page.locator(f'svg.graph rect[data-node="{node}"]').get_attribute("y"))


def test_a_live_run_page_learns_edges_lists_failures_and_sees_a_kill(
    page: Any, tmp_path: Path
) -> None:
    """One open run page, never reloaded, of a keep-going run in a fresh home (no earlier run
    tells the page a node's inputs before it ran): the graph the run recorded as it started is
    drawn whole, its running nodes below their inputs and its node not started yet pending, a
    failure is listed as it happens, and ``kill -9`` of the run turns the page interrupted
    (its node never started: not run)."""
    import subprocess
    import sys
    import textwrap

    home = tmp_path / "home"
    (tmp_path / "flow.py").write_text(textwrap.dedent(WAITING.format(folder=str(tmp_path))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--home", str(home),
         "--max-workers", "6"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    server = None
    try:
        server = UiServer(home)
        page.goto(server.base + "/")
        live = page.locator('#runs tr[data-status="running"] a')
        sync_api.expect(live).to_have_count(1)
        live.click()
        for node in ("quick", "slow", "bad"):
            sync_api.expect(page.locator(f'svg.graph [data-node="{node}"]')).to_have_class(
                "n st-running"
            )
        # the run's graph, as it recorded it when it started: each node below its inputs,
        # whether it has run yet or not (a running node was drawn as a root, beside `first`)
        assert y_of(page, "quick") > y_of(page, "first")
        assert y_of(page, "last") > y_of(page, "slow")
        sync_api.expect(page.locator('svg.graph [data-node="last"]')).to_have_class("n st-pending")
        # a failure, while the run goes on: listed at once
        (tmp_path / "bad").touch()
        sync_api.expect(page.locator("#failures")).to_be_visible()
        sync_api.expect(page.locator("#failures")).to_contain_text("bad broke")
        sync_api.expect(page.locator("#run-status")).to_have_text("running")
        (tmp_path / "quick").touch()
        sync_api.expect(page.locator('svg.graph [data-node="quick"]')).to_have_class(
            "n st-succeeded"
        )
        assert y_of(page, "quick") > y_of(page, "first")
        # kill -9 of the run while slow runs: the open page turns interrupted, all of it
        proc.kill()
        proc.communicate(timeout=60)
        sync_api.expect(page.locator("#run-status")).to_have_text("interrupted")
        sync_api.expect(page.locator("#resume")).to_contain_text("etherealfabric resume")
        sync_api.expect(page.locator('svg.graph [data-node="slow"]')).to_have_class(
            "n st-interrupted"
        )
        sync_api.expect(page.locator("#counts")).to_contain_text("1 interrupted")
        sync_api.expect(page.locator("#counts")).to_contain_text("1 not_run")  # last
        sync_api.expect(page.locator('svg.graph [data-node="last"]')).to_have_class("n st-not_run")
        sync_api.expect(page.locator("#counts")).not_to_contain_text("running")
        row = page.locator('#nodes tr[data-node="slow"]')
        sync_api.expect(row.locator(".badge")).to_have_text("interrupted")
        shoot(page, tmp_path, "killed")
        page.goto(page.url.rstrip("/") + "/nodes/slow")
        sync_api.expect(page.locator("#node-status")).to_have_text("interrupted")
        sync_api.expect(page.locator("#attempts .badge")).to_have_text("interrupted")
    finally:
        for name in ("quick", "slow", "bad"):
            (tmp_path / name).touch()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
        if server is not None:
            server.stop()


ODD = """
import pandas as pd
from etherealfabric import Workflow, node

@node
def wide():
    return pd.DataFrame([list(range(300))] * 3, columns=[f"column_{{i}}" for i in range(300)])

@node
def colourful():
    print("\\x1b[31mred\\x1b[0m and plain")
    return "line one\\nline two"

@node
def a_node_with_a_rather_long_name_that_goes_on_and_on_and_on(x):
    import time
    time.sleep(0.05)
    return x

@node
def unbroken():
    raise ValueError("{long}")

with Workflow("odd", params={{"x": 1}}, keep_going=True) as wf:
    wide()
    colourful()
    a_node_with_a_rather_long_name_that_goes_on_and_on_and_on(wf.params.x)
    unbroken()
"""
LONG = "x" * 300


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiServer, str]]:
    """A run with a wide frame, coloured logs, a long node name and a long unbroken error."""
    pytest.importorskip("pandas")
    import json as json_

    from test_ui import cli

    folder = tmp_path_factory.mktemp("ui-odd")
    (folder / "flow.py").write_text(ODD.format(long=LONG))
    home = folder / "home"
    done = cli("run", "flow.py", "--home", str(home), "-p", "x=5", "--json", cwd=folder)
    running = UiServer(home)
    yield running, json_.loads(done.stdout)["run_id"]
    running.stop()


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_long_text_and_wide_previews_keep_the_page_width(
    page: Any, odd: tuple[UiServer, str], tmp_path: Path
) -> None:
    server, run_id = odd
    page.goto(f"{server.base}/runs/{run_id}")
    sync_api.expect(page.locator("#failures")).to_contain_text(LONG)
    assert page_width(page) <= 1360
    page.goto(f"{server.base}/runs/{run_id}/nodes/unbroken")
    sync_api.expect(page.locator("#attempts .error")).to_contain_text(LONG)
    assert page_width(page) <= 1360
    page.goto(f"{server.base}/runs/{run_id}/nodes/wide")
    preview = page.locator('#outputs tr[data-output="result"] .preview')
    preview.get_by_role("button").click()  # (a parquet file of over 100 KB: loaded on demand)
    sync_api.expect(preview.locator("thead th")).to_have_count(301)  # the index, then 300 columns
    assert page_width(page) <= 1360
    shoot(page, tmp_path, "wide")
    scroller = preview.locator(".scroll")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")  # it scrolls in its box


def test_logs_without_colour_codes_and_previews_as_text(
    page: Any, odd: tuple[UiServer, str]
) -> None:
    server, run_id = odd
    page.goto(f"{server.base}/runs/{run_id}/nodes/colourful")
    sync_api.expect(page.locator("#attempts pre.logs")).to_have_text("red and plain")
    sync_api.expect(page.locator(".preview pre")).to_have_text("line one\nline two")


def test_timeline_labels_end_with_an_ellipsis_and_the_plan_says_will_run(
    page: Any, odd: tuple[UiServer, str]
) -> None:
    server, run_id = odd
    page.goto(f"{server.base}/runs/{run_id}")
    sync_api.expect(page.locator("#gantt canvas")).to_have_attribute("data-rows", "4")
    labels = page.evaluate("document.querySelector('#gantt').gantt.labels")
    long = [t for t in labels if t.startswith("a_node_with")]
    assert len(long) == 1 and long[0].endswith("…"), labels  # cut at its end, not its start
    page.locator("#plan summary").click()
    body = page.locator("#plan-body")
    # the run's own -p x=5: the long-named node is cached; unbroken fails, so it would run
    sync_api.expect(body).to_contain_text("1 will run")
    sync_api.expect(body.locator("tr", has_text="unbroken").locator(".badge")).to_have_text(
        "will run"
    )


def test_the_plan_section_of_a_run_with_no_file_shows_why(page: Any, tmp_path: Path) -> None:
    """The plan route answers such a run with a 404; the section shows its message."""
    from test_ui_edges import DONE
    from test_ui_edges import make_home as edges_home

    edges_home(tmp_path / "home")
    server = UiServer(tmp_path / "home")
    try:
        page.goto(f"{server.base}/runs/{DONE}")
        page.locator("#plan summary").click()
        sync_api.expect(page.locator("#plan-body")).to_contain_text("no file to plan")
    finally:
        server.stop()


def test_the_runs_page_filters_by_the_workflow_in_its_address(
    page: Any, server: UiServer, made: dict[str, Any]
) -> None:
    page.goto(server.base + "/?workflow=nope")
    sync_api.expect(page.locator("#runs tbody")).to_contain_text("no runs match")
    assert page.locator("#f-workflow").input_value() == "nope"  # the filter shows
    page.goto(server.base + "/?workflow=squares")
    sync_api.expect(page.locator(f'#runs tr[data-run="{made["first"]}"]')).to_have_count(1)
    assert page.locator("#runs tbody tr td:nth-child(2)").all_inner_texts() == ["squares"] * len(
        page.locator("#runs tbody tr").all()
    )


def test_the_hit_rate_chart_spaces_runs_in_their_order(page: Any, tmp_path: Path) -> None:
    """Runs half a second apart, then one a minute later: three dots evenly spaced (a time
    axis put the first two on top of each other and the third far away)."""
    home = tmp_path / "home"
    t = time.time() - 3600
    with Journal(home / "journal.db") as journal:
        for n, started in enumerate((t, t + 0.5, t + 60)):
            insert_run(journal, f"20260101-00000{n}-c0ffee", {"a": ("cached", [])}, started=started)
        with journal.write() as conn:
            conn.execute("UPDATE runs SET executed = 0, cached = 1")
    server = UiServer(home)
    try:
        page.goto(server.base + "/cache")
        dots = page.locator("#hit-svg circle.run-dot")
        sync_api.expect(dots).to_have_count(3)
        xs = [float(x) for x in dots.evaluate_all("els => els.map((e) => e.getAttribute('cx'))")]
        gaps = [b - a for a, b in itertools.pairwise(xs)]
        assert min(gaps) > 100 and max(gaps) - min(gaps) < 1.0, xs
    finally:
        server.stop()
