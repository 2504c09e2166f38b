"""The working folder a node's relative paths are from, known without a system call per node.

``os.getcwd`` gives the GIL up: asked once per node (by the task and by the file audit) it cost
a thread switch each, a third of the threads backend's time per trivial node. The folder is
now kept (``run/_audit.working_folder``) from the moment the audit hook is on, and forgotten
for good at the first ``os.chdir`` or ``os.fchdir`` the hook hears. These run in fresh
processes: pytest's own ``chdir`` between tests turns the kept folder off in its process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    from etherealfabric import Workflow, node
    from etherealfabric.run import _audit

    @node
    def rows(folder, after=None):
        start = os.getcwd()
        if folder:
            os.chdir(folder)
        try:
            return len(Path("data.csv").read_text().splitlines())
        finally:
            os.chdir(start)

    with Workflow("folders", root=".") as wf:
        here = rows("")
        there = rows("sub", here)  # (after it: the process has one folder at a time)
    kept_before = _audit._cwd
    results = wf.execute(backend="threads")
    print(results[here], results[there], results.executed, results.cached)
    print(kept_before is None, _audit._cwd is None, _audit.working_folder() == os.getcwd())
    """
)


def _run(tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_a_node_that_changes_folder_reads_and_is_keyed_where_it_read(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "sub" / "data.csv").write_text("a\nb\n")
    results, folder = _run(tmp_path)
    assert results == "1 2 2 0"
    # not kept before the audit started; forgotten once a node changed folder; still right
    assert folder == "True True True"
    assert _run(tmp_path)[0] == "1 2 0 2"
    (tmp_path / "sub" / "data.csv").write_text("a\nb\nc\n")  # only the chdir node read it
    assert _run(tmp_path)[0] == "1 3 1 1"
    (tmp_path / "data.csv").write_text("a\nb\nc\nd\n")  # (the code names it: both may run)
    assert _run(tmp_path)[0].startswith("4 3 ")


def test_the_folder_is_kept_until_a_chdir_or_fchdir_is_heard(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    script = textwrap.dedent(
        """
        import os
        from etherealfabric.run import _audit

        _audit._install()
        start = os.getcwd()
        print(_audit._cwd == start, _audit.working_folder() == start)
        fd = os.open("sub", os.O_RDONLY)
        os.fchdir(fd)
        print(_audit._cwd is None, _audit.working_folder() == os.path.join(start, "sub"))
        os.chdir(start)
        print(_audit.working_folder() == start)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True"] * 5


STAYS = textwrap.dedent(
    """
    import ctypes, ctypes.util, os, sys
    from pathlib import Path

    from etherealfabric import Workflow, node

    @node
    def stays():  # changes folder and does not change back
        os.chdir("sub")
        return len(Path("data.csv").read_text().splitlines())

    @node
    def in_c(after):  # changes folder where no audit hook hears it, then back
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        start = os.getcwd().encode()
        libc.chdir(b"sub")
        try:
            return len(Path("data.csv").read_text().splitlines())
        finally:
            libc.chdir(start)

    with Workflow("stays", root=".") as wf:
        in_c(stays())  # (one after the other: the process has one folder)
    results = wf.execute(backend=sys.argv[1])
    print(results["stays"]["result"], results["in_c"]["result"], results.executed,
          os.path.basename(os.getcwd()))
    """
)


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_file_read_after_a_chdir_not_undone_or_made_in_c_is_the_one_checked(
    tmp_path: Path, backend: str
) -> None:
    """``os.chdir("sub")`` left as it is: ``sub/data.csv``, which the node read, was recorded
    as ``./data.csv`` and the next run hashed the top folder's (a stale hit after an edit of
    ``sub/data.csv``, a re-run on every run while the two differed); the engine now puts the
    folder back when such a node ends. A chdir made in C (ctypes) is heard by no hook: the
    folder of each relative open is asked, not kept."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "sub" / "data.csv").write_text("a\nb\n")

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", STAYS, backend], cwd=tmp_path, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    folder = tmp_path.name
    assert run() == f"2 2 2 {folder}"  # (and the script is back in its folder)
    assert run() == f"2 2 0 {folder}"  # the top folder's data.csv differs: still hits
    (tmp_path / "sub" / "data.csv").write_text("a\nb\nc\n")
    assert run() == f"3 3 2 {folder}"
