"""File and Directory inputs: the remembered-digest fast path never hides a change.

Each check runs the workflow through the CLI in a fresh process, as a user would, on one home
whose journal remembers file digests between runs. The inputs are given an old mtime first, so
the fast path really remembers them (files modified in the last two seconds are always read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE = """
import os
from etherealfabric import Directory, File, Workflow, node


@node
def read_file(path):
    with open(path) as f:
        return f.read()


@node
def read_folder(path):
    return sorted(
        (name, open(os.path.join(path, name)).read()) for name in os.listdir(path)
    )


with Workflow("files") as workflow:
    a = read_file(File("data.txt"))
    b = read_folder(Directory("folder"))
"""

OLD = 1_600_000_000.0  # September 2020: long settled


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "pipeline.py").write_text(PIPELINE)
        self.data = root / "data.txt"
        self.folder = root / "folder"
        self.folder.mkdir()
        self.write(self.data, "alpha\n")
        self.write(self.folder / "one.txt", "1\n")
        self.write(self.folder / "two.txt", "2\n")
        os.utime(self.folder, (OLD, OLD))

    @staticmethod
    def write(path: Path, text: str) -> None:
        path.write_text(text)
        os.utime(path, (OLD, OLD))

    def run(self) -> tuple[set[str], dict[str, object]]:
        env = {**os.environ, "ETHEREALFABRIC_HOME": str(self.root / "home")}
        out = subprocess.run(
            [sys.executable, "-m", "etherealfabric", "run", "pipeline.py", "--json"],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["status"] == "succeeded"
        executed = {name for name, status in report["nodes"].items() if status == "succeeded"}
        return executed, report

    def remembered(self) -> int:
        import sqlite3

        conn = sqlite3.connect(self.root / "home" / "journal.db")
        try:
            return int(conn.execute("SELECT count(*) FROM file_digests").fetchone()[0])
        finally:
            conn.close()


def rewrite_in_place(path: Path, text: str) -> None:
    """Same size, same inode, the old mtime put back: only the ctime tells."""
    before = path.stat()
    with open(path, "r+") as f:
        f.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


def test_a_file_rewritten_with_its_mtime_restored_reruns(tmp_path: Path) -> None:
    p = Project(tmp_path)
    assert p.run()[0] == {"read_file", "read_folder"}
    assert p.remembered() == 3, "the fast path remembers the settled inputs"
    assert p.run()[0] == set(), "an unchanged re-run executes nothing"

    rewrite_in_place(p.data, "omega\n")
    assert p.run()[0] == {"read_file"}, "a same-size rewrite with its mtime put back re-runs"
    assert p.run()[0] == set()


def test_a_file_in_a_folder_rewritten_with_its_mtime_restored_reruns(tmp_path: Path) -> None:
    p = Project(tmp_path)
    assert p.run()[0] == {"read_file", "read_folder"}
    folder_mtime = p.folder.stat().st_mtime_ns
    rewrite_in_place(p.folder / "one.txt", "9\n")
    assert p.folder.stat().st_mtime_ns == folder_mtime
    assert p.run()[0] == {"read_folder"}


def test_a_folder_sees_added_removed_and_renamed_files(tmp_path: Path) -> None:
    p = Project(tmp_path)
    assert p.run()[0] == {"read_file", "read_folder"}

    p.write(p.folder / "three.txt", "3\n")  # added
    os.utime(p.folder, (OLD, OLD))
    assert p.run()[0] == {"read_folder"}
    assert p.run()[0] == set()

    (p.folder / "two.txt").unlink()  # removed
    os.utime(p.folder, (OLD, OLD))
    assert p.run()[0] == {"read_folder"}
    assert p.run()[0] == set()

    (p.folder / "three.txt").rename(p.folder / "four.txt")  # renamed, same content
    os.utime(p.folder, (OLD, OLD))
    assert p.run()[0] == {"read_folder"}
    assert p.run()[0] == set()
