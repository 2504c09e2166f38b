"""A map whose items hold files keeps its own lease until its records are committed.

Such a map has no record under its own key (``run/_mapping.py``: its items' content is not in
that key), only one under its collection's key. Two runs of one home running it at once: the
second waits for the first's lease of the map. The first gave that lease back *before*
committing the collection's record, so the second, let in meanwhile, found every child cached
but not the collection, computed the collection itself, and recorded the map as executed
(``1 executed``) though none of its children ran in it. Two real driver processes on one home
(processes backend), synchronised with files and the journal's rows: the first one's
collection waits for the test's word while the second one queues for the map's lease, then
the first one is paused right after its map finished, before its commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SLOWVAL = textwrap.dedent(
    """
    import time
    from pathlib import Path

    class Slow:
        '''A child's output: unpickling it (the map's collection) waits for the test.'''
        def __init__(self, name, marks):
            self.name, self.marks = name, marks
        def __reduce__(self):
            return (restore, (self.name, self.marks))

    def restore(name, marks):
        Path(marks, "collecting").touch()
        deadline = time.monotonic() + 120
        while not Path(marks, "collect-go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        value = Slow.__new__(Slow)
        value.name, value.marks = name, marks
        return value
    """
)

FLOW = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from etherealfabric import Directory, File, Workflow, node, root_path
    from slowval import Slow

    marks = Path(sys.argv[1])
    pause = sys.argv[2:] == ["pause"]

    @node
    def list_files(folder: Directory):
        return [File(str(p)) for p in sorted(Path(folder).glob("*.txt"))]

    @node
    def clean(path: File, marks: str):
        return Slow(Path(path).name, marks)

    def paused(event):
        '''The first run: stop right after the map finished, before its rows are committed.'''
        if pause and event.kind == "map_finished" and event.node == "clean":
            Path(marks, "a-paused").write_text(event.run_id)
            deadline = time.monotonic() + 120
            while not Path(marks, "a-go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)

    with Workflow("twice", root=".") as wf:
        out = clean.map(list_files(Directory(root_path("data"))), marks=str(marks))
    results = wf.execute(backend="processes", max_workers=2, subscribers=[paused])
    report = results.map_report(out)
    print(json.dumps({"run": results.run_id, "statuses": dict(results.statuses),
                      "executed": results.executed, "cached": results.cached,
                      "children_executed": len(report.executed), "children_cached": report.cached,
                      "names": [v.name for v in results[out]]}))
    """
)


def _until(what: str, done: Callable[[], bool], *runs: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not done():
        for run in runs:
            if run.poll() is not None:
                raise AssertionError(f"a run ended while waiting for {what}: {run.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _rows(journal: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    if not journal.exists():
        return []
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # (not created yet)
            return []


def _result(run: subprocess.Popen[str]) -> dict[str, object]:
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_run_waiting_for_a_maps_lease_finds_it_cached(tmp_path: Path) -> None:
    project, marks = tmp_path / "proj", tmp_path / "marks"
    (project / "data").mkdir(parents=True)
    marks.mkdir()
    for n in range(4):
        (project / "data" / f"f{n}.txt").write_text(f"{n}\n")
    (project / "slowval.py").write_text(SLOWVAL)
    (project / "flow.py").write_text(FLOW)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    path = os.pathsep.join(p for p in (str(ROOT / "src"), str(project)) if p)
    env = {**clean_env, "PYTHONPATH": path, "ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    journal = tmp_path / "home" / "journal.db"

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "flow.py", str(marks), *args], cwd=project, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first = start("pause")
    try:
        # its children are done and committed; its collection waits (unpickling them)
        _until("the first run's collection", (marks / "collecting").exists, first)
        children = "SELECT count(*) FROM actions WHERE node LIKE 'clean[%'"
        _until("the children's records", lambda: _rows(journal, children) == [(4,)], first)
        second = start()
        try:
            # the second run queues for the map's lease, which the first holds key by key
            mine = "SELECT count(*) FROM leases WHERE node = 'clean' AND pid = ?"
            _until("the map's lease", lambda: _rows(journal, mine, first.pid) == [(1,)], first)
            (marks / "collect-go").touch()
            _until("the first run's map to finish", (marks / "a-paused").exists, first)
            if _rows(journal, mine, first.pid) != [(1,)]:  # given back before the commit:
                _result(second)  # the second run takes it and ends meanwhile (the bug)
            (marks / "a-go").touch()
            a, b = _result(first), _result(second)
        finally:
            second.kill()
    finally:
        (marks / "collect-go").touch()
        (marks / "a-go").touch()
        first.kill()

    assert a["names"] == b["names"] == [f"f{n}.txt" for n in range(4)]
    assert (a["children_executed"], a["statuses"]["clean"]) == (4, "succeeded")  # type: ignore[index]
    # the second run ran nothing: the map is a hit, in its results, its row and its run's row
    assert (b["children_executed"], b["children_cached"]) == (0, 4)
    assert b["statuses"] == {"list_files": "cached", "clean": "cached"}
    assert (b["executed"], b["cached"]) == (0, 2)
    assert _rows(journal, "SELECT status FROM node_runs WHERE run_id = ? AND node = 'clean'",
                 b["run"]) == [("cached",)]  # fmt: skip
    assert _rows(journal, "SELECT executed, cached FROM runs WHERE id = ?", b["run"]) == [(0, 2)]
