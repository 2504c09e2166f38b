"""A data file a node reads by a path in its code, changed while the node runs.

The file is not in the node's key: the action record lists it under ``reads`` with the digest
of its content, taken after the node ran. A file changed after the node read it (but before
that digest) was recorded with the new content's digest, so the next run found it "unchanged"
and served the result computed from the old content: a stale hit. A file read by the node
whose ctime is not before the attempt's start now makes the node ``drifted`` (its result
serves the run, is not cached). Another process, which the node waits for, rewrites the file
here: nothing depends on timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli_runner import ef_home as _cli
from etherealfabric import Workflow, node
from etherealfabric.journal import Journal

FLOW = """
import subprocess, sys
from pathlib import Path
from etherealfabric import Workflow, node

@node
def total():
    with open("data.txt") as fh:
        text = fh.read()
    if Path("rewrite.txt").exists():  # another writer, while the node runs
        edit = "from pathlib import Path; Path('data.txt').write_text('new\\\\n')"
        subprocess.run([sys.executable, "-c", edit], check=True)
    return text.strip()

with Workflow("reads") as wf:
    total()
"""


def _last_run(tmp_path: Path) -> dict[str, Any]:
    return json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]  # type: ignore[no-any-return]


def test_a_file_read_by_path_and_changed_while_the_node_ran_is_not_a_stale_hit(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "data.txt").write_text("old\n")
    (tmp_path / "rewrite.txt").write_text("")
    first = _cli(tmp_path, "run", "flow.py")
    assert first.returncode == 0, first.stderr
    assert "total: input changed while the node ran: ./data.txt" in first.stderr
    run = _last_run(tmp_path)
    show = json.loads(_cli(tmp_path, "show", run["id"], "--json").stdout)
    assert [n["status"] for n in show["nodes"]] == ["drifted"], show
    (tmp_path / "rewrite.txt").unlink()
    # the file says "new": the next run computes it again (it served 'old' from the cache)
    second = _cli(tmp_path, "run", "flow.py")
    assert second.returncode == 0, second.stderr
    run = _last_run(tmp_path)
    assert (run["executed"], run["cached"]) == (1, 0)
    assert _cli(tmp_path, "cat", run["id"], "total").stdout.strip() == "'new'"
    assert "1 cached" in _cli(tmp_path, "run", "flow.py").stderr  # then cached as usual


@node
def names_its_output() -> int:
    """Writes ``made.txt`` natively (unaudited, as pyarrow would) and names it: a file it
    names only, written while it ran, is its output, not a read that changed."""
    path = "made.txt"
    write = "import sys; open(sys.argv[1], 'w').write('x')"
    subprocess.run([sys.executable, "-c", write, path], check=True)
    return 1


def test_a_file_the_node_only_names_and_writes_natively_does_not_drift(
    tmp_path: Path, home: Path
) -> None:
    def run() -> Any:
        with Workflow("named", root=".") as wf:
            names_its_output()
        return wf.execute()

    first = run()
    assert first.statuses["names_its_output"] == "succeeded"
    with Journal(home / "journal.db") as journal:
        record = journal.conn.execute("SELECT record FROM actions").fetchone()[0]
    assert json.loads(record)["reads"]["./made.txt"]["named"] is True
    assert run().cached == 1
