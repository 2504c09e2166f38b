"""The web UI over HTTP: a real ``etherealfabric ui`` server (uvicorn, in a child process, on a
free loopback port) over a real journal written by real ``etherealfabric run`` processes.

The browser tests (``test_ui_browser.py``) reuse the helpers here. Waits are bounded and
generous (a slow, busy two-core machine); nothing asserts how long anything took.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

WAIT = 120.0  # seconds: the longest any wait here may take before the test fails

FLOW = """
from etherealfabric import Workflow, node

N = {n}

@node
def load(n):
    print("loading", n)
    return list(range(n))

@node
def square(xs):
    return [x * x for x in xs]

@node
def total(xs):
    import logging
    logging.getLogger("flow").warning("summing %d", len(xs))
    return sum(xs)

@node
def boom(xs):
    raise ValueError("no good at all")

with Workflow("squares") as wf:
    sq = square(load(N))
    total(sq)
    boom(sq)
"""

LIVE = """
import time
from pathlib import Path
from etherealfabric import Workflow, node

SIGNAL = {signal!r}
TOKEN = {token!r}  # each live run's own: its slow node runs (a path in the root is keyed
# root-relative, so SIGNAL alone is the same in every test's folder)

@node
def first():
    return 1

@node
def slow(x):
    print("slow is waiting for", SIGNAL, TOKEN)
    deadline = time.time() + 300
    while not Path(SIGNAL).exists() and time.time() < deadline:
        time.sleep(0.05)
    return x + 1

@node
def last(y):
    return y * 2

with Workflow("live") as wf:
    last(slow(first()))
"""


# -- helpers (also used by test_ui_browser.py) -----------------------------------------------
def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, capture_output=True, text=True, timeout=WAIT, env=env, check=False,
    )  # fmt: skip
    if check and done.returncode not in (0, 1):
        raise AssertionError(f"etherealfabric {' '.join(args)}: {done.stderr}")
    return done


def write_flow(folder: Path, n: int) -> Path:
    path = folder / "flow.py"
    path.write_text(textwrap.dedent(FLOW.format(n=n)))
    return path


def make_home(folder: Path) -> dict[str, Any]:
    """A home with two runs of the squares workflow (N=1000, then N=2000); both fail at boom."""
    home = folder / "home"
    flow = write_flow(folder, 1000)
    first = json.loads(cli("run", str(flow), "--home", str(home), "--json", cwd=folder).stdout)
    write_flow(folder, 2000)
    second = json.loads(cli("run", str(flow), "--home", str(home), "--json", cwd=folder).stdout)
    return {"home": home, "flow": flow, "first": first["run_id"], "second": second["run_id"]}


def finish(proc: subprocess.Popen[str], *, kill: bool = False) -> tuple[str, str]:
    """Wait for (or kill) a run started by :func:`start_live_run`; its stdout and stderr."""
    if kill and proc.poll() is None:
        proc.kill()
    out, err = proc.communicate(timeout=WAIT)
    return out, err


def start_live_run(folder: Path, home: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start the live workflow; its node ``slow`` runs until the returned signal file exists."""
    signal = folder / "go"
    path = folder / "live.py"
    path.write_text(textwrap.dedent(LIVE.format(signal=str(signal), token=os.urandom(8).hex())))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", str(path), "--home", str(home), "--json"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    return proc, signal


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UiServer:
    """``etherealfabric ui`` in a child process on a free loopback port."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric", "ui", "--home", str(home),
             "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**clean, **(env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.get(
                    "/api/health", headers={"Authorization": f"Bearer {self._token(args, env)}"}
                )
                return
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()
                    if exc.code in (401, 503):
                        return  # up, and asking for a token (or saying the journal is damaged)
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the UI did not start: {self.stop()}") from exc
                time.sleep(0.1)

    @staticmethod
    def _token(args: tuple[str, ...], env: dict[str, str] | None) -> str:
        if "--token" in args:
            return args[args.index("--token") + 1]
        return (env or {}).get("ETHEREALFABRIC_UI_TOKEN", "")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            body = response.read()
            kind = response.headers.get("content-type", "")
        return json.loads(body) if "json" in kind else body.decode()

    def stop(self) -> str:
        """Stop the server; its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, stderr = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate(timeout=30)
        return stderr or ""


def wait_for(predicate: Any, what: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def status_code(server: UiServer, path: str, headers: dict[str, str] | None = None) -> int:
    try:
        server.get(path, headers=headers)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    return 200


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_home(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def server(made: dict[str, Any]) -> Iterator[UiServer]:
    running = UiServer(made["home"])
    yield running
    running.stop()


# -- the API ---------------------------------------------------------------------------------
def test_runs_lists_runs_newest_first_with_counts(server: UiServer, made: dict[str, Any]) -> None:
    data = server.get("/api/runs")
    ids = [r["id"] for r in data["runs"]]
    assert ids[:2] == [made["second"], made["first"]]
    second = data["runs"][0]
    assert (second["workflow"], second["status"]) == ("squares", "failed")
    assert (second["executed"], second["cached"], second["failed"]) == (4, 0, 1)
    assert second["duration"] >= 0
    assert data["workflows"] == ["squares"]


def test_runs_filters_by_workflow_status_and_since(server: UiServer) -> None:
    assert server.get("/api/runs?workflow=nope")["runs"] == []
    assert len(server.get("/api/runs?workflow=squares&status=failed")["runs"]) == 2
    assert server.get("/api/runs?status=succeeded")["runs"] == []
    assert len(server.get("/api/runs?since=1d")["runs"]) == 2
    assert server.get("/api/runs?since=2000-01-01&limit=1")["runs"][0]["workflow"] == "squares"
    assert status_code(server, "/api/runs?since=yesterdayish") == 400


def test_run_has_counts_failures_with_traceback_and_resume_line(
    server: UiServer, made: dict[str, Any]
) -> None:
    first, second = made["first"], made["second"]
    # a unique prefix works (the two runs may start in one second: their ids then share more)
    n = next(n for n in range(17, len(first) + 1) if first[:n] != second[:n])
    data = server.get(f"/api/runs/{first[:n]}")
    assert data["run"]["id"] == made["first"]
    assert data["counts"] == {"succeeded": 3, "failed": 1}
    [failure] = data["failures"]
    assert failure["node"] == "boom"
    assert "ValueError: no good at all" in failure["traceback"]
    assert f"etherealfabric resume {made['first']} --home" in data["resume"]


def test_graph_edges_come_from_the_key_components(server: UiServer, made: dict[str, Any]) -> None:
    data = server.get(f"/api/runs/{made['first']}/graph")
    edges = {(e["from"], e["to"]) for e in data["edges"]}
    assert edges == {("load", "square"), ("square", "total"), ("square", "boom")}
    assert data["statuses"] == {
        "load": "succeeded", "square": "succeeded", "total": "succeeded", "boom": "failed",
    }  # fmt: skip
    y = {n["node"]: n["y"] for n in data["nodes"]}
    assert y["load"] < y["square"] < y["total"] == y["boom"]
    svg = server.get(f"/api/runs/{made['first']}/graph.svg")
    assert 'class="n st-failed" data-node="boom"' in svg


def test_node_has_attempts_logs_components_explain_and_outputs(
    server: UiServer, made: dict[str, Any]
) -> None:
    run = made["second"]
    load = server.get(f"/api/runs/{run}/nodes/load")
    assert load["status"] == "succeeded"
    assert load["attempts"][0]["output"] == "loading 2000\n"
    assert load["components"]["params_repr"] == {"n": "2000"}
    assert [c["text"] for c in load["explain"]["changes"]] == ["param n: 1000 → 2000"]
    assert load["explain"]["previous_run"] == made["first"]
    [output] = load["outputs"]
    assert (output["name"], output["serializer"]) == ("result", "json")
    assert output["size"] > 0
    assert server.get(f"/api/runs/{run}/logs/total")[0]["output"] == "WARNING flow: summing 2000\n"
    assert server.get(f"/api/runs/{run}/explain/total")["verdict"] == "executed"
    assert server.get(f"/api/runs/{run}/components/square")["inputs"]["xs"][0].startswith(
        "load.result@"
    )
    assert server.get(f"/api/runs/{run}/attempts/boom")[0]["error"] == "ValueError: no good at all"
    inputs = server.get(f"/api/runs/{run}/nodes/total")["inputs"]
    assert [(i["input"], i["node"], i["output"]) for i in inputs] == [("xs", "square", "result")]


def test_preview_of_a_small_output(server: UiServer, made: dict[str, Any]) -> None:
    preview = server.get(f"/api/runs/{made['first']}/preview/result/total")
    assert preview == {"kind": "text", "text": str(sum(x * x for x in range(1000))),
                       "type": "builtins.int"}  # fmt: skip


def test_unknown_run_or_node_is_404(server: UiServer, made: dict[str, Any]) -> None:
    assert status_code(server, "/api/runs/nope") == 404
    assert status_code(server, f"/api/runs/{made['first']}/nodes/nope") == 404
    assert status_code(server, "/runs/nope") == 404
    assert status_code(server, f"/runs/{made['first']}/nodes/nope") == 404  # the page too
    assert status_code(server, "/runs/nope/nodes/total") == 404


def test_an_error_page_never_echoes_markup_from_the_address(server: UiServer) -> None:
    """The 404 of an unknown run names it, escaped: a link to /runs/<img onerror=...> runs
    nothing."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        server.get("/runs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    body = caught.value.read().decode()
    caught.value.close()
    assert caught.value.code == 404
    assert "<img" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body


@pytest.mark.parametrize("limit", ["abc", "-1", "0", "1.5"])
def test_a_bad_runs_limit_is_a_clear_400(server: UiServer, limit: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        server.get(f"/api/runs?limit={limit}")
    body = json.loads(caught.value.read())
    caught.value.close()
    assert caught.value.code == 400
    assert body == {"error": f"limit={limit!r} is not a whole number of runs of at least 1"}


def test_status_polling_answers_unchanged_for_the_same_version(
    server: UiServer, made: dict[str, Any]
) -> None:
    first = server.get(f"/api/runs/{made['first']}/status")
    assert first["statuses"]["boom"] == "failed"
    again = server.get(f"/api/runs/{made['first']}/status?version={first['version']}")
    assert again["unchanged"] is True and "statuses" not in again


def test_cache_stats_and_hit_rates(server: UiServer, made: dict[str, Any]) -> None:
    data = server.get("/api/cache")
    nodes = {e["node"] for e in data["by_node"]}
    assert nodes == {"load", "square", "total"}
    assert data["records"] == 6 and data["bytes"] > 0
    assert data["by_workflow"][0]["workflow"] == "squares"
    assert [r["id"] for r in data["runs"]] == [made["first"], made["second"]]
    assert [r["hit_rate"] for r in data["runs"]] == [0.0, 0.0]


def test_pages_are_served(server: UiServer, made: dict[str, Any]) -> None:
    assert "<table" in server.get("/")
    page = server.get(f"/runs/{made['first']}")
    assert 'data-node="boom"' in page and "ValueError: no good at all" in page
    assert f"/runs/{made['first']}/nodes/total" in page
    assert 'data-page="node"' in server.get(f"/runs/{made['first']}/nodes/total")
    assert 'data-page="cache"' in server.get("/cache")
    assert "function runPage" in server.get("/static/app.js")


def test_the_ui_never_writes_the_journal(server: UiServer, made: dict[str, Any]) -> None:
    files = sorted(made["home"].glob("journal.db*"))

    def digests() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}

    before = digests()
    run = made["first"]
    for path in ("/api/runs", f"/api/runs/{run}", f"/api/runs/{run}/graph", "/api/cache",
                 f"/api/runs/{run}/nodes/load", f"/runs/{run}", f"/api/runs/{run}/status"):  # fmt: skip
        server.get(path)
    assert digests() == before
    assert sorted(made["home"].glob("journal.db*")) == files


# -- live runs -------------------------------------------------------------------------------
def test_a_run_in_progress_is_seen_live_then_finished(
    server: UiServer, made: dict[str, Any], tmp_path: Path
) -> None:
    proc, signal = start_live_run(tmp_path, made["home"])
    try:
        running = wait_for(
            lambda: [
                r for r in server.get("/api/runs?workflow=live")["runs"] if r["status"] == "running"
            ],
            "the live run to be listed as running",
        )
        run_id = running[0]["id"]
        wait_for(
            lambda: (
                server.get(f"/api/runs/{run_id}/status").get("statuses", {}).get("slow")
                == "running"
            ),
            "node slow to be running",
        )
        signal.touch()
        done = wait_for(
            lambda: (
                (s := server.get(f"/api/runs/{run_id}/status"))["run"]["status"] == "succeeded"
                and s
            ),
            "the run to succeed",
        )
        assert done["statuses"] == {"first": "succeeded", "slow": "succeeded", "last": "succeeded"}
    finally:
        signal.touch()
        finish(proc)


def test_a_killed_run_is_shown_interrupted(made: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, signal = start_live_run(tmp_path, home)
    server = None
    try:
        server = UiServer(home)
        assert server is not None
        wait_for(
            lambda: any(r["status"] == "running" for r in server.get("/api/runs")["runs"]),
            "the run to start",
        )
        run_id = server.get("/api/runs")["runs"][0]["id"]
        wait_for(
            lambda: (
                server.get(f"/api/runs/{run_id}/status").get("statuses", {}).get("slow")
                == "running"
            ),
            "node slow to be running",
        )
        polled = server.get(f"/api/runs/{run_id}/status")["version"]
        finish(proc, kill=True)
        # the page polling with the version it last saw hears of it: no row changed, but the
        # run's status as shown did (a stamp of the rows alone answered "unchanged" forever)
        after = server.get(f"/api/runs/{run_id}/status?version={polled}")
        assert "unchanged" not in after and after["run"]["status"] == "interrupted"
        assert after["counts"].get("running") is None and after["running"] == []
        assert server.get("/api/runs")["runs"][0]["status"] == "interrupted"
        # its unfinished attempt is shown interrupted everywhere, as `show` has it once marked
        view = server.get(f"/api/runs/{run_id}")
        # (`last`, never started: not run, as `status` counts it "of 3")
        assert view["counts"] == {"succeeded": 1, "interrupted": 1, "not_run": 1}
        assert view["running"] == []
        slow = server.get(f"/api/runs/{run_id}/nodes/slow")
        assert slow["status"] == "interrupted"
        assert [a["status"] for a in slow["attempts"]] == ["interrupted"]
        attempts = server.get(f"/api/runs/{run_id}/nodes")
        assert {a["node"]: a["status"] for a in attempts}["slow"] == "interrupted"
        shown = server.get("/api/runs")["runs"][0]  # counted from what it committed
        assert (shown["executed"], shown["cached"], shown["failed"]) == (1, 0, 0)
        shown = server.get(f"/api/runs/{run_id}")["run"]
        assert (shown["executed"], shown["cached"], shown["failed"]) == (1, 0, 0)
        assert server.get(f"/api/runs/{run_id}/status")["statuses"]["slow"] == "interrupted"
        assert "etherealfabric resume" in server.get(f"/api/runs/{run_id}")["resume"]
        assert [r["id"] for r in server.get("/api/runs?status=interrupted")["runs"]] == [run_id]
    finally:
        signal.touch()
        finish(proc, kill=True)
        if server is not None:
            server.stop()


# -- serving -----------------------------------------------------------------------------------
def test_a_token_protects_every_request(made: dict[str, Any]) -> None:
    server = UiServer(made["home"], env={"ETHEREALFABRIC_UI_TOKEN": "s3cret-token"})
    try:
        assert status_code(server, "/api/runs") == 401
        assert status_code(server, "/") == 401
        assert status_code(server, "/api/runs", {"Authorization": "Bearer wrong"}) == 401
        data = server.get("/api/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert len(data["runs"]) >= 2
        # ?token= once: a cookie, and a redirect to the address without the token
        request = urllib.request.Request(server.base + "/cache?token=s3cret-token")
        opener = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=WAIT)
        assert answer.value.code == 303
        assert answer.value.headers["location"] == "/cache"
        answer.value.close()
        cookie = answer.value.headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in answer.value.headers["set-cookie"]
        assert "<table" in server.get("/cache", headers={"Cookie": cookie})
    finally:
        server.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_loopback_by_default_and_a_warning_for_another_host(made: dict[str, Any]) -> None:
    quiet = UiServer(made["home"])
    assert "warning" not in quiet.stop()
    server = UiServer(made["home"], "--host", "0.0.0.0", "--token", "t0k")
    stderr = server.stop()
    assert "warning: serving on 0.0.0.0" in stderr
    assert "--token" not in stderr.split("warning")[1].split("\n")[0]  # it has one


def test_no_journal_yet_is_an_empty_list(tmp_path: Path) -> None:
    server = UiServer(tmp_path / "empty-home")
    try:
        assert server.get("/api/runs") == {
            "runs": [],
            "workflows": [],
            "running": 0,
            "journal": False,
            "more": False,
        }
        assert server.get("/api/cache")["records"] == 0
        assert "<table" in server.get("/")
    finally:
        server.stop()
    assert not (tmp_path / "empty-home").exists()


def test_the_cli_does_not_import_the_web_framework() -> None:
    code = "import sys, etherealfabric.cli; print([m for m in ('starlette', 'uvicorn', 'jinja2') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the layout, without a server ------------------------------------------------------------------
def test_layout_puts_each_node_below_its_inputs_and_wraps_wide_layers() -> None:
    from etherealfabric.ui._layout import ROW, layout, to_svg

    fan = {
        "root": [],
        **{f"leaf{i:03d}": ["root"] for i in range(ROW * 2 + 5)},
        "sink": ["leaf000"],
    }
    drawing = layout(fan)
    ys = {n: y for n, (_, y) in drawing.positions.items()}
    assert all(ys[f"leaf{i:03d}"] > ys["root"] for i in range(ROW * 2 + 5))
    assert ys["sink"] > max(ys[n] for n in fan if n.startswith("leaf"))
    assert len({ys[n] for n in fan if n.startswith("leaf")}) == 3  # 85 leaves on rows of 40
    assert drawing.layers == 3
    svg = to_svg(drawing, {"root": "failed"}, href="/x/")
    assert 'class="n st-failed" data-node="root"' in svg
    assert svg.count("<path") == 1  # all edges in one path
    assert svg.split('class="edges" d="')[1].split('"')[0].count("M") == len(fan) - 1


def test_layout_escapes_names() -> None:
    from etherealfabric.ui._layout import layout, to_svg

    svg = to_svg(layout({"<b>&": []}), {})
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_is_refused_not_taken_for_no_token(tmp_path: Path, token: str) -> None:
    """`--token "$UNSET"` would serve without any token while the user thinks it is protected."""
    from click.testing import CliRunner

    from etherealfabric.cli import main

    result = CliRunner().invoke(main, ["ui", "--home", str(tmp_path), "--token", token])
    assert result.exit_code == 2
    assert "--token is empty" in result.stderr


# -- the port --------------------------------------------------------------------------------------
def _ui(home: Path, *args: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "ui", "--home", str(home), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean,
    )  # fmt: skip


def test_a_port_in_use_is_a_one_line_error_that_suggests_port_0(tmp_path: Path) -> None:
    """Before: uvicorn's `ERROR: [Errno 98] ...` after the address had been printed as if the
    UI were up, and exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _ui(tmp_path, "--port", str(port))
        try:
            _, stderr = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert f"port {port}" in lines[0] and "in use" in lines[0] and "--port 0" in lines[0]
    assert "Traceback" not in stderr and "Errno" not in stderr and "UI on http" not in stderr


def test_port_0_serves_on_a_free_port_and_prints_it(tmp_path: Path) -> None:
    proc = _ui(tmp_path, "--port", "0")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the address, printed once the port is bound
        address = line.split(" on ")[1].split()[0]
        port = int(address.rsplit(":", 1)[1].rstrip("/"))
        assert port != 0, line
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with urllib.request.urlopen(address + "api/runs", timeout=WAIT) as response:
                    assert json.loads(response.read())["runs"] == []
                break
            except (urllib.error.URLError, ConnectionError) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the UI did not answer on {address}") from exc
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_node_label_is_cut_by_its_width_not_its_length() -> None:
    """18 upper-case letters are wider than a box; 18 narrow ones are not (found by review)."""
    from etherealfabric.ui._layout import LABEL_WIDTH, _label, _width, layout, to_svg

    assert _label("WWWWWWWWWWWWWWWWWW").endswith("…")
    assert _label("LOAD_CUSTOMER_DATA").endswith("…")
    assert _label("iiiiiiiiiiiiiiiiiiiiiiii") == "i" * 24
    for name in ("W" * 18, "LOAD_CUSTOMER_DATA", "数据处理数据处理数据处理", "a" * 40, "short"):
        assert _width(_label(name)) <= LABEL_WIDTH
        assert name.startswith(_label(name).rstrip("…"))
    svg = to_svg(layout({"W" * 18: []}), {})
    assert f"<title>{'W' * 18} (pending)</title>" in svg  # the full name in the tooltip
