"""The web UI's app called in-process (ASGI, no server, no browser) over journals written by
direct inserts: what the run, node and cache pages and their API answer in cases a browser
review found wrong (a run's real failure hidden behind tolerated item failures, a node page
reached by ``latest`` pointing at another run later, ...)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from etherealfabric.journal import Journal
from etherealfabric.ui._app import create_app
from test_ui_browse import insert_run


def call(app: Any, path: str) -> tuple[int, str]:
    """The status and body of a GET of ``path`` (with its query) from the ASGI ``app``."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": route, "raw_path": route.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8450"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8450),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(status), body.decode()


def get_json(app: Any, path: str) -> Any:
    status, body = call(app, path)
    assert status == 200, (path, status, body[:500])
    return json.loads(body)


def home_with(tmp_path: Path) -> tuple[Path, Journal]:
    home = tmp_path / "home"
    home.mkdir()
    return home, Journal(home / "journal.db")


def add_map(journal: Journal, run_id: str, node: str) -> None:
    """The ``map_started`` event that makes ``node``'s ``node[label]`` rows items of a map."""
    with journal.write() as conn:
        conn.execute(
            "INSERT INTO events (run_id, ts, kind, node, data) VALUES (?, ?, 'map_started', ?, '{}')",
            (run_id, time.time(), node),
        )


# -- 1. the run's real failure is listed, before tolerated item failures ---------------------
def hidden_failure(tmp_path: Path) -> tuple[Any, str]:
    """60 of 100 items of the map ``parse`` failed (allowed), then ``report`` failed."""
    home, journal = home_with(tmp_path)
    run = "20260101-000000-aaaaaa"
    nodes: dict[str, tuple[str, list[str]]] = {"items": ("succeeded", [])}
    nodes["parse"] = ("succeeded", ["items"])
    for i in range(100):
        nodes[f"parse[{i}]"] = ("failed" if i < 60 else "succeeded", [])
    nodes["report"] = ("failed", ["parse"])
    with journal:
        insert_run(journal, run, nodes, workflow="hidden", status="failed", total=3)
        add_map(journal, run, "parse")
    return create_app(str(home)), run


def test_the_failed_section_lists_the_node_that_failed_the_run_first(tmp_path: Path) -> None:
    app, run = hidden_failure(tmp_path)
    data = get_json(app, f"/api/runs/{run}")
    nodes = [f["node"] for f in data["failures"]]
    assert nodes[0] == "report", nodes[:5]
    assert len(nodes) == 50 and data["failures_total"] == 61
    assert nodes[1:4] == ["parse[0]", "parse[1]", "parse[2]"]  # then the items, in start order
    status, page = call(app, f"/runs/{run}")
    assert status == 200
    assert page.index(">report</b>") < page.index(">parse[0]</b>")
    assert "50 of 61 failed attempts shown" in page


def test_a_long_error_is_cut_with_a_show_all(tmp_path: Path) -> None:
    home, journal = home_with(tmp_path)
    run = "20260101-000000-bbbbbb"
    long = "ValueError: " + "x" * 30_000
    with journal:
        insert_run(journal, run, {"a": ("failed", [])}, status="failed")
        with journal.write() as conn:
            conn.execute(
                "UPDATE node_runs SET error = ?, traceback = ? WHERE run_id = ?",
                (long, "Traceback (most recent call last):\n" + long, run),
            )
    status, page = call(create_app(str(home)), f"/runs/{run}")
    assert status == 200, page[:2000]
    section = page[
        page.index('<section id="failures"') : page.index(
            "</section>", page.index('<section id="failures"')
        )
    ]
    assert "show all (30012 characters)" in section
    assert (
        section.count("x" * 30_000) == 2
    )  # the whole error once (behind "show all"), the traceback once
    assert "<details open><summary>traceback" not in section  # a long traceback starts closed
    assert "ValueError: " + "x" * 988 + "…</span>" in section  # the first 1000 characters


# -- 3. a node page reached by `latest` or a prefix names the run's full id -----------------
def test_a_node_page_by_latest_or_prefix_links_to_the_resolved_run(tmp_path: Path) -> None:
    home, journal = home_with(tmp_path)
    old, new = "20260101-000000-cccccc", "20260102-000000-dddddd"
    with journal:
        insert_run(journal, old, {"a": ("succeeded", [])}, started=time.time() - 7200)
        insert_run(journal, new, {"a": ("succeeded", [])}, started=time.time() - 60)
    app = create_app(str(home))
    for address, run in (("latest", new), ("20260101", old), ("20260102-000000-d", new)):
        status, page = call(app, f"/runs/{address}/nodes/a")
        assert status == 200, page[:500]
        assert f'data-run="{run}"' in page
        assert f'href="/runs/{run}"' in page and f"run {run}" in page
        assert f'/runs/{address}"' not in page


def test_an_address_no_route_answers_is_the_sites_404_or_the_apis_json(tmp_path: Path) -> None:
    """/nope, /runs/ID/foo answered starlette's bare text "Not Found", and /api/nope did too
    where every API answer is JSON (found by review)."""
    home, journal = home_with(tmp_path)
    run = "20260101-000000-eeeeee"
    with journal:
        insert_run(journal, run, {"a": ("succeeded", [])}, started=time.time() - 60)
    app = create_app(str(home))
    for address in ("/nope", "/runs/", f"/runs/{run}/foo"):
        status, page = call(app, address)
        assert status == 404, (address, page[:300])
        assert "<title>Not found" in page and 'href="/"' in page, (address, page[:300])
        assert f"no such address {address}" in page
    for address in ("/api/nope", f"/api/runs/{run}/nope"):
        status, body = call(app, address)
        assert status == 404, (address, body[:300])
        assert json.loads(body) == {
            "error": f"no such address {address}: the API is described in docs/ui.md"
        }


# -- 5. previews: a big dict in its own order, a MultiIndex's names -------------------------
def test_the_preview_of_a_big_dict_keeps_its_order() -> None:
    from etherealfabric.ui._views import preview

    value = {f"key_{i:05d}": i for i in reversed(range(5000))}  # too big to pretty-print whole
    text = preview(value)["text"]
    keys = re.findall(r"'(key_\d+)'", text)
    assert keys[:3] == ["key_04999", "key_04998", "key_04997"], text[:200]
    assert keys == [f"key_{i:05d}" for i in reversed(range(4950, 5000))]


def test_the_preview_of_a_multi_index_frame_names_each_level() -> None:
    pd = pytest.importorskip("pandas")
    from etherealfabric.ui._views import preview

    index = pd.MultiIndex.from_product([["a", "b"], range(10)], names=["k", "n"])
    shown = preview(pd.DataFrame({"v": range(20)}, index=index))
    assert shown["index_names"] == ["k", "n"] and shown["index"] == "k, n"
    assert shown["columns"] == ["v"] and shown["rows"][0] == ["a", 0, 0]
    plain = preview(pd.DataFrame({"v": [1]}, index=pd.Index([7], name="id")))
    assert plain["index"] == "id" and plain["index_names"] == ["id"] and plain["rows"] == [[7, 1]]


# -- 6. the cache by node: a row per workflow and node ---------------------------------------
def test_the_cache_by_node_keeps_same_named_nodes_of_two_workflows_apart(tmp_path: Path) -> None:
    home, journal = home_with(tmp_path)
    with journal:
        insert_run(journal, "20260101-000000-aaaa01", {"a": ("cached", [])}, workflow="w1")
        insert_run(journal, "20260101-000001-aaaa02", {"a": ("cached", []), "b": ("cached", [])},
                   workflow="w2")  # fmt: skip
    data = get_json(create_app(str(home)), "/api/cache")
    rows = sorted((r["node"], r["workflow"], r["bytes"], r["records"]) for r in data["by_node"])
    assert rows == [("a", "w1", 10, 1), ("a", "w2", 10, 1), ("b", "w2", 10, 1)]
    assert sorted((r["workflow"], r["records"]) for r in data["by_workflow"]) == [
        ("w1", 1),
        ("w2", 2),
    ]
