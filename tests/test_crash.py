"""Resume after a crash: SIGKILL and Ctrl-C at many points, with real processes.

``programs/flow.py`` (36 nodes: fan-out, chains, joins; large outputs as files, small ones
inline) is killed over and over, then run to the end. Every node body logs its start, so the
tests know exactly what executed, and they read the journal (read-only) after each kill to
know what was committed. Nothing finished may be lost, and nothing half-written may be used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from programs.harness import (
    NODES_A,
    Checks,
    bad_blobs,
    bad_objects,
    committed_nodes,
    dangling_actions,
    flow_env,
    node_rows,
    read_log,
    run_flow,
    runs_of_pid,
    start_flow,
    wait_until,
)

N = len(NODES_A)

#: Where each kill lands: ``(commits, lines, delay)``: once the journal holds ``commits``
#: committed nodes and the process has logged ``lines`` node starts of its own (``lines=0``:
#: once its run row is committed), plus ``delay`` seconds. The growing ``commits`` walk the
#: kills through the whole graph; zero or short delays land in node bodies (each works ~10 ms),
#: longer ones in artifact writes and journal batches; every fourth kill lands in start-up.
_DELAYS = (0.0, 0.015, 0.004, 0.03, 0.011, 0.0, 0.02, 0.008, 0.045, 0.013, 0.002, 0.06)
KILL_PLAN: list[tuple[int, int, float]] = [
    (0, 0, _DELAYS[i % 3] / 2) if i % 4 == 0 else (i * 3 // 2, 1 + i % 3, _DELAYS[i % 12])
    for i in range(20)
]
MIN_KILLS = 10


@dataclass
class Kill:
    """What one SIGKILLed process left behind, observed right after its death."""

    pid: int
    started: list[str]  # node bodies it began
    in_flight: set[str]  # ...of which no commit survived
    run_id: str | None  # its run row, if it was committed
    status: str | None  # ...and that row's status right after the kill
    running_rows: set[str] = field(default_factory=set)  # its node rows left `running`


@pytest.fixture(scope="module")
def clean_summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The outputs of an uninterrupted run in a home of its own."""
    base = tmp_path_factory.mktemp("clean")
    log = base / "executions.log"
    program = run_flow(flow_env(base / "home", log), base)
    summary = program.summary()
    assert summary["executed"] == N and sorted(label for label, _ in read_log(log)) == sorted(
        NODES_A
    ), "the clean run must execute every node exactly once"
    return summary


def _kill_at(
    home: Path, log: Path, tmp_path: Path, commits: int, lines: int, delay: float
) -> tuple[Any, int]:
    """Start flow.py, SIGKILL it at the planned point; return (program, return code)."""
    journal = home / "journal.db"
    already = len(read_log(log))
    program = start_flow(flow_env(home, log), tmp_path / "out")

    def reached() -> bool:
        if lines == 0:
            started = bool(runs_of_pid(journal, program.pid))
        else:
            started = len(read_log(log)) - already >= lines
        return started and len(committed_nodes(journal)) >= commits

    wait_until(reached, timeout=60, proc=program.proc)
    if delay:
        wait_until(lambda: False, timeout=delay, proc=program.proc)
    if program.proc.poll() is None:
        program.proc.send_signal(signal.SIGKILL)
    return program, program.wait(60)


def _observe(home: Path, log: Path, pid: int) -> Kill:
    journal = home / "journal.db"
    started = [label for label, p in read_log(log) if p == pid]
    runs = runs_of_pid(journal, pid)
    run_id, status = (runs[0]["id"], runs[0]["status"]) if runs else (None, None)
    running = (
        {r["node"] for r in node_rows(journal, run_id) if r["status"] == "running"}
        if run_id
        else set()
    )
    return Kill(pid, started, set(started) - committed_nodes(journal), run_id, status, running)


@pytest.mark.slow
def test_sigkill_at_many_points_then_resume_loses_nothing_and_uses_nothing_half_written(
    tmp_path: Path, clean_summary: dict[str, Any]
) -> None:
    home, log = tmp_path / "home", tmp_path / "executions.log"
    journal = home / "journal.db"
    checks = Checks()
    kills: list[Kill] = []
    for commits, lines, delay in KILL_PLAN:
        program, code = _kill_at(home, log, tmp_path, commits, lines, delay)
        if code == 0:
            break  # it finished before the kill point: nothing left to interrupt
        assert code == -signal.SIGKILL, f"flow.py failed by itself ({code}):\n{program.err()}"
        kills.append(_observe(home, log, program.pid))
        # (c) right after the kill: nothing half-written under a final name, no dangling record
        for problem in bad_objects(home) + bad_blobs(journal) + dangling_actions(journal, home):
            checks.check(False, f"(c) after kill {len(kills)} (pid {program.pid}): {problem}")
    interrupting = [k for k in kills if k.status in (None, "running")]
    assert len(interrupting) >= MIN_KILLS, (
        f"only {len(interrupting)} kills landed before the workflow completed; fix the plan"
    )
    committed_before_final = committed_nodes(journal)
    for i, k in enumerate(kills, 1):  # shown on failure, or with -s
        print(
            f"kill {i}: pid {k.pid} started {k.started} in flight {sorted(k.in_flight)} "
            f"run {k.run_id} {k.status} running rows {sorted(k.running_rows)}"
        )
    before_final = len(read_log(log))
    final = run_flow(flow_env(home, log), tmp_path / "out")
    summary = final.summary()
    executions = read_log(log)
    final_started = [label for label, _ in executions[before_final:]]

    # (a) every node runs once, plus once more per kill that caught it uncommitted
    in_flight_total = sum(len(k.in_flight) for k in kills)
    checks.check(
        len(executions) <= N + in_flight_total,
        f"(a) {len(executions)} node executions > {N} nodes + {in_flight_total} in flight at "
        f"the {len(kills)} kills: finished work was redone",
    )
    for label in NODES_A:
        runs = sum(1 for name, _ in executions if name == label)
        allowed = 1 + sum(1 for k in kills if label in k.in_flight)
        checks.check(
            runs <= allowed,
            f"(a) node {label!r} executed {runs} times, but only {allowed - 1} kills caught it "
            "uncommitted: a committed result was not reused",
        )
    # (b) the same outputs as an uninterrupted run
    checks.check(summary["status"] == "succeeded", f"(b) final run status {summary['status']}")
    for label in NODES_A:
        checks.check(
            summary["values"].get(label) == clean_summary["values"][label],
            f"(b) node {label!r}: {summary['values'].get(label)} after the kills, "
            f"{clean_summary['values'][label]} in a clean run",
        )
    # (c) no artifact, inline blob or action record is half-written
    for problem in bad_objects(home) + bad_blobs(journal) + dangling_actions(journal, home):
        checks.check(False, f"(c) {problem}")
    # (d) killed runs, and their running nodes, are marked interrupted by a later process
    for kill in kills:
        if kill.status != "running":
            continue  # killed before its run row was committed, or after it was finished
        status = runs_of_pid(journal, kill.pid)[0]["status"]
        checks.check(
            status == "interrupted",
            f"(d) run {kill.run_id} (pid {kill.pid}, SIGKILLed) is {status!r}, not 'interrupted'",
        )
        rows = {r["node"]: r["status"] for r in node_rows(journal, kill.run_id)}
        left = sorted(n for n, s in rows.items() if s in ("running", "retrying", "pending"))
        checks.check(not left, f"(d) run {kill.run_id}: node rows still {left} after the kill")
        for node_name in sorted(kill.running_rows):
            checks.check(
                rows.get(node_name) == "interrupted",
                f"(d) run {kill.run_id}: node {node_name!r} was running at the kill and is now "
                f"{rows.get(node_name)!r}, not 'interrupted'",
            )
    # (e) the final run resumed: it executed exactly what had not been committed
    expected = sorted(set(NODES_A) - committed_before_final)
    checks.check(
        sorted(final_started) == expected,
        f"(e) the final run executed {sorted(final_started)}; uncommitted were {expected}",
    )
    checks.check(
        summary["executed"] == len(expected),
        f"(e) final run reports executed={summary['executed']}, expected {len(expected)}",
    )
    if committed_before_final:
        checks.check(summary["executed"] < N, "(e) the final run redid the whole workflow")
    checks.done()


@pytest.mark.slow
def test_ctrl_c_during_a_node_cancels_the_run_and_the_next_run_resumes(
    tmp_path: Path, clean_summary: dict[str, Any]
) -> None:
    home, log = tmp_path / "home", tmp_path / "executions.log"
    journal = home / "journal.db"
    release = tmp_path / "release"
    checks = Checks()
    blocked = "stats:3"
    env = flow_env(home, log, EF_TEST_BLOCK=blocked, EF_TEST_BLOCK_RELEASE=str(release))
    program = start_flow(env, tmp_path / "out")
    seen = wait_until(
        lambda: blocked in {label for label, _ in read_log(log)}, timeout=60, proc=program.proc
    )
    assert seen and program.proc.poll() is None, f"{blocked} never started:\n{program.err()}"
    program.proc.send_signal(signal.SIGINT)
    exited = wait_until(lambda: program.proc.poll() is not None, timeout=20)
    checks.check(
        exited,
        f"the process did not exit within 20 s of SIGINT while node {blocked!r} was still "
        "running (it waits for running node bodies to finish)",
    )
    release.touch()  # let a body that is still running end, so the process can exit
    code = program.wait(60)
    checks.check(code != 0, f"exit code {code} after SIGINT; expected non-zero")
    checks.check("KeyboardInterrupt" in program.err() or code in (-signal.SIGINT, 130),
                 f"exit {code} does not say it was interrupted; stderr:\n{program.err()[-2000:]}")  # fmt: skip

    runs = runs_of_pid(journal, program.pid)
    checks.check(len(runs) == 1, f"expected one run row for pid {program.pid}, got {runs}")
    if runs:
        run = runs[0]
        checks.check(
            run["status"] == "cancelled",
            f"the interrupted run is {run['status']!r}, not 'cancelled'",
        )
        rows = {r["node"]: r["status"] for r in node_rows(journal, run["id"])}
        checks.check(
            rows.get(blocked) == "cancelled",
            f"node {blocked!r} (running at the SIGINT) is {rows.get(blocked)!r}, not 'cancelled'",
        )
        left = sorted(n for n, s in rows.items() if s in ("running", "retrying", "pending"))
        checks.check(not left, f"node rows still {left} after the run was cancelled")

    committed = committed_nodes(journal)
    checks.check(blocked not in committed, f"{blocked!r} was committed although interrupted")
    before_final = len(read_log(log))
    final = run_flow(flow_env(home, log), tmp_path / "out")
    summary = final.summary()
    final_started = sorted(label for label, _ in read_log(log)[before_final:])
    expected = sorted(set(NODES_A) - committed)
    checks.check(
        final_started == expected,
        f"the next run executed {final_started}; not committed before it: {expected}",
    )
    checks.check(summary["values"] == clean_summary["values"], "outputs differ from a clean run")
    for problem in bad_objects(home) + bad_blobs(journal) + dangling_actions(journal, home):
        checks.check(False, problem)
    checks.done()


KILLED_FLOW = """
import sys
import time
from pathlib import Path
from etherealfabric import Workflow, node

@node
def first():
    return 1

@node
def slow(x):
    print("slow: step one", flush=True)
    print("slow: warning", file=sys.stderr, flush=True)
    Path("slow-started").write_text("")
    time.sleep(120)
    return x

with Workflow("killed") as wf:
    slow(first())
"""


def _ef(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_run_killed_with_sigkill_counts_what_it_committed(tmp_path: Path) -> None:
    """``runs`` showed ``executed 0`` for a killed run whose first node had succeeded; its
    counts are now those of its committed node rows, and ``logs`` says why the killed node's
    output is not there."""
    (tmp_path / "flow.py").write_text(KILLED_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    journal = tmp_path / ".etherealfabric" / "journal.db"
    try:
        assert wait_until(
            lambda: (tmp_path / "slow-started").exists() and "first" in committed_nodes(journal),
            timeout=60,
            proc=proc,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    runs = json.loads(_ef(tmp_path, "runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "interrupted"
    assert (runs[0]["executed"], runs[0]["cached"], runs[0]["failed"]) == (1, 0, 0)
    status = json.loads(_ef(tmp_path, "status", runs[0]["id"], "--json").stdout)
    assert status["counts"] == {"succeeded": 1, "interrupted": 1}
    logs = _ef(tmp_path, "logs", runs[0]["id"], "slow").stdout
    assert "== slow attempt 1 (interrupted) ==" in logs
    assert "no output captured: the run's process died while this attempt ran" in logs
    again = json.loads(_ef(tmp_path, "runs", "--json").stdout)  # marked once, counts kept
    assert again == runs
