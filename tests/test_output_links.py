"""A symbolic link where a file output goes is never followed to delete or write.

A node's file outputs are emptied before it runs, stored after, and put back on a cache hit.
A link at a declared path (or a folder above it, below the root) would point all of that at
whatever it names: a link committed to a repository could make a cache hit empty a home
folder. Each case goes through the command line in fresh processes, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FOLDER_FLOW = """
from pathlib import Path
from etherealfabric import Workflow, node, root_path

@node(writes=["out/dir/"])
def files():
    d = Path(root_path("out/dir")); d.mkdir(parents=True, exist_ok=True)
    (d / "x.txt").write_text("x\\n")
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "y.txt").write_text("y\\n")
    return 1

with Workflow("links", root=".") as wf:
    files()
"""

FILE_FLOW = """
from pathlib import Path
from etherealfabric import Workflow, node, root_path

@node(writes=["out/f.txt"])
def one_file():
    Path(root_path("out")).mkdir(exist_ok=True)
    Path(root_path("out/f.txt")).write_text("made by the node\\n")
    return 1

with Workflow("links", root=".") as wf:
    one_file()
"""

NESTED_FLOW = """
from pathlib import Path
from etherealfabric import File, Workflow, node, root_path

@node
def report():
    Path(root_path("out")).mkdir(exist_ok=True)
    Path(root_path("out/r.txt")).write_text("made by the node\\n")
    return {"report": File(root_path("out/r.txt"))}

with Workflow("links", root=".") as wf:
    report()
"""


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", *args],
        cwd=cwd,
        env={**env, "ETHEREALFABRIC_HOME": str(cwd / "home")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _precious(tmp_path: Path) -> Path:
    """A folder outside the project that a link will point at, with a file to keep."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep\n")
    return folder


def _refused(done: subprocess.CompletedProcess[str], node: str, link: Path) -> None:
    assert done.returncode != 0, done.stderr
    assert "0 cached, 1 failed" in done.stderr, done.stderr
    assert f"node {node!r}" in done.stderr
    assert f"the symbolic link {link}" in done.stderr
    assert f"rm {link}" in done.stderr  # what to do


def test_a_hit_never_empties_the_folder_a_declared_folder_links_to(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(FOLDER_FLOW)
    assert _run(project).returncode == 0
    precious = _precious(tmp_path)
    link = project / "out" / "dir"
    for child in sorted(link.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    link.rmdir()
    link.symlink_to(precious)

    refused = _run(project)
    _refused(refused, "files", link)
    assert sorted(p.name for p in precious.iterdir()) == ["keep.txt"]  # nothing wiped or added
    assert (precious / "keep.txt").read_text() == "keep\n"
    assert link.is_symlink()  # left alone too

    link.unlink()  # as the message says: the record was kept, so this is a hit
    again = _run(project)
    assert "0 executed, 1 cached" in again.stderr, again.stderr
    assert (link / "x.txt").read_text() == "x\n" and not link.is_symlink()
    assert (link / "sub" / "y.txt").read_text() == "y\n"


@pytest.mark.parametrize("flow", [FOLDER_FLOW, FILE_FLOW])
def test_a_linked_parent_folder_is_refused_and_its_target_kept(tmp_path: Path, flow: str) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(flow)
    assert _run(project).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "dir").mkdir(parents=True)
    (elsewhere / "dir" / "mine.txt").write_text("mine\n")
    (elsewhere / "f.txt").write_text("mine\n")
    out = project / "out"
    for child in sorted(out.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    out.rmdir()
    out.symlink_to(elsewhere)

    refused = _run(project)
    _refused(refused, "files" if flow is FOLDER_FLOW else "one_file", out)
    assert (elsewhere / "dir" / "mine.txt").read_text() == "mine\n"
    assert (elsewhere / "f.txt").read_text() == "mine\n"
    assert sorted(p.name for p in (elsewhere / "dir").iterdir()) == ["mine.txt"]


def test_a_declared_file_that_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "out").mkdir(parents=True)
    (project / "flow.py").write_text(FILE_FLOW)
    precious = _precious(tmp_path) / "keep.txt"
    link = project / "out" / "f.txt"
    link.symlink_to(precious)

    refused = _run(project)  # a first run: the node itself would have written through it
    _refused(refused, "one_file", link)
    assert precious.read_text() == "keep\n"
    assert link.is_symlink()


def test_a_file_inside_an_output_is_not_restored_through_a_link(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(NESTED_FLOW)
    assert _run(project).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "r.txt").write_text("mine\n")
    (project / "out" / "r.txt").unlink()
    (project / "out").rmdir()
    (project / "out").symlink_to(elsewhere)

    refused = _run(project)
    _refused(refused, "report", project / "out")
    assert (elsewhere / "r.txt").read_text() == "mine\n"  # neither restored nor rerun into


READING_FLOW = """
from pathlib import Path
from etherealfabric import File, Workflow, node, root_path

@node
def report():
    text = Path(root_path("in.txt")).read_text()
    Path(root_path("out")).mkdir(exist_ok=True)
    Path(root_path("out/r.txt")).write_text(text.upper())
    return {"report": File(root_path("out/r.txt"))}

with Workflow("links", root=".") as wf:
    report()
"""


def test_a_node_to_rerun_is_not_run_into_a_link_its_record_names(tmp_path: Path) -> None:
    """A miss (a file it read changed) whose last outputs now lie behind a link: running it
    would write through the link, then fail storing them; it fails before it runs."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(READING_FLOW)
    (project / "in.txt").write_text("old\n")
    assert _run(project).returncode == 0
    assert (project / "out" / "r.txt").read_text() == "OLD\n"
    (project / "in.txt").write_text("new\n")  # not a hit any more
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "r.txt").write_text("mine\n")
    (project / "out" / "r.txt").unlink()
    (project / "out").rmdir()
    (project / "out").symlink_to(elsewhere)

    refused = _run(project)
    _refused(refused, "report", project / "out")
    assert (elsewhere / "r.txt").read_text() == "mine\n"  # the node did not run into it

    (project / "out").unlink()  # as the message says
    again = _run(project)
    assert "1 executed, 0 cached" in again.stderr, again.stderr
    assert (project / "out" / "r.txt").read_text() == "NEW\n"


def test_links_inside_a_restored_folder_are_replaced_not_followed(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(FOLDER_FLOW)
    assert _run(project).returncode == 0
    precious = _precious(tmp_path)
    (precious / "x.txt").write_text("mine\n")
    (precious / "y.txt").write_text("mine too\n")
    folder = project / "out" / "dir"
    (folder / "x.txt").unlink()
    (folder / "x.txt").symlink_to(precious / "x.txt")  # a file replaced by a link
    for child in (folder / "sub").iterdir():
        child.unlink()
    (folder / "sub").rmdir()
    (folder / "sub").symlink_to(precious)  # a folder replaced by a link
    (folder / "extra").symlink_to(precious)  # a link the record does not name

    again = _run(project)
    assert "0 executed, 1 cached" in again.stderr, again.stderr
    assert not (folder / "x.txt").is_symlink() and (folder / "x.txt").read_text() == "x\n"
    assert not (folder / "sub").is_symlink()
    assert (folder / "sub" / "y.txt").read_text() == "y\n"
    assert not os.path.lexists(folder / "extra")
    # what the links pointed to is as it was
    assert sorted(p.name for p in precious.iterdir()) == ["keep.txt", "x.txt", "y.txt"]
    assert (precious / "x.txt").read_text() == "mine\n"
    assert (precious / "y.txt").read_text() == "mine too\n"
    assert (precious / "keep.txt").read_text() == "keep\n"


def test_a_link_above_the_root_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "proj"
    real.mkdir(parents=True)
    project = tmp_path / "proj"
    project.symlink_to(real)  # the whole project lives on another disk
    (real / "flow.py").write_text(FOLDER_FLOW.replace('root="."', f"root={str(project)!r}"))
    assert _run(project).returncode == 0
    (real / "out" / "dir" / "x.txt").unlink()
    again = _run(project)
    assert "0 executed, 1 cached" in again.stderr, again.stderr
    assert (real / "out" / "dir" / "x.txt").read_text() == "x\n"


MAP_FLOW = """
from pathlib import Path
from etherealfabric import File, Workflow, node, root_path

@node
def pages(n):
    Path(root_path("out")).mkdir(exist_ok=True)
    Path(root_path(f"out/{n}.txt")).write_text("made by the node\\n")
    return File(root_path(f"out/{n}.txt"))

with Workflow("links", root=".") as wf:
    pages.map([1, 2])
"""


def test_a_map_child_is_not_restored_nor_run_through_a_link(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(MAP_FLOW)
    first = _run(project)
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for n in (1, 2):
        (project / "out" / f"{n}.txt").unlink()
        (elsewhere / f"{n}.txt").write_text("mine\n")
    (project / "out").rmdir()
    (project / "out").symlink_to(elsewhere)

    refused = _run(project)
    assert refused.returncode != 0, refused.stderr
    assert f"the symbolic link {project / 'out'}" in refused.stderr, refused.stderr
    assert [(elsewhere / f"{n}.txt").read_text() for n in (1, 2)] == ["mine\n", "mine\n"]


SIBLINGS_FLOW = """
from pathlib import Path
from etherealfabric import Workflow, node, root_path

@node(writes=WRITES)
def report(n):
    out = Path(root_path("reports"))
    (out / "summary.csv").write_text(f"total,{n}\\n")
    (out / "stores" / "east.csv").write_text("east\\n")
    return n

with Workflow("link", root=".") as wf:
    report(3)
"""


def _siblings(tmp_path: Path, writes: list[str]) -> Path:
    """A project whose node declares a file and a folder (in the order ``writes``), run once."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "flow.py").write_text(SIBLINGS_FLOW.replace("WRITES", repr(writes)))
    first = _run(project)
    assert first.returncode == 0, first.stderr
    assert (project / "reports" / "summary.csv").read_text() == "total,3\n"
    return project


def _link_folder(project: Path, target: Path) -> Path:
    """``reports/stores`` replaced by a symbolic link to ``target``."""
    link = project / "reports" / "stores"
    for child in link.iterdir():
        child.unlink()
    link.rmdir()
    link.symlink_to(target)
    return link


@pytest.mark.parametrize("backend", ["threads", "processes"])
@pytest.mark.parametrize("how", ["force", "edited"])
def test_a_refused_folder_link_leaves_the_sibling_declared_file(
    tmp_path: Path, backend: str, how: str
) -> None:
    """A node declares a file and a folder; the folder is now a link. Re-running it (forced,
    or its code edited) is refused before anything is cleared: the declared file it wrote
    last time is still there (it was deleted: the paths were checked one at a time, each
    cleared once checked)."""
    project = _siblings(tmp_path, ["reports/summary.csv", "reports/stores/"])
    precious = _precious(tmp_path)
    link = _link_folder(project, precious)
    if how == "edited":
        flow = project / "flow.py"
        flow.write_text(flow.read_text().replace("    return n\n", "    return n * 1\n"))
        args: tuple[str, ...] = ()
    else:
        args = ("--force", "report")

    refused = _run(project, "--backend", backend, *args)
    assert refused.returncode != 0, refused.stderr
    assert "LinkedOutputError" in refused.stderr and f"the symbolic link {link}" in refused.stderr
    assert (project / "reports" / "summary.csv").read_text() == "total,3\n"  # untouched
    assert link.is_symlink()
    assert sorted(p.name for p in precious.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_refused_file_link_leaves_the_sibling_declared_folder(
    tmp_path: Path, backend: str
) -> None:
    """The same with the link at the declared FILE, the folder declared first: the folder is
    not emptied."""
    project = _siblings(tmp_path, ["reports/stores/", "reports/summary.csv"])
    precious = _precious(tmp_path) / "keep.txt"
    link = project / "reports" / "summary.csv"
    link.unlink()
    link.symlink_to(precious)

    refused = _run(project, "--backend", backend, "--force", "report")
    assert refused.returncode != 0, refused.stderr
    assert "LinkedOutputError" in refused.stderr and f"the symbolic link {link}" in refused.stderr
    assert (project / "reports" / "stores" / "east.csv").read_text() == "east\n"  # not emptied
    assert link.is_symlink() and precious.read_text() == "keep\n"


def test_a_hit_refused_for_a_link_restores_no_sibling(tmp_path: Path) -> None:
    """On a cache hit refused for a link nothing is restored: a sibling declared file edited
    by hand keeps the edit (it was put back before the link was seen)."""
    project = _siblings(tmp_path, ["reports/summary.csv", "reports/stores/"])
    link = _link_folder(project, _precious(tmp_path))
    (project / "reports" / "summary.csv").write_text("edited by hand\n")

    refused = _run(project)
    _refused(refused, "report", link)
    assert (project / "reports" / "summary.csv").read_text() == "edited by hand\n"

    link.unlink()  # as the message says: the record was kept, the next run is a hit
    again = _run(project)
    assert "0 executed, 1 cached" in again.stderr, again.stderr
    assert (project / "reports" / "summary.csv").read_text() == "total,3\n"
    assert (project / "reports" / "stores" / "east.csv").read_text() == "east\n"
