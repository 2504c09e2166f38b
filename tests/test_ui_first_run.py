"""``etherealfabric ui`` started on a home with no journal yet: an empty state (not an error),
and the runs as soon as the first run creates the journal, without restarting the server.
A real server on loopback and a real run in another process."""

from __future__ import annotations

import os
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


def test_the_ui_shows_an_empty_home_then_the_first_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = UiServer(home)
    try:
        empty = server.get("/api/runs")
        assert empty["runs"] == [] and empty["journal"] is False
        assert status_code(server, "/") == 200 and status_code(server, "/cache") == 200
        assert not home.exists(), "the UI must not create the home"

        (tmp_path / "flow.py").write_text(FLOW)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        ran = subprocess.run(
            [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--home", str(home)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr

        runs = wait_for(lambda: server.get("/api/runs")["runs"], "the first run in the UI")
        assert [(r["workflow"], r["status"]) for r in runs] == [("first-run", "succeeded")]
        assert server.get("/api/runs")["journal"] is True
        assert status_code(server, f"/runs/{runs[0]['id']}") == 200
        assert server.get("/api/cache")["records"] == 1
    finally:
        server.stop()
