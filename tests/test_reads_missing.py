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


def test_a_worker_in_another_folder_records_what_the_driver_checks_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``files_read`` as a worker started in another folder than the driver calls it: the
    declared output its code names (``out/report.txt``, written at the root, not in the
    worker's folder) is no read, missing or not; a file read and one looked for by relative
    paths are recorded where the worker read or missed them, which the driver checks (its own
    ``data/in.csv`` and ``overrides.json`` are other files: no change, nothing appeared)."""
    from etherealfabric.run._readcheck import changed_read
    from etherealfabric.run._reads import files_read

    root, worker = tmp_path / "project", tmp_path / "worker"
    for folder, text in ((root, "driver"), (worker, "worker")):
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "in.csv").write_text(f"{text},1\n")
    (root / "out").mkdir()
    (root / "out" / "report.txt").write_text("x=6\n")  # the output, at the root
    (root / "overrides.json").write_text("{}")  # the driver has one, the worker none
    for relative in (True, False):  # (True: the worker says it runs in the driver's folder)
        monkeypatch.chdir(worker)
        reads = files_read(
            {"./data/in.csv": False, "./out/": False},
            node="report",
            root=str(root),
            writes=("out/report.txt",),
            relative=relative,
            missing=["./out/report.txt", "./overrides.json"],
        )
        assert not [k for k in reads if "out" in k.split(os.sep)]
        monkeypatch.chdir(root)
        record = {"reads": reads, "read_on": "here", "read_in": str(root)}
        if relative:  # as a worker in the driver's folder: the driver's files are others
            assert set(reads) == {"./data/in.csv", "./overrides.json"}
            assert changed_read(record, root=str(root), file_cache=None) is not None
        else:
            assert set(reads) == {str(worker / "data" / "in.csv"), str(worker / "overrides.json")}
            assert changed_read(record, root=str(root), file_cache=None) is None
            (worker / "data" / "in.csv").write_text("worker,2\n")
            assert changed_read(record, root=str(root), file_cache=None) == str(
                worker / "data" / "in.csv"
            )
