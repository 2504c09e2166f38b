"""A map over the files of a folder, as a first-time user writes it: a list of `File`s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_runner import ef_home as _cli

FLOW = """
import glob
from etherealfabric import File, Workflow, node

@node
def list_files(folder):
    return [File(p) for p in sorted(glob.glob(folder + "/*/*.csv"))]

@node
def rows(f):
    with open(f) as fh:
        return len(fh.read().splitlines())

@node
def total(counts):
    return sum(counts)

with Workflow("files") as wf:
    total(rows.map(list_files("data")))
"""


def _children(tmp_path: Path) -> list[str]:
    shown = _cli(tmp_path, "show", "latest", "rows", "--items", "--json")
    assert shown.returncode == 0, shown.stderr
    return sorted(row["node"] for row in json.loads(shown.stdout)["items"])


def test_children_of_a_map_over_files_are_named_by_the_files(tmp_path: Path) -> None:
    """A child per `File` was named by a digest (`rows[afba6da563]`): which file failed, or
    which one `logs` and `explain` were about, could not be told; an edited file's child got
    a new name, so `explain` found no previous run of it. A File (or Directory, or path)
    item is named by its file name; two with one name keep the digest."""
    for folder, name, text in [("a", "jan.csv", "1\n2\n"), ("a", "feb.csv", "1\n"),
                               ("b", "jan.csv", "3\n")]:  # fmt: skip
        (tmp_path / "data" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / folder / name).write_text(text)
    (tmp_path / "flow.py").write_text(FLOW)
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr
    children = _children(tmp_path)
    assert "rows[feb.csv]" in children
    assert "rows[jan.csv]" in children  # the first of the two jan.csv
    assert len(children) == 3 and all(c.startswith("rows[") for c in children)

    (tmp_path / "data" / "a" / "feb.csv").write_text("1\n2\n3\n4\n")  # edited
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    explained = _cli(tmp_path, "explain", "latest", "rows[feb.csv]")
    assert explained.returncode == 0, explained.stderr
    assert "ran (succeeded)" in explained.stdout
    assert "feb.csv" in explained.stdout.split("compared with", 1)[1], explained.stdout


def _total(tmp_path: Path, node: str = "total") -> object:
    shown = _cli(tmp_path, "cat", "latest", node, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_editing_a_listed_data_file_reruns_it_and_never_reverts_the_edit(tmp_path: Path) -> None:
    """`list_files` returns the `File`s it found: they were stored as its file outputs, so
    once the user edited data/a/feb.csv, the next run's hit of `list_files` *restored the old
    content over the user's edit* (their data was lost) and every node was cached with the old
    total. A returned File or Directory that exists with other content is now left alone and
    the node runs again; only a missing one is put back."""
    for folder, name, text in [("a", "jan.csv", "1\n2\n"), ("a", "feb.csv", "1\n")]:
        (tmp_path / "data" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / folder / name).write_text(text)
    (tmp_path / "flow.py").write_text(FLOW)
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    assert _total(tmp_path) == 3
    edited = tmp_path / "data" / "a" / "feb.csv"
    edited.write_text("1\n2\n3\n4\n")
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr
    assert edited.read_text() == "1\n2\n3\n4\n"  # the user's edit is still there
    assert _total(tmp_path) == 6
    assert "data/a/feb.csv" in done.stderr  # the run says why list_files ran again
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    assert _total(tmp_path) == 6  # and then it is cached again, still right


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


def test_a_returned_folder_that_gained_a_file_is_not_emptied_back(tmp_path: Path) -> None:
    """The same with a returned `Directory`: a hit restored the folder as recorded, deleting
    the file the user had added to it."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "one.csv").write_text("1\n")
    (tmp_path / "flow.py").write_text(DATASET)
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    assert _total(tmp_path, "count") == ["one.csv"]
    (tmp_path / "raw" / "two.csv").write_text("2\n")
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    assert (tmp_path / "raw" / "two.csv").read_text() == "2\n"
    assert _total(tmp_path, "count") == ["one.csv", "two.csv"]
    (tmp_path / "raw" / "one.csv").unlink()  # a file removed from it: also a change
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    assert _total(tmp_path, "count") == ["two.csv"]
    shutil.rmtree(tmp_path / "raw")  # a missing folder output is still put back
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    assert (tmp_path / "raw" / "two.csv").read_text() == "2\n"


def test_plan_and_explain_name_the_edited_data_file(tmp_path: Path) -> None:
    """plan said `list_files` was cached (it ran), explain that its result was 'missing or
    corrupt', and the run logged a warning that the output 'cannot be restored'."""
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "feb.csv").write_text("1\n")
    (tmp_path / "flow.py").write_text(FLOW)
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    (tmp_path / "data" / "a" / "feb.csv").write_text("1\n2\n")
    plan = _cli(tmp_path, "plan", "flow.py", "--json")
    assert plan.returncode == 0, plan.stderr
    actions = {n["node"]: n for n in json.loads(plan.stdout)["nodes"]}
    assert actions["list_files"]["action"] == "run", actions["list_files"]
    assert "data/a/feb.csv" in actions["list_files"]["reason"]
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
    explained = _cli(tmp_path, "explain", "latest", "list_files").stdout
    assert "'data/a/feb.csv', a file it returned but did not write, changed" in explained
    assert (tmp_path / "data" / "a" / "feb.csv").read_text() == "1\n2\n"
    assert _total(tmp_path) == 2
