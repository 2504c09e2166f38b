"""Paths a node looks for that are not there when it runs (an optional override file, a folder
it globs that does not exist yet): recorded as missing, and a cache hit is refused once one
appears (one ``stat`` each), so the result is what a fresh run computes."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import Workflow, node, untracked
from etherealfabric.journal import Journal


def records(home: Path) -> dict[str, dict[str, Any]]:
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute("SELECT node, record FROM actions").fetchall()
    return {node: json.loads(record) for node, record in rows}


@node
def settings() -> dict[str, Any]:
    cfg: dict[str, Any] = {"threshold": 0.5}
    if Path("overrides.json").exists():  # a stat: no audit event
        cfg.update(json.loads(Path("overrides.json").read_text()))
    return cfg


@node
def extras() -> int:
    return sum(int(Path(f).read_text()) for f in sorted(glob.glob("data/extra/*.csv")))


def test_an_optional_file_created_later_runs_the_node_again(home: Path) -> None:
    with Workflow("optional", root=".") as wf:
        out = settings()
    assert wf.execute()[out] == {"threshold": 0.5}
    assert records(home)["settings"]["reads"] == {"./overrides.json": {"missing": True}}
    assert wf.execute().cached == 1

    Path("overrides.json").write_text('{"threshold": 0.9}')
    (planned,) = wf.plan().to_dict()["nodes"]
    assert planned["action"] == "run"
    assert "'./overrides.json', which was not there when it ran, appeared" in planned["reason"]
    again = wf.execute()
    assert (again[out], again.executed) == ({"threshold": 0.9}, 1)
    assert "digest" in records(home)["settings"]["reads"]["./overrides.json"]
    assert wf.execute().cached == 1


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_folder_globbed_before_it_exists_runs_the_node_again_when_it_appears(
    home: Path, backend: str
) -> None:
    Path("data").mkdir()
    with Workflow("glob", root=".") as wf:
        out = extras()
    options: dict[str, Any] = {"backend": backend, "max_workers": 1}
    assert wf.execute(**options)[out] == 0
    assert records(home)["extras"]["reads"]["./data/extra/"] == {"missing": True}
    assert wf.execute(**options).cached == 1

    Path("data/extra").mkdir()
    Path("data/extra/a.csv").write_text("5\n")
    again = wf.execute(**options)
    assert (again[out], again.executed) == (5, 1)
    assert wf.execute(**options).cached == 1


def test_missing_paths_left_out(home: Path) -> None:
    """Not a missing read: an untracked path, a declared output (written by the node), a text
    that is no file name (a version, a pattern, a message)."""

    @node(writes=["out/model.txt"])
    def train() -> tuple[str, ...]:
        with untracked("optional.cfg"):
            Path("optional.cfg").exists()
        os.makedirs("out", exist_ok=True)
        Path("out/model.txt").write_text("m")
        return ("1.2", "*.csv", "done.", "https://example.com/a.csv", "%(name)s.log")

    with Workflow("left-out", root=".") as wf:
        train()
    wf.execute()
    assert "reads" not in records(home)["train"]
