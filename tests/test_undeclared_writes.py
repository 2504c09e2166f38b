"""Files a node writes without declaring them: the cache does not store them, so a hand edit of
one would reach the nodes that read it while a fresh home would not see it. The node's run
warns, naming the file and the declaration that fixes it; declared, the file is restored."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from etherealfabric import Workflow, node, untracked

FLOW = """
from etherealfabric import Workflow, node

@node{decorator}
def export():
    with open("inter.csv", "w") as fh:
        fh.write("a\\n1\\n2\\n")
    with open("history.log", "a") as fh:  # appended to: a log, never named
        fh.write("ran\\n")
    return 1

@node
def consume(x):
    with open("inter.csv") as fh:
        return len(fh.read().splitlines()) + x

with Workflow("undeclared", root=".") as wf:
    consume(export())
"""


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd,
        env={**env, "ETHEREALFABRIC_HOME": str(cwd / "home")},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_the_command_line_names_an_undeclared_file_and_the_fix(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW.format(decorator=""))
    done = _run(tmp_path, "run", "--backend", backend, "flow.py")
    assert done.returncode == 0, done.stderr
    assert "node 'export' wrote 'inter.csv' without declaring it" in done.stderr
    assert "@node(writes=['inter.csv'])" in done.stderr
    assert "history.log" not in done.stderr  # appended to, not written whole
    assert done.stderr.count("without declaring") == 1  # consume only read it
    again = _run(tmp_path, "run", "--backend", backend, "flow.py")
    assert "0 executed, 2 cached" in again.stderr
    assert "without declaring" not in again.stderr  # a hit runs nothing, so says nothing


def test_declared_the_file_is_restored_and_a_hand_edit_reaches_nobody(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW.format(decorator='(writes=["inter.csv"])'))
    first = _run(tmp_path, "run", "flow.py")
    assert first.returncode == 0, first.stderr
    assert "without declaring" not in first.stderr
    (tmp_path / "inter.csv").write_text("a\n1\n2\n3\n4\n")  # edited by hand
    second = _run(tmp_path, "run", "flow.py")
    assert "0 executed, 2 cached" in second.stderr, second.stderr
    assert (tmp_path / "inter.csv").read_text() == "a\n1\n2\n"  # what export wrote
    shown = _run(tmp_path, "cat", "latest", "consume")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "4"  # 3 lines + 1, as a fresh home computes


def test_one_warning_for_a_whole_map_and_one_per_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @node
    def part(day: str) -> str:
        os.makedirs("out", exist_ok=True)
        Path(f"out/{day}.txt").write_text(day)
        return day

    @node
    def days() -> list[str]:
        return ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    with Workflow("days", root=".") as wf:
        part.map(days())
    with caplog.at_level(logging.WARNING, logger="etherealfabric.files"):
        assert wf.execute(backend="threads").executed == 2  # the map counts as one
    warnings = [r.getMessage() for r in caplog.records if "without declaring" in r.message]
    assert len(warnings) == 1, warnings
    assert "node 'part' wrote 'out/" in warnings[0]  # the first child to finish
    assert "return File('out/" in warnings[0] and "cannot declare writes=" in warnings[0]
    assert len(os.listdir("out")) == 7
    caplog.clear()
    Path("out/mon.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="etherealfabric.files"):
        wf.execute(backend="threads", force=["part*"])
    assert sum("without declaring" in r.message for r in caplog.records) == 1  # a new run


def test_no_warning_for_untracked_temporary_or_outside_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = Path(tempfile.mkdtemp(prefix="ef-outside-"))
    try:

        @node
        def quiet(folder: str) -> int:
            with untracked():
                Path("progress.txt").write_text("50%")
            os.makedirs(".cache/tool", exist_ok=True)
            Path(".cache/tool/index.json").write_text("{}")  # a tool's, in a hidden folder
            with tempfile.NamedTemporaryFile("w", dir=".", delete=True) as fh:
                fh.write("scratch")  # gone when the node is done
            (Path(folder) / "elsewhere.txt").write_text("x")  # neither below root nor cwd
            return 1

        project = tmp_path / "project"
        project.mkdir()
        os.chdir(project)
        with Workflow("quiet", root=".") as wf:
            quiet(str(outside))
        with caplog.at_level(logging.WARNING, logger="etherealfabric.files"):
            assert wf.execute().executed == 1
        assert (project / "progress.txt").read_text() == "50%"
        assert (project / ".cache/tool/index.json").exists()
        assert (outside / "elsewhere.txt").exists()
        assert not [r for r in caplog.records if "without declaring" in r.message]
    finally:
        for name in os.listdir(outside):
            os.unlink(outside / name)
        os.rmdir(outside)
