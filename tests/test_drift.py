"""Input drift: a File or Directory input that changes while its node runs.

The node's key was computed from the content before it ran; outputs computed while the input
changed may mix old and new content. They serve the run, are not cached, and the journal row
says ``drifted`` and names the file. Each node here changes its own input, as another process
would, so nothing depends on timing.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import Directory, File, Workflow, node
from etherealfabric.journal import Journal

OLD = 1_600_000_000.0


@node
def count_lines(data: File, touch: bool) -> int:
    lines = Path(data).read_text().count("\n")
    if touch:
        with open(data, "a") as fh:  # another writer, mid-run
            fh.write("late line\n")
    return lines


@node
def count_files(folder: Directory, add: bool) -> int:
    found = len(os.listdir(folder))
    if add:
        Path(folder, f"extra-{found}.txt").write_text("new\n")
    return found


@node
def double(n: int) -> int:
    return 2 * n


def rows(home: Path, run_id: str) -> dict[str, dict[str, Any]]:
    with Journal(home / "journal.db") as journal:
        return {r["node"]: r for r in journal.node_runs(run_id)}


def lines_pipeline(tmp_path: Path, touch: bool) -> Workflow:
    with Workflow("drift", root=tmp_path, home=tmp_path / "home") as wf:
        double(count_lines(File(tmp_path / "data.txt"), touch))
    return wf


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("a\nb\n")
    os.utime(path, (OLD, OLD))
    return path


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_a_file_changed_while_its_node_ran_is_drifted_and_not_cached(
    tmp_path: Path, data: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        first = lines_pipeline(tmp_path, touch=True).execute(backend=backend)
    assert first["double"]["result"] == 4  # the run used the outputs
    row = rows(home, first.run_id)["count_lines"]
    assert row["status"] == "drifted"
    assert str(data) in row["error"] and "not cached" in row["error"]
    assert rows(home, first.run_id)["double"]["status"] == "succeeded"
    # what the run returns says so too (as `show` and open_run do), and it ran: executed
    assert first.statuses["count_lines"] == "drifted" and first.statuses["double"] == "succeeded"
    assert first.status == "succeeded" and first.executed == 2
    said = [r.getMessage() for r in caplog.records if "changed while" in r.getMessage()]
    assert len(said) == 1 and str(data) in said[0] and said[0].startswith("count_lines")
    # not published: the next run computes it again (from the content now on disk)
    second = lines_pipeline(tmp_path, touch=False).execute(backend=backend)
    assert rows(home, second.run_id)["count_lines"]["status"] == "succeeded"
    assert second["count_lines"]["result"] == 3
    third = lines_pipeline(tmp_path, touch=False).execute(backend=backend)
    assert third.cached == 2


def test_an_untouched_input_is_cached_as_usual(tmp_path: Path, data: Path) -> None:
    first = lines_pipeline(tmp_path, touch=False).execute()
    assert rows(tmp_path / "home", first.run_id)["count_lines"]["status"] == "succeeded"
    assert lines_pipeline(tmp_path, touch=False).execute().cached == 2


def test_a_folder_that_gains_a_file_while_its_node_runs_is_drifted(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "one.txt").write_text("1\n")

    def run(add: bool) -> Any:
        with Workflow("drift-folder", root=tmp_path, home=tmp_path / "home") as wf:
            count_files(Directory(folder), add)
        return wf.execute()

    first = run(add=True)
    row = rows(tmp_path / "home", first.run_id)["count_files"]
    assert row["status"] == "drifted" and str(folder) in row["error"]
    again = run(add=False)
    assert again.executed == 1 and again["count_files"]["result"] == 2


@node
def listed_total(late: str) -> int:
    # "listed" is named only in the code (under the working folder): not an input, a folder
    # the node lists; `late`, when there, is moved into it by another process once listed
    files = sorted(Path("listed").glob("*.txt"))
    if late and os.path.exists(late):
        move = f"import os; os.rename({late!r}, {os.path.join('listed', 'late.txt')!r})"
        subprocess.run([sys.executable, "-c", move], check=True)  # another writer, mid-run
    return sum(int(p.read_text()) for p in files)


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_folder_listed_by_path_that_another_writer_changes_while_its_node_runs_is_drifted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # the node saw one file; its result (1) was cached under the folder's listing after the
    # run (two files), and the next run served 1 instead of 6
    monkeypatch.chdir(tmp_path)
    Path("listed").mkdir()
    Path("listed", "one.txt").write_text("1\n")
    Path("late.txt").write_text("5\n")

    def run() -> Any:
        with Workflow("drift-listing", root=tmp_path, home=tmp_path / "home") as wf:
            listed_total(str(tmp_path / "late.txt"))
        return wf.execute(backend=backend)

    first = run()
    assert first["listed_total"]["result"] == 1  # what it saw serves this run
    row = rows(tmp_path / "home", first.run_id)["listed_total"]
    assert row["status"] == "drifted" and "listed" in row["error"]
    again = run()
    assert again.executed == 1 and again["listed_total"]["result"] == 6
    assert run().cached == 1  # unchanged while it ran: cached as usual


@node
def summed_into(folder: str) -> int:
    # lists its folder, then writes its own entries into it: a file written, one renamed into
    # place (an atomic write), a folder made, a stale file removed
    total = sum(int(p.read_text()) for p in Path(folder).glob("*.txt"))
    Path(folder, "total.out").write_text(str(total))
    Path(folder, "tmp").write_text("x")
    os.replace(os.path.join(folder, "tmp"), os.path.join(folder, "done.flag"))
    os.makedirs(os.path.join(folder, "logs"), exist_ok=True)
    if os.path.exists(os.path.join(folder, "stale.out")):
        os.remove(os.path.join(folder, "stale.out"))
    shutil.rmtree(os.path.join(folder, "old-logs"), ignore_errors=True)
    return total


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_entries_a_node_makes_in_a_folder_it_lists_are_no_drift(
    tmp_path: Path, backend: str
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "a.txt").write_text("2\n")
    (folder / "stale.out").write_text("old\n")
    (folder / "old-logs" / "day").mkdir(parents=True)

    def run() -> Any:
        with Workflow("own-entries", root=tmp_path, home=tmp_path / "home") as wf:
            summed_into(str(folder))
        return wf.execute(backend=backend)

    first = run()
    assert rows(tmp_path / "home", first.run_id)["summed_into"]["status"] == "succeeded"
    assert first["summed_into"]["result"] == 2
    assert run().cached == 1  # its own entries changed nothing it read
    (folder / "b.txt").write_text("3\n")  # a file added between runs: a change, as before
    third = run()
    assert third.executed == 1 and third["summed_into"]["result"] == 5


def test_a_drifted_result_is_not_published_to_a_shared_store(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", "d" * 32)
    team = tmp_path / "team"
    lines_pipeline(tmp_path, touch=True).execute(store=str(team))
    published = sorted(p.name for p in team.rglob("actions/*/*.json"))
    assert len(published) == 1  # double's record only; count_lines' is not there


@node
def words(data: File, edit: bool = False) -> str:
    text = Path(data).read_text().strip()
    if edit:  # another writer edits the file a later node was keyed on already (by a path
        Path(data).with_stem("c").write_text("c-NEW\n")  # not named: not one of its reads)
    return text


def test_a_file_changed_after_its_key_and_before_its_node_started_is_drifted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a shared store the scheduler keys the ready nodes ahead, in a batch (one round
    trip to the store): a node waiting for a worker was keyed on its file's content of then.
    An edit before it started (its snapshot taken after the edit) went unseen: it read the new
    content, published it under the old content's key, and a run with the old content back
    (or a teammate's) was served the new content's result."""
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", "d" * 32)
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text(f"{name}-old\n")
        os.utime(tmp_path / f"{name}.txt", (OLD, OLD))
    c = tmp_path / "c.txt"

    def run() -> Any:
        with Workflow("drift-ahead", root=tmp_path, home=tmp_path / "home") as wf:
            words(File(tmp_path / "a.txt"), edit=True)
            words(File(tmp_path / "b.txt"))
            words(File(c))
        return wf.execute(store=str(tmp_path / "team"), max_workers=1)

    first = run()
    assert first.statuses == {"words": "succeeded", "words-2": "succeeded", "words-3": "drifted"}
    assert first["words-3"]["result"] == "c-NEW"  # what it read; not cached under c-old's key
    c.write_text("c-old\n")  # the edit undone
    second = run()
    assert second.statuses["words-3"] == "succeeded"
    assert second["words-3"]["result"] == "c-old"


@node
def first_line(data: File, edit: bool = False) -> str:
    text = Path(data).read_text().strip()
    if edit and Path(data).stem == "f00":  # another writer edits the last item's file
        Path(data).with_stem("f19").write_text("f19-NEW\n")
    return text


def test_a_map_item_file_changed_after_the_map_keyed_it_is_drifted(tmp_path: Path) -> None:
    """A map keys all its children when it starts and sends them in chunks as workers free
    up: a file edited meanwhile was read new under the key of its old content."""
    folder = tmp_path / "items"
    folder.mkdir()
    for i in range(20):
        (folder / f"f{i:02d}.txt").write_text(f"f{i:02d}-old\n")
        os.utime(folder / f"f{i:02d}.txt", (OLD, OLD))
    last = folder / "f19.txt"

    def run(edit: bool) -> Any:
        with Workflow("drift-map", root=tmp_path, home=tmp_path / "home") as wf:
            items = [File(p) for p in sorted(folder.iterdir())]
            first_line.map(items, edit=edit)
        return wf.execute(max_workers=1)

    ran = run(edit=True)
    drifted = [n for n, s in ran.statuses.items() if s == "drifted"]
    with Journal(tmp_path / "home" / "journal.db") as journal:
        rows = {r["node"]: r["status"] for r in journal.node_runs(ran.run_id)}
    assert rows["first_line[f19.txt]"] == "drifted", (drifted, rows)
    last.write_text("f19-old\n")  # the edit undone: f19 runs again (it was not cached)
    again = run(edit=True)
    assert again.maps["first_line"].cached == 19, rows
    assert again["first_line"]["result"][-1] == "f19-old"
