"""The web UI's request checks, against a real ``etherealfabric ui`` server on loopback: a
damaged journal (503 naming it), DNS rebinding (421 for a Host that is not loopback), and
cross-site requests (403)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from etherealfabric.journal import Journal
from test_ui import UiServer
from test_ui_browse import insert_run

RUN = "20260101-000000-abcdef"
ROUTES = [
    "/",
    "/cache",
    f"/runs/{RUN}",
    f"/runs/{RUN}/nodes/a",
    "/api/health",
    "/api/runs",
    "/api/cache",
    f"/api/runs/{RUN}",
    f"/api/runs/{RUN}/status",
    f"/api/runs/{RUN}/graph",
    f"/api/runs/{RUN}/graph.svg",
    f"/api/runs/{RUN}/nodes/a",
]


def answer(
    server: UiServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, str]:
    """The status and body of a request (any status)."""
    status, body, _ = answered(server, path, headers, method)
    return status, body


def answered(
    server: UiServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, str, Message]:
    """The status, body and headers of a request (any status)."""
    request = urllib.request.Request(server.base + path, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode(), exc.headers


def make_journal(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "journal.db"
    with Journal(path) as journal:
        insert_run(journal, RUN, {"a": ("succeeded", []), "b": ("failed", ["a"])})
        journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    home = tmp_path_factory.mktemp("gates") / "home"
    make_journal(home)
    running = UiServer(home)
    yield running
    running.stop()


# -- a damaged journal -----------------------------------------------------------------------
def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database, just some text\n" * 200)


def _corrupt(path: Path) -> None:
    """Garbage over the pages after the header: a SQLite file, damaged."""
    data = bytearray(path.read_bytes())
    data[100:] = os.urandom(len(data) - 100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_not_sqlite, _corrupt], ids=["not-sqlite", "corrupt"])
def test_a_damaged_journal_is_a_503_naming_it_on_every_route(tmp_path: Path, damage: Any) -> None:
    home = tmp_path / "home"
    path = make_journal(home)
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    damage(path)
    server = UiServer(home)
    try:
        for route in ROUTES:
            status, body = answer(server, route)
            assert status == 503, (route, status, body[:500])
            assert str(path) in body, (route, body[:500])
            assert "damaged" in body and "Move it aside" in body, (route, body[:500])
            assert "Traceback" not in body
        assert answer(server, "/static/app.js")[0] == 200  # the page's files still load
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def test_a_journal_damaged_while_the_ui_runs_is_a_503(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = make_journal(home)
    server = UiServer(home)
    try:
        assert answer(server, f"/api/runs/{RUN}")[0] == 200
        _not_sqlite(path)
        for route in ROUTES:
            status, body = answer(server, route)
            assert status == 503 and str(path) in body, (route, status, body[:500])
    finally:
        server.stop()


# -- DNS rebinding -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "10.0.0.1:{port}"]
)
def test_a_host_that_is_not_loopback_is_421(server: UiServer, host: str) -> None:
    for route in ("/", "/api/runs", f"/api/runs/{RUN}", "/api/health"):
        status, body = answer(server, route, {"Host": host.format(port=server.port)})
        assert status == 421, (route, status)
        assert "Host" in body and "127.0.0.1" in body


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "localhost", "127.0.0.1"]
)
def test_loopback_hosts_are_served(server: UiServer, host: str) -> None:
    status, _ = answer(server, "/api/runs", {"Host": host.format(port=server.port)})
    assert status == 200


def test_another_listening_address_checks_no_host(tmp_path: Path) -> None:
    """Served on all addresses (with a token), the Host is whatever name reaches it."""
    home = tmp_path / "home"
    make_journal(home)
    server = UiServer(home, "--host", "0.0.0.0", "--token", "t0ken")
    try:
        auth = {"Authorization": "Bearer t0ken", "Host": "ui.example.org"}
        assert answer(server, "/api/runs", auth)[0] == 200
    finally:
        server.stop()


# -- cross-site requests -----------------------------------------------------------------------
def test_cross_site_requests_are_403_but_links_open(server: UiServer) -> None:
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    for route in ("/api/runs", f"/api/runs/{RUN}", "/", "/static/app.js"):
        status, body = answer(server, route, cross)
        assert status == 403 and "cross-site" in body, (route, status)
    script = {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "no-cors",
        "Sec-Fetch-Dest": "script",
    }
    assert answer(server, "/api/runs", script)[0] == 403
    navigate = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert answer(server, f"/runs/{RUN}", navigate)[0] == 200  # a link from elsewhere opens
    assert answer(server, "/", navigate, method="POST")[0] == 403
    for site in ("same-origin", "none"):
        assert answer(server, "/api/runs", {"Sec-Fetch-Site": site})[0] == 200


def test_other_methods_from_a_foreign_origin_are_403(server: UiServer) -> None:
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"):
        status, body = answer(server, "/api/runs", {"Origin": origin}, method="POST")
        assert status == 403 and "Origin" in body, (origin, status)
    own = {"Origin": server.base}
    assert answer(server, "/api/runs", own, method="POST")[0] == 405  # ours: just not allowed
    assert answer(server, "/api/runs", {"Origin": "http://evil.example"})[0] == 200  # GET


# -- every answer's headers ------------------------------------------------------------------
def test_every_answer_forbids_framing_and_foreign_scripts(server: UiServer) -> None:
    """No other site may frame a page (clickjacking), run a script in it or sniff a type;
    refused answers included."""
    asked = [(route, {}) for route in [*ROUTES, "/static/app.js", "/no/such/page"]]
    asked += [("/api/runs", {"Host": "evil.example"}), ("/", {"Sec-Fetch-Site": "cross-site"})]
    statuses = set()
    for route, headers in asked:
        status, _, got = answered(server, route, headers)
        statuses.add(status)
        policy = got.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, route
        assert "unsafe-inline" not in policy, route
        assert got.get("X-Frame-Options") == "DENY", route
        assert got.get("X-Content-Type-Options") == "nosniff", route
        assert got.get("Referrer-Policy") == "no-referrer", route
    assert {200, 404, 421, 403} <= statuses
