"""Input drift: a File or Directory input that changes while its node runs.

The node's key was computed from the content before it ran; outputs computed while the input
changed may mix old and new content. They serve the run, are not cached, and the journal row
says ``drifted`` and names the file. Each node here changes its own input, as another process
would, so nothing depends on timing.
"""

from __future__ import annotations

import logging
import os
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
