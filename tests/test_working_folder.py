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

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    from etherealfabric import Workflow, node
    from etherealfabric.run import _audit

    @node
    def rows(folder):
        start = os.getcwd()
        if folder:
            os.chdir(folder)
        try:
            return len(Path("data.csv").read_text().splitlines())
        finally:
            os.chdir(start)

    with Workflow("folders", root=".") as wf:
        here, there = rows(""), rows("sub")
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
