"""A node waiting for a worker is not running: it is started when its first attempt begins.

The scheduler keeps more tasks submitted than there are workers once tasks turn out short (a
short node first opens the window): those wait in the backend's queue. ``status``, the web UI
and the journal used to call them running from their submission on (five "running" nodes with
``max_workers=1``, their timeline bars drawn side by side, and after a kill, nodes that never
began shown interrupted). Real runs on the threads and processes backends; the journal is read
as the CLI reads it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etherealfabric import Workflow, node
from etherealfabric.journal import Journal
from etherealfabric.states import EventKind
from test_backends import WORKERS, celery_worker, redis  # noqa: F401  (fixtures)


@node
def root() -> int:
    return 1


@node
def sleeper(x: int, i: int) -> int:
    time.sleep(0.4)
    return x + i


def _flow(home: Path) -> Workflow:
    with Workflow("queued", home=home) as wf:
        r = root()  # short: the window opens, and the sleepers are all submitted at once
        for i in range(4):
            sleeper(r, i)
    return wf


@pytest.mark.parametrize("backend", ["threads", "processes", "dask"])
def test_with_one_worker_one_node_runs_at_a_time(tmp_path: Path, backend: str) -> None:
    running: set[str] = set()
    overlaps: list[tuple[str, set[str]]] = []

    def watch(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind is EventKind.NODE_STARTED:
            if running:
                overlaps.append((event.node, set(running)))
            running.add(event.node)
        elif event.kind is EventKind.NODE_SUCCEEDED:
            running.discard(event.node)

    wf = _flow(tmp_path / "home")
    results = wf.execute(backend=backend, max_workers=1, subscribers=[watch])
    assert results.executed == 5
    if backend == "dask":  # a result is fetched after it ends: the next node's start may
        # come first (for a moment, two shown running); before, all four were at once
        assert max((len(others) + 1 for _, others in overlaps), default=1) <= 2, overlaps
    else:
        assert overlaps == []
    with Journal(tmp_path / "home" / "journal.db") as journal:
        rows = sorted(
            (r["started_at"], r["finished_at"], r["node"])
            for r in journal.node_runs(results.run_id)
        )
    for (_, end, before), (start, _, after) in itertools.pairwise(rows):
        assert start >= end - 0.01, (before, after, rows)  # one after the other, as they ran


SCRIPT = """
import sys, time
from etherealfabric import Workflow, node

@node
def root():
    return 1

@node
def sleeper(x, i):
    open(sys.argv[1] + f"/started-{i}", "w").close()
    time.sleep(60)
    return x + i

with Workflow("queued-kill", home=sys.argv[2]) as wf:
    r = root()
    for i in range(4):
        sleeper(r, i)
wf.execute(max_workers=1)
"""


def test_a_killed_run_shows_only_the_node_that_began_interrupted(tmp_path: Path) -> None:
    script, marks, home = tmp_path / "flow.py", tmp_path / "marks", tmp_path / "home"
    script.write_text(SCRIPT)
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marks), str(home)], env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(marks.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "no sleeper started"
            time.sleep(0.05)
        time.sleep(1.0)  # its running row is committed (group window), the others queued
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    [began] = [p.name.split("-")[1] for p in marks.iterdir()]
    out = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "status", "latest", "--home", str(home),
         "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # (an interrupted run: status marks it so)
    status = json.loads(out.stdout)
    assert status["counts"] == {"succeeded": 1, "interrupted": 1}, status
    with Journal(home / "journal.db") as journal:
        rows = journal.node_runs(status["id"])
    expected = "sleeper" if began == "0" else f"sleeper-{int(began) + 1}"
    assert [r["node"] for r in rows if r["status"] == "interrupted"] == [expected], rows


def test_on_celery_a_node_waiting_for_a_worker_is_not_running(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Celery task waiting in the queue is pending; its node starts at its STARTED state
    (all six sleepers were shown running at once, on a worker that runs two)."""
    for var, value in request.getfixturevalue("celery_worker").items():
        monkeypatch.setenv(var, value)
    running: set[str] = set()
    most = [0]

    def watch(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind is EventKind.NODE_STARTED:
            running.add(event.node)
            most[0] = max(most[0], len(running))
        elif event.kind is EventKind.NODE_SUCCEEDED:
            running.discard(event.node)

    with Workflow("queued-celery", home=tmp_path / "home") as wf:
        r = root()
        for i in range(6):
            sleeper(r, i)
    results = wf.execute(backend="celery", max_workers=WORKERS, subscribers=[watch])
    assert results.executed == 7
    assert most[0] <= WORKERS, most
