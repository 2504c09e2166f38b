"""cache gc and mapped nodes: keeping a map keeps its children, so that a warm map (one lookup,
no child rows) still has every item's result when one item changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from etherealfabric import Directory, File, Workflow, node
from etherealfabric.journal._gc import collect_garbage
from etherealfabric.journal._journal import Journal
from etherealfabric.store import LocalStore


@node
def listed(values):
    return list(values)


@node
def square(x):
    return x * x


@node
def size(f):
    return len(Path(f).read_text())


def age_everything(home: Path) -> None:
    past = time.time() - 7200
    for path in (home / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        conn.execute("UPDATE actions SET created_at = ?", (past,))


def gc(home: Path) -> None:
    with Journal(home / "journal.db") as journal:
        collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=3600)


def test_gc_keeps_the_children_of_a_kept_map(home: Path) -> None:
    def run(values: list[int]):
        with Workflow("gcmap") as wf:
            out = square.map(listed(values))
        return wf.execute(), out

    run([1, 2, 3, 4])
    warm, out = run([1, 2, 3, 4])
    assert warm.map_report(out).whole  # the kept run has one row for the map, none per child
    age_everything(home)
    gc(home)
    more, out = run([1, 2, 3, 4, 5])
    assert more.map_report(out).executed == ["square[5]"]
    assert more[out] == [1, 4, 9, 16, 25]


def test_gc_keeps_the_children_of_a_map_over_files(home: Path, tmp_path: Path) -> None:
    @node
    def files(folder):
        return [File(str(p)) for p in sorted(Path(folder).glob("*.txt"))]

    folder = tmp_path / "in"
    folder.mkdir()
    for name in "abc":
        (folder / f"{name}.txt").write_text(name * 2)

    def run():
        with Workflow("gcfiles") as wf:
            out = size.map(files(Directory(str(folder))))
        return wf.execute(), out

    run()
    warm, out = run()
    assert warm.map_report(out).cached == 3 and not warm.map_report(out).whole
    age_everything(home)
    gc(home)
    (folder / "d.txt").write_text("dddd")
    more, out = run()
    assert len(more.map_report(out).executed) == 1
    assert more[out] == [2, 2, 2, 4]


def test_a_teammate_sharing_the_store_gets_the_map_and_its_items(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", "team-secret-0123456789abcdef")
    shared = str(tmp_path / "team-store")

    def run(home: str, values: list[int]):
        with Workflow("teammap", home=home, store=shared) as wf:
            out = square.map(listed(values))
        return wf.execute(), out

    first, out = run(str(tmp_path / "alice"), [1, 2, 3])
    assert len(first.map_report(out).executed) == 3
    mine, out = run(str(tmp_path / "bob"), [1, 2, 3])  # an empty home: one lookup
    assert (mine.executed, mine.map_report(out).whole, mine[out]) == (0, True, [1, 4, 9])
    more, out = run(str(tmp_path / "carol"), [1, 2, 3, 4])  # item by item, from the share
    assert more.map_report(out).executed == ["square[4]"]
    assert more.map_report(out).cached == 3
