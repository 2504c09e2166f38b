"""The command line on a map's children and on odd input, in real subprocesses: ``show`` and
``cat`` of one child (``square[12]``) as ``logs`` finds it, the count line of ``show --items``,
and ``runs --since`` ages past what a date can hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
from etherealfabric import Workflow, node

@node
def items(n):
    return list(range(n))

@node
def square(x):
    if x % 10 == 3:
        raise ValueError(f"no {x}")
    return x * x

with Workflow("mapflow") as wf:
    square.map(items(20), max_failures=5)
"""


class Cli:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        self.env.update(COLUMNS="250", ETHEREALFABRIC_HOME=str(folder / "home"))

    def __call__(self, *args: str, code: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args], cwd=self.folder, env=self.env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == code, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, str]:
    folder = tmp_path_factory.mktemp("children")
    (folder / "mapflow.py").write_text(FLOW)
    cli = Cli(folder)
    cli("run", "mapflow.py")
    return cli, str(json.loads(cli("runs", "--json"))[0]["id"])


def test_show_of_one_child_shows_its_attempts_as_logs_finds_them(ran: tuple[Cli, str]) -> None:
    cli, run_id = ran
    assert "square[13] attempt 1 (failed)" in cli("logs", run_id, "square[13]")
    shown = json.loads(cli("show", run_id, "square[13]", "--json"))
    [row] = shown["nodes"]
    assert (row["node"], row["status"]) == ("square[13]", "failed")
    assert "ValueError: no 13" in row["error"]
    out = cli("show", run_id, "square[12]")
    assert "square[12]" in out and "succeeded" in out
    out = cli("show", run_id, "square[99]", code=2)
    assert "has no node 'square[99]'" in out and f"show {run_id} square --items" in out


def test_cat_of_one_child_prints_its_value(ran: tuple[Cli, str]) -> None:
    cli, run_id = ran
    assert cli("cat", run_id, "square[12]").strip() == "144"
    assert json.loads(cli("cat", run_id, "square[4]", "--json")) == 16
    out = cli("cat", run_id, "square[13]", code=2)
    assert "square[13]" in out and "failed" in out
    out = cli("cat", run_id, "square[99]", code=2)
    assert "square[99]" in out and f"show {run_id} square --items" in out


def test_show_items_counts_its_rows_in_the_singular_and_plural(ran: tuple[Cli, str]) -> None:
    cli, run_id = ran
    out = cli("show", run_id, "square", "--items", "--status", "failed")
    assert "2 rows: 2 failed" in out
    out = cli("show", run_id, "square", "--items", "--status", "running")
    assert "0 rows: none" in out
    one = FLOW.replace("items(20)", "items(4)")
    (cli.folder / "one.py").write_text(one.replace('"mapflow"', '"oneflow"'))
    cli("run", "one.py")
    other = str(json.loads(cli("runs", "--workflow", "oneflow", "--json"))[0]["id"])
    out = cli("show", other, "square", "--items", "--status", "failed")
    assert "1 row: 1 failed" in out and "1 rows" not in out


@pytest.mark.parametrize("age", ["99999999999999999999999d", "1e400s".replace("e400", "0" * 30)])
def test_runs_since_an_age_no_date_can_hold_is_exit_2(ran: tuple[Cli, str], age: str) -> None:
    cli, _ = ran
    out = cli("runs", "--since", age, code=2)
    assert age in out and "--since" in out, out
    assert "2h" in out or "3d" in out, out  # the forms it takes
