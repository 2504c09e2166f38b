"""A past run's results are the outputs *that run* had, not its key's latest record.

A node that reads a file by path keeps its cache key when the file changes; it runs again and
its new action record replaces the old one under the same key. ``cat`` and ``open_run`` of an
earlier run must still give what that run produced (or say it is gone), never the newer value
(which once showed ``load=5`` beside ``double=2``). ``cache gc`` keeps what the kept runs had.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import etherealfabric
from etherealfabric.errors import DefinitionError

Ef = Callable[..., subprocess.CompletedProcess[str]]

# ``load`` reads data.txt by path (not an input): its key stays when the file changes; it
# returns enough numbers to be a stored object, not an inline blob (``big``), or one (``small``)
FLOW = textwrap.dedent(
    """
    from etherealfabric import Workflow, node

    @node
    def load():
        n = int(open("data.txt").read())
        return list(range(n)) if n > 100 else n

    @node
    def double(x):
        return x * 2 if isinstance(x, int) else len(x) * 2

    with Workflow("past-runs") as wf:
        double(load())
    """
)


def _run(ef: Ef, cwd: Path, value: int) -> str:
    (cwd / "data.txt").write_text(f"{value}\n")
    done = ef(cwd, "run", "flow.py", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["run_id"])


def _cat(ef: Ef, cwd: Path, run_id: str, node: str) -> subprocess.CompletedProcess[str]:
    return ef(cwd, "cat", run_id, node, "--json")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    return tmp_path


def test_cat_of_an_earlier_run_gives_what_it_produced_after_the_read_file_changed(
    ef: Ef, project: Path
) -> None:
    first = _run(ef, project, 1)  # executes both
    hit = _run(ef, project, 1)  # cache hits of the same records
    later = _run(ef, project, 5)  # load runs again under the same key: its record is replaced
    for run_id, load, double in ((first, 1, 2), (hit, 1, 2), (later, 5, 10)):
        got = [_cat(ef, project, run_id, node) for node in ("load", "double")]
        assert [g.returncode for g in got] == [0, 0], [g.stderr for g in got]
        assert [json.loads(g.stdout) for g in got] == [load, double], run_id
    again = _run(ef, project, 1)  # back to 1: load runs again, a third record of the key
    assert json.loads(_cat(ef, project, later, "load").stdout) == 5
    assert json.loads(_cat(ef, project, again, "load").stdout) == 1


def test_open_run_of_an_earlier_run_gives_what_it_produced(ef: Ef, project: Path) -> None:
    home = project / ".etherealfabric"
    first = _run(ef, project, 1)
    hit = _run(ef, project, 1)
    later = _run(ef, project, 7)
    gc = ef(project, "cache", "gc", "--keep-runs", "5", "--older-than", "0")  # (inline blobs)
    assert gc.returncode == 0, gc.stderr
    for run_id, load in ((first, 1), (hit, 1), (later, 7)):
        results = etherealfabric.open_run(run_id, home=home)
        assert (results["load"]["result"], results["double"]["result"]) == (load, 2 * load)


def test_gc_keeps_the_outputs_kept_runs_had_and_cat_says_when_they_are_gone(
    ef: Ef, project: Path
) -> None:
    first = _run(ef, project, 40000)  # a stored object, named by no record once replaced
    later = _run(ef, project, 30000)
    gc = ef(project, "cache", "gc", "--keep-runs", "5", "--older-than", "0")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(_cat(ef, project, first, "load").stdout) == list(range(40000))
    assert json.loads(_cat(ef, project, first, "double").stdout) == 80000
    pin = ef(project, "cache", "pin", first)
    assert pin.returncode == 0, pin.stderr
    _run(ef, project, 20000)
    gc = ef(project, "cache", "gc", "--keep-runs", "1", "--older-than", "0")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(_cat(ef, project, first, "load").stdout) == list(range(40000))  # pinned
    gone = _cat(ef, project, later, "load")  # neither pinned nor among the last run
    assert gone.returncode == 2 and len(gone.stderr.splitlines()) == 1, gone.stderr
    assert f"the result of node 'load' in run {later} is no longer in the store" in gone.stderr
    assert "30000" not in gone.stdout and "20000" not in gone.stdout


def test_rows_recorded_before_runs_kept_their_outputs_use_the_keys_record(
    ef: Ef, project: Path
) -> None:
    """A journal of an older version (no outputs in its rows): the key's latest record, as
    before; once that is forgotten, cat says it is gone and names ``cache forget`` too."""
    run_id = _run(ef, project, 3)
    conn = sqlite3.connect(project / ".etherealfabric" / "journal.db")
    with conn:
        conn.execute("UPDATE node_runs SET outputs = NULL, record_at = NULL")
    conn.close()
    assert json.loads(_cat(ef, project, run_id, "double").stdout) == 6
    forget = ef(project, "cache", "forget", "double")
    assert forget.returncode == 0, forget.stderr
    gone = _cat(ef, project, run_id, "double")
    assert gone.returncode == 2 and len(gone.stderr.splitlines()) == 1, gone.stderr
    assert "no longer in the store (dropped by `etherealfabric cache forget` or `cache gc`" in (
        gone.stderr
    )


def test_a_forgotten_result_of_a_past_run_is_still_its_result_while_stored(
    ef: Ef, project: Path
) -> None:
    run_id = _run(ef, project, 4)
    assert ef(project, "cache", "forget", "load").returncode == 0
    assert json.loads(_cat(ef, project, run_id, "load").stdout) == 4
    again = _run(ef, project, 4)  # forgotten: runs again
    assert json.loads(_cat(ef, project, again, "load").stdout) == 4


# -- a functools.partial as a node -------------------------------------------------------------
def _scale(x: int, k: int = 2) -> int:
    return x * k


def test_a_partial_as_a_node_is_a_definition_error_that_says_what_to_do() -> None:
    import functools

    with pytest.raises(DefinitionError) as raised:
        etherealfabric.node(functools.partial(_scale, k=3), name="scale3")
    text = str(raised.value)
    assert "node 'scale3'" in text and "functools.partial" in text and "k=3" in text
    assert "def _scale_bound(x): return _scale(x, k=3)" in text

    class Callable_:
        def __call__(self, x: int) -> int:
            return x

    with pytest.raises(DefinitionError, match="has no __name__; wrap the call in a def"):
        etherealfabric.node(Callable_())


def test_run_of_a_flow_with_a_partial_node_says_why_in_one_line(ef: Ef, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import functools
            from etherealfabric import Workflow, node

            def scale(x, k=2):
                return x * k

            scale3 = node(functools.partial(scale, k=3), name="scale3")

            with Workflow("partials") as wf:
                scale3(5)
            """
        )
    )
    done = ef(tmp_path, "run", "flow.py")
    assert done.returncode == 2, done.stderr
    assert "AttributeError" not in done.stderr
    assert "DefinitionError: node 'scale3': a functools.partial cannot be a node" in done.stderr
    assert "`def scale_bound(x): return scale(x, k=3)`" in done.stderr


def test_the_ui_shows_the_outputs_an_earlier_run_had(ef: Ef, project: Path) -> None:
    """The web UI's node page of a past run names the objects that run produced, not those
    of its key's latest record (and does not show the row's kept outputs as an attempt's)."""
    from test_ui import UiServer

    home = project / ".etherealfabric"
    first, later = _run(ef, project, 1), _run(ef, project, 7)
    digests = {
        run_id: etherealfabric.open_run(run_id, home=home).record("load")["result"]["digest"]
        for run_id in (first, later)
    }
    assert digests[first] != digests[later]
    server = UiServer(home)
    try:
        for run_id in (first, later):
            page = server.get(f"/api/runs/{run_id}/nodes/load")
            assert [o["digest"] for o in page["outputs"]] == [digests[run_id]]
            assert all("outputs" not in attempt for attempt in page["attempts"])
    finally:
        server.stop()
