"""A returned File/Directory the node did not write (``unwritten`` in its record), against a
damaged store or an edited journal: a miss (the node runs again), never a failed run, never
the user's data overwritten."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from cli_runner import ef_home as _cli

DATASET = """
import os
from etherealfabric import Directory, Workflow, node

@node
def dataset():
    return Directory("raw")

@node
def count(folder):
    return sorted(os.listdir(folder))

with Workflow("folder") as wf:
    total = count(dataset())
"""


def _record(tmp_path: Path, node: str) -> tuple[str, dict]:
    with sqlite3.connect(tmp_path / "home" / "journal.db") as db:
        key, text = db.execute("SELECT key, record FROM actions WHERE node = ?", (node,)).fetchone()
    return key, json.loads(text)


def _rewrite(tmp_path: Path, key: str, record: dict) -> None:
    with sqlite3.connect(tmp_path / "home" / "journal.db") as db:
        db.execute("UPDATE actions SET record = ? WHERE key = ?", (json.dumps(record), key))


def _first_run(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "one.csv").write_text("1\n")
    (tmp_path / "flow.py").write_text(DATASET)
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr


def test_a_lost_listing_of_a_returned_folder_is_a_miss_not_a_failure(tmp_path: Path) -> None:
    """The stored listing (manifest) of a folder the node returned but did not write is gone
    (a damaged disk): the hit's check of the folder raised ArtifactMissingError, which failed
    the node on every run (and plan exited 2). It is a miss: the node runs again."""
    _first_run(tmp_path)
    _key, record = _record(tmp_path, "dataset")
    digest = record["files"]["raw/"]["digest"]
    assert record["files"]["raw/"].get("unwritten") is True
    (tmp_path / "home" / "objects" / digest[:2] / digest).unlink()
    (tmp_path / "raw" / "two.csv").write_text("2\n")
    planned = _cli(tmp_path, "plan", "flow.py")
    assert planned.returncode == 0, planned.stderr
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(tmp_path / "raw")) == ["one.csv", "two.csv"]
    assert (tmp_path / "raw" / "two.csv").read_text() == "2\n"
    again = _cli(tmp_path, "run", "flow.py")
    assert again.returncode == 0, again.stderr
    assert "2 cached" in again.stderr


def test_a_listing_that_is_not_a_folder_listing_is_a_miss(tmp_path: Path) -> None:
    """An edited record whose folder entry (and output) names an object that is a file, not
    a folder listing: a miss with a warning naming the key, never a failed node."""
    _first_run(tmp_path)
    (tmp_path / "other.txt").write_text("x\n")
    key, record = _record(tmp_path, "dataset")
    objects = tmp_path / "home" / "objects"
    other = next(p.name for p in objects.glob("*/*") if p.name != record["files"]["raw/"]["digest"])
    record["files"]["raw/"]["digest"] = record["outputs"]["result"]["digest"] = other
    _rewrite(tmp_path, key, record)
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(tmp_path / "raw")) == ["one.csv"]


def test_a_forged_unwritten_mark_is_a_malformed_record(tmp_path: Path) -> None:
    """``unwritten`` is true or absent: a string, list or number there is an edited journal's
    record, a miss with a warning naming the key (it was taken as true, silently)."""
    _first_run(tmp_path)
    key, record = _record(tmp_path, "dataset")
    record["files"]["raw/"]["unwritten"] = "no"
    _rewrite(tmp_path, key, record)
    (tmp_path / "raw" / "two.csv").write_text("2\n")
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr
    assert key in done.stderr and "unwritten" in done.stderr, done.stderr
    assert sorted(os.listdir(tmp_path / "raw")) == ["one.csv", "two.csv"]
