"""Each kind of edit re-runs exactly the nodes it should, in fresh processes, as a user would.

A six-node pipeline lives in a file; each step edits the file (or its input data) and runs the
workflow again through the CLI, then checks which nodes executed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PIPELINE = """
from etherealfabric import File, Workflow, node

SCALE = 3
UNUSED = "not read by any node"


def _unit(x):
    return x * 1.0


def scale(xs):
    return [_unit(x) * 2 for x in xs]


@node
def load(path):
    with open(path) as f:
        return [int(tok) for tok in f.read().split()]


@node
def clean(xs):
    return [x for x in xs if x >= 0]


@node
def features(xs):
    return scale(xs)


@node
def stats(xs):
    return sum(xs) * SCALE


@node
def model(f, lr):
    return [v * lr for v in f]


@node(version="1")
def summary(m, s):
    return {"n": len(m), "s": s, "total": sum(m)}


with Workflow("matrix") as workflow:
    c = clean(load(File("data.txt")))
    out = summary(model(features(c), lr=0.1), stats(c))
"""

ALL = {"load", "clean", "features", "stats", "model", "summary"}


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "pipeline.py"
        self.file.write_text(PIPELINE)
        (root / "data.txt").write_text("1 2 3 -1\n")

    def edit(self, old: str, new: str) -> None:
        text = self.file.read_text()
        assert old in text, old
        self.file.write_text(text.replace(old, new, 1))

    def run(self) -> set[str]:
        env = {**os.environ, "ETHEREALFABRIC_HOME": str(self.root / "home")}
        out = subprocess.run(
            [sys.executable, "-m", "etherealfabric", "run", "pipeline.py", "--json"],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["status"] == "succeeded"
        return {name for name, status in report["nodes"].items() if status == "succeeded"}


def test_each_edit_reruns_exactly_the_expected_nodes(tmp_path: Path) -> None:
    p = Project(tmp_path)
    assert p.run() == ALL
    assert p.run() == set(), "an unchanged re-run executes nothing"

    # cosmetic edits: docstring, comment, formatting, the decorator line's spacing
    p.edit("def clean(xs):\n", 'def clean(xs):\n    """Drop negatives."""  # a comment\n')
    p.edit("return sum(xs) * SCALE", "return sum( xs )*SCALE   # same thing")
    p.edit('@node(version="1")', '@node( version = "1" )')
    assert p.run() == set()

    # an unrelated module constant
    p.edit('UNUSED = "not read by any node"', 'UNUSED = "still not read"')
    assert p.run() == set()

    # a node's body
    p.edit("return [v * lr for v in f]", "return [v * lr * 2 for v in f]")
    assert p.run() == {"model", "summary"}

    # a helper two levels deep
    p.edit("return x * 1.0", "return x * 1.5")
    assert p.run() == {"features", "model", "summary"}

    # a module constant a node reads
    p.edit("SCALE = 3", "SCALE = 4")
    assert p.run() == {"stats", "summary"}

    # a literal parameter
    p.edit("lr=0.1", "lr=0.2")
    assert p.run() == {"model", "summary"}

    # touching the input file without changing it
    data = tmp_path / "data.txt"
    later = time.time() + 5
    os.utime(data, (later, later))
    assert p.run() == set()

    # the input file's content, with a change that cleaning removes: early cutoff after clean
    data.write_text("1 2 3 -7\n")
    assert p.run() == {"load", "clean"}

    # the input file's content, for real
    data.write_text("1 2 3 4\n")
    assert p.run() == ALL

    # an upstream edit whose output stays byte-identical: downstream does not re-run
    p.edit("return [x for x in xs if x >= 0]", "return [x for x in xs if not x < 0]")
    assert p.run() == {"clean"}

    # bumping version=
    p.edit('version = "1"', 'version = "2"')
    assert p.run() == {"summary"}
