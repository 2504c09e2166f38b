"""A returned File the node wrote is its output, even when the file's timestamp says otherwise.

File systems stamp writes from a clock that may lag ``time.time()`` by a tick (Linux's
``CLOCK_REALTIME_COARSE``, 1 to 10 ms, on kernels or file systems without fine-grained
timestamps): a node that writes its output at once can see it stamped *before* its attempt
started. Judged by the stamp alone, the output was the user's data ("unwritten": re-run if it
changes, never restored), so a teammate without the file recomputed it instead of getting it
back. A file the node opened to write whole through Python is its own, whatever its stamp; a
doubt otherwise still counts as untouched (a re-run, never an overwrite of the user's data).
The lag is made here with a start time set a few milliseconds after the stamp.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from etherealfabric import Directory, File, Workflow, node
from etherealfabric.run._files import Written, capture_outputs
from etherealfabric.store import LocalStore

LAGGED = 0.002  # a start measured 2 ms after the file's stamp: within one coarse tick


def _stamp(path: Path) -> float:
    info = os.stat(path)
    return max(info.st_mtime, info.st_ctime)


def _capture(tmp_path: Path, value: File | Directory, written: Written) -> dict:
    _returned, files = capture_outputs(
        LocalStore(str(tmp_path / "store")), str(tmp_path), (), {"r": value}, node="report",
        written=written,
    )  # fmt: skip
    (entry,) = files.values()
    return entry


def test_a_file_written_through_python_is_the_nodes_whatever_its_stamp(tmp_path: Path) -> None:
    out = tmp_path / "r.txt"
    out.write_text("made by the node\n")
    since = _stamp(out) + LAGGED
    entry = _capture(tmp_path, File(str(out)), Written(since, frozenset({str(out)})))
    assert "unwritten" not in entry  # a hit puts it back
    # by its stamp alone (written natively, unseen): a doubt, so the user's
    assert _capture(tmp_path, File(str(out)), Written(since))["unwritten"] is True


def test_a_folder_the_node_wrote_into_is_the_nodes(tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"png")
    since = _stamp(folder / "a.png") + LAGGED
    wrote = Written(since, frozenset({str(folder / "a.png")}))
    assert "unwritten" not in _capture(tmp_path, Directory(str(folder)), wrote)
    elsewhere = Written(since, frozenset({str(tmp_path / "plotsX" / "a.png")}))  # a sibling
    assert _capture(tmp_path, Directory(str(folder)), elsewhere)["unwritten"] is True


def test_data_the_node_only_returned_stays_unwritten(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    old = time.time() - 60
    os.utime(data, (old, old))
    assert _capture(tmp_path, File(str(data)), Written(_stamp(data) + 1.0))["unwritten"] is True


def test_a_node_run_records_what_it_wrote_as_its_own(tmp_path: Path, monkeypatch) -> None:
    """Through a run: the file written by the node is restored on a hit, not re-run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "home"))
    runs: list[int] = []

    @node
    def report() -> File:
        runs.append(1)
        Path("r.txt").write_text("made by the node\n")
        return File("r.txt")

    with Workflow("written", root=".") as wf:
        report()
    assert wf.execute().executed == 1
    Path("r.txt").unlink()  # a teammate's checkout: no file yet
    again = wf.execute()
    assert (again.executed, again.cached) == (0, 1)
    assert Path("r.txt").read_text() == "made by the node\n"
    assert runs == [1]
