"""Two runs of one home mapping overlapping items compute each shared child once: children
are leased a chunk at a time (``run/_mapleases.py``), like static nodes one at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from etherealfabric import Workflow, node

    marks = Path(sys.argv[3])

    @node
    def numbers(start, end):
        return list(range(start, end))

    @node
    def slow(x, marks):
        Path(marks, f"start-{x}-{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while not Path(marks, "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.02)
        Path(marks, f"done-{x}-{os.getpid()}").touch()
        return x * 2

    with Workflow("overlap", max_workers=2) as wf:
        out = slow.map(numbers(int(sys.argv[1]), int(sys.argv[2])), marks=str(marks))
    results = wf.execute()
    report = results.map_report(out)
    print(json.dumps({"values": results[out], "cached": report.cached,
                      "executed": len(report.executed)}))
    """
)


def test_two_runs_mapping_overlapping_items_compute_each_shared_child_once(
    tmp_path: Path,
) -> None:
    script = tmp_path / "overlap.py"
    script.write_text(SCRIPT)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start), str(start + 20), str(marks)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 10)
    ]
    # both runs have children going (blocked on "go") before any child finishes
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pids = {p.name.split("-")[2] for p in marks.glob("start-*")}
        if len(pids) == 2 or any(r.poll() is not None for r in runs):
            break
        time.sleep(0.05)
    (marks / "go").touch()
    outs = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0]["values"] == [2 * x for x in range(20)]
    assert outs[1]["values"] == [2 * x for x in range(10, 30)]
    done: dict[int, list[str]] = {}
    for mark in marks.glob("done-*"):
        _, x, pid = mark.name.split("-")
        done.setdefault(int(x), []).append(pid)
    assert sorted(done) == list(range(30))
    twice = {x: pids for x, pids in done.items() if len(pids) > 1}
    assert twice == {}, f"computed by both runs: {twice}"
    assert len({pid for pids in done.values() for pid in pids}) == 2  # both ran children
    # each run computed some of the shared items and found the others' in the cache
    assert outs[0]["executed"] + outs[1]["executed"] == 30
    assert outs[0]["cached"] + outs[1]["cached"] == 10
