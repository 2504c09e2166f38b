"""The backend contract's mapped-node cases (:class:`MapContract`, a part of
:class:`~etherealfabric.testing.BackendContract`).

A map's children travel to the backend in chunks of tasks and come back one result each: on
every backend, a failed item fails alone (and runs again alone), a warm re-run executes
nothing, and a driver killed with SIGKILL in the middle of a map loses only the children
that were not committed yet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..define._function import node
from ..errors import RunFailedError
from ..journal import Journal
from ..run._audit import untracked
from ..workflow import Workflow

__all__ = ["MAP_SCRIPT", "MapContract", "picky"]


@node
def picky(x: int, refuse: str) -> int:
    """``x * 10``; an error for the items listed in the JSON file ``refuse``, while it exists."""
    with untracked():  # the file steers the test: the results do not depend on it
        refused = os.path.exists(refuse) and x in json.loads(Path(refuse).read_text())
    if refused:
        raise ValueError(f"picky refuses {x}")
    return x * 10


@node
def upto(n: int) -> list[int]:
    return list(range(n))


#: A driver that maps a slow node over ``n`` items; the test kills it in the middle.
MAP_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from etherealfabric import Workflow, node

{setup}


@node
def slow(x, marks):
    Path(marks, f"{{x}}-{{os.getpid()}}-{{time.time_ns()}}").touch()
    time.sleep(0.3)
    return x * 2


if __name__ == "__main__":
    home, marks, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Workflow("map-resume") as wf:
        slow.map(list(range(n)), marks=marks)
    results = wf.execute(home=home)
    report = results.map_report("slow")
    print(json.dumps({{"result": results["slow"]["result"], "executed": report.executed,
                      "cached": report.cached}}))
"""


def _children(home: Path, run_id: str | None = None) -> dict[str, str]:
    """The children rows of ``slow`` (of one run, or of the latest): name -> status."""
    with Journal(home / "journal.db", read_only=True) as journal:
        run = run_id or journal.list_runs(limit=1)[0]["id"]
        return {r["node"]: r["status"] for r in journal.node_runs(run) if "[" in r["node"]}


class MapContract:
    """Mapped nodes on the backend under test (mixed into ``BackendContract``)."""

    timeout: ClassVar[float]
    script_setup: ClassVar[str]
    in_process: ClassVar[bool]

    def test_a_map_fails_item_by_item_and_retries_only_the_failed_items(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        refuse = tmp_path / "refuse.json"
        refuse.write_text("[2, 5]")

        def build(allowed: int) -> Workflow:
            with Workflow("map-partial") as wf:
                picky.map(upto(8), refuse=str(refuse), max_failures=allowed)
            return wf

        with pytest.raises(RunFailedError, match="2 of 8 items failed") as caught:
            build(1).execute(home=home, keep_going=True)  # every item is tried
        first = caught.value.results.map_report("picky")
        assert sorted(first.failed) == ["picky[2]", "picky[5]"]
        assert "ValueError: picky refuses 2" in first.failed["picky[2]"]
        partial = build(2).execute(home=home)  # allowed now: nothing runs again
        assert partial["picky"]["result"] == [0, 10, 30, 40, 60, 70]
        assert partial.map_report("picky").executed == []  # the 2 failed again, alone
        assert sorted(partial.map_report("picky").failed) == ["picky[2]", "picky[5]"]
        refuse.unlink()
        again = build(2).execute(home=home)
        assert sorted(again.map_report("picky").executed) == ["picky[2]", "picky[5]"]
        assert again["picky"]["result"] == [10 * i for i in range(8)]

    def test_a_warm_map_executes_nothing_and_a_new_item_runs_alone(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        def build(n: int) -> Workflow:
            with Workflow("map-warm") as wf:
                picky.map(upto(n), refuse=str(tmp_path / "nothing.json"))
            return wf

        first = build(12).execute(home=home)
        assert len(first.map_report("picky").executed) == 12
        with Journal(home / "journal.db") as journal:
            pids = {r["pid"] for r in journal.node_runs(first.run_id) if "[" in r["node"]}
        assert (pids == {os.getpid()}) if self.in_process else (os.getpid() not in pids)
        again = build(12).execute(home=home)
        assert (again.executed, again.map_report("picky").whole) == (0, True)
        more = build(13).execute(home=home)
        assert more.map_report("picky").executed == ["picky[12]"]
        assert more["picky"]["result"] == [10 * i for i in range(13)]

    def test_a_driver_killed_mid_map_resumes_without_redoing_committed_items(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        script, marks, n = tmp_path / "map_script.py", tmp_path / "marks", 16
        script.write_text(MAP_SCRIPT.format(setup=textwrap.dedent(self.script_setup)))
        marks.mkdir()
        command = [sys.executable, str(script), str(home), str(marks), str(n)]
        driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 4 * self.timeout
        committed: dict[str, str] = {}
        while time.monotonic() < deadline and driver.poll() is None:
            try:
                committed = _children(home)
            except Exception:  # not created yet, or still being set up
                committed = {}
            if sum(s == "succeeded" for s in committed.values()) >= 3:
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the map finished before the driver could be killed"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        done = {name for name, status in _children(home).items() if status == "succeeded"}
        assert 3 <= len(done) < n
        second = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=8 * self.timeout
        )
        assert second.returncode == 0, second.stderr[-4000:]
        report: dict[str, Any] = json.loads(second.stdout.strip().splitlines()[-1])
        assert report["result"] == [2 * i for i in range(n)]
        assert not done & set(report["executed"]), "a committed item ran again"
        assert done | set(report["executed"]) == {f"slow[{i}]" for i in range(n)}
        runs = {Path(m).name.split("-")[0] for m in os.listdir(marks)}
        assert runs == {str(i) for i in range(n)}
