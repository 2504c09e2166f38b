"""A whole-map cache hit checks what each child's hit would: the data files a child read
(an edited one runs that item again, and only it) and the files a child wrote (put back
where they were). A map whose children read and wrote nothing stays one lookup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import File, Workflow, node, root_path
from etherealfabric.journal import Journal
from etherealfabric.run._cache import ArtifactCache

CALLS: list[str] = []


@node
def load(path):
    CALLS.append(path)
    with open(path) as fh:
        return int(fh.read().split()[1])


@node
def total(xs):
    return sum(xs)


@node
def manifest(name):
    with open(name) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


@node
def render(day):
    CALLS.append(day)
    path = Path(root_path(f"out/{day}.txt"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"report for {day}\n")
    return File(str(path))


@node
def concat(files):
    return "".join(Path(f.path).read_text() for f in files)


@node
def plus_one(x):
    return x + 1


def data(name: str, value: int) -> None:
    Path("data").mkdir(exist_ok=True)
    Path(f"data/{name}.csv").write_text(f"v\n{value}\n")


def run_loads(listed: bool = False) -> tuple[Any, Any, Any]:
    with Workflow("checks", root=".") as wf:
        paths = manifest("paths.txt") if listed else ["data/a.csv", "data/b.csv"]
        loaded = load.map(paths)
        out = total(loaded)
    return wf.execute(), loaded, out


def map_records(home: Path, name: str) -> list[tuple[str, dict[str, Any]]]:
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute(
            "SELECT key, record FROM actions WHERE node = ?", (name,)
        ).fetchall()
    return [(key, json.loads(record)) for key, record in rows]


@pytest.mark.parametrize("listed", [False, True], ids=["literal", "upstream"])
def test_an_edited_file_an_item_read_runs_that_item_again_on_a_warm_map(listed: bool) -> None:
    data("a", 1)
    data("b", 2)
    Path("paths.txt").write_text("data/a.csv\ndata/b.csv\n")
    CALLS.clear()
    first, loaded, out = run_loads(listed)
    assert first[out] == 3 and sorted(CALLS) == ["data/a.csv", "data/b.csv"]
    warm, loaded, out = run_loads(listed)
    assert warm.executed == 0 and warm.map_report(loaded).whole and warm[out] == 3

    data("a", 10)
    if listed:  # the upstream node runs again (its file changed) and lists the same paths
        Path("paths.txt").write_text("# edited\ndata/a.csv\ndata/b.csv\n")
    CALLS.clear()
    edited, loaded, out = run_loads(listed)
    assert edited[out] == 12
    assert CALLS == ["data/a.csv"]  # only the edited item ran again
    report = edited.map_report(loaded)
    assert (report.items, report.cached, len(report.executed)) == (2, 1, 1)
    if listed:
        assert edited.statuses["manifest"].value == "succeeded"

    CALLS.clear()
    again, loaded, out = run_loads(listed)
    assert (again[out], again.executed, CALLS) == (12, 0, [])
    assert again.map_report(loaded).whole


def test_explain_says_an_item_ran_again_because_a_file_it_read_changed(home: Path) -> None:
    """Said of the map before; of the item itself, explain said "same key ... its cached
    result was missing or corrupt"."""
    from etherealfabric.observe._explain import explain_node

    data("a", 1)
    data("b", 2)
    run_loads()
    data("a", 10)
    edited, loaded, _ = run_loads()
    [ran] = edited.map_report(loaded).executed
    with Journal(home / "journal.db") as journal:
        child = explain_node(journal, edited.run_id, ran)
    assert child.reason == "read_changed", child.detail
    assert "'./data/a.csv', a file it read, changed since its cached result" in child.detail


def test_a_whole_map_hit_restores_the_files_its_items_wrote() -> None:
    def flow() -> tuple[Any, Any, Any]:
        with Workflow("files", root=".") as wf:
            rendered = render.map(["mon", "tue"])
            out = concat(rendered)
        return wf.execute(), rendered, out

    CALLS.clear()
    first, rendered, out = flow()
    assert first[out] == "report for mon\nreport for tue\n" and sorted(CALLS) == ["mon", "tue"]
    shutil.rmtree("out")
    CALLS.clear()
    second, rendered, out = flow()
    assert second.executed == 0 and second.map_report(rendered).whole and CALLS == []
    assert Path("out/mon.txt").read_text() == "report for mon\n"
    assert Path("out/tue.txt").read_text() == "report for tue\n"
    assert second[out] == "report for mon\nreport for tue\n"
    assert [f.path for f in second[rendered]] == [
        str(Path("out/mon.txt").resolve()),
        str(Path("out/tue.txt").resolve()),
    ]

    Path("out/tue.txt").write_text("overwritten\n")  # a wrong content is put right too
    third, rendered, out = flow()
    assert third.executed == 0 and CALLS == []
    assert Path("out/tue.txt").read_text() == "report for tue\n"


def test_a_map_whose_items_read_and_wrote_nothing_stays_one_lookup(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flow() -> tuple[Any, Any]:
        with Workflow("plain") as wf:
            mapped = plus_one.map(list(range(50)))
        return wf.execute(), mapped

    flow()
    records = [r for _, r in map_records(home, "plus_one")]  # its own key's, the collection's
    assert records and all(r["checks"] == 0 for r in records)
    looked_up: list[int] = []
    many = ArtifactCache.lookup_many
    monkeypatch.setattr(
        ArtifactCache,
        "lookup_many",
        lambda self, keys: looked_up.append(len(keys)) or many(self, keys),
    )
    results, mapped = flow()
    assert results.map_report(mapped).whole and results[mapped] == list(range(1, 51))
    assert looked_up == []  # no child was looked at


def test_a_map_record_without_checks_is_looked_up_child_by_child_and_rewritten(
    home: Path,
) -> None:
    data("a", 1)
    data("b", 2)
    run_loads()
    keys = [key for key, record in map_records(home, "load") if "children" in record]
    with Journal(home / "journal.db") as journal:  # as an older version recorded it
        for key in keys:
            record = json.loads(journal.get_action_texts([key])[key])
            assert record["checks"] == 2
            del record["checks"]
            journal.conn.execute(
                "UPDATE actions SET record = ? WHERE key = ?", (json.dumps(record), key)
            )
        journal.conn.commit()
    CALLS.clear()
    results, loaded, out = run_loads()  # its children are looked up, none runs
    report = results.map_report(loaded)
    assert (results[out], CALLS, report.whole, report.cached) == (3, [], False, 2)
    results, loaded, out = run_loads()  # the map's record was written again, with checks
    assert results.map_report(loaded).whole and results[out] == 3
    data("b", 5)
    results, loaded, out = run_loads()
    assert results[out] == 6 and CALLS == ["data/b.csv"]


def test_plan_says_a_map_runs_when_a_file_an_item_read_changed(tmp_path: Path) -> None:
    Path("flow.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\n"
        "def load(path):\n"
        "    with open(path) as fh:\n"
        "        return int(fh.read().split()[1])\n"
        "@node\n"
        "def total(xs):\n"
        "    return sum(xs)\n"
        "with Workflow('x3') as wf:\n"
        "    total(load.map(['data/a.csv', 'data/b.csv']))\n"
    )
    data("a", 1)
    data("b", 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert cli("run", "flow.py")["executed"] == 2
    assert {n["action"] for n in cli("plan", "flow.py")["nodes"]} == {"cached"}
    data("a", 10)
    planned = {n["node"]: n for n in cli("plan", "flow.py")["nodes"]}
    assert planned["load"]["action"] == "run"
    assert "'./data/a.csv', a file it read, changed" in planned["load"]["reason"]
    ran = cli("run", "flow.py")
    assert ran["executed"] == 2
    total_value = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "cat", ran["run_id"], "total"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert total_value.strip() == "12"
    why = cli("explain", ran["run_id"], "load")
    assert "'./data/a.csv', a file it read, changed" in json.dumps(why)


@node
def maybe_load(item):
    CALLS.append(str(item))
    if isinstance(item, str):
        with open(item) as fh:
            return int(fh.read().split()[1])
    return item


def test_only_the_items_with_files_to_check_are_looked_at(home: Path) -> None:
    CALLS.clear()  # (a global the node reads: paths an earlier test left would be named)
    data("a", 1)

    def flow() -> tuple[Any, Any]:
        with Workflow("mixed", root=".") as wf:
            mapped = maybe_load.map([1, 2, "data/a.csv", 3])
        return wf.execute(), mapped

    flow()
    records = {r["node"]: r for _, r in map_records(home, "maybe_load[2]")}
    assert "reads" not in records["maybe_load[2]"]
    assert {r["checks"] for _, r in map_records(home, "maybe_load")} == {1}
    with Journal(home / "journal.db") as journal:  # a child with nothing to check is not needed
        journal.conn.execute("DELETE FROM actions WHERE node = 'maybe_load[2]'")
        journal.conn.commit()
    CALLS.clear()
    warm, mapped = flow()
    assert warm.map_report(mapped).whole and warm[mapped] == [1, 2, 1, 3] and CALLS == []
    data("a", 7)
    edited, mapped = flow()
    assert edited[mapped] == [1, 2, 7, 3]
    assert sorted(CALLS) == [
        "2",
        "data/a.csv",
    ]  # the edited item, and the one whose record was gone
