"""Several processes on one home at once: no lock errors, one result, each key computed once.

The processes run ``programs/flow.py`` and wait at a barrier (a ``go`` file) so they really
start together. Every node body appends ``"<node> <pid>"`` to one shared executions log, so
the tests see exactly who computed what. "Each key is computed by exactly one process" is the
lease requirement (journal table ``leases``): a process that finds a key leased by a live
process waits for its result instead of computing it again; a lease held by a dead process is
taken over.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from etherealfabric.journal._journal import HOST, Journal
from programs.harness import (
    NODES_A,
    NODES_B,
    Checks,
    Program,
    bad_blobs,
    bad_objects,
    dangling_actions,
    flow_env,
    query,
    read_log,
    run_flow,
    runs_of_pid,
    start_flow,
    wait_until,
)

NODES = {"a": NODES_A, "b": NODES_B}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Summaries of uninterrupted runs of both variants, each in a home of its own."""
    summaries = {}
    for variant in ("a", "b"):
        base = tmp_path_factory.mktemp(f"clean-{variant}")
        program = run_flow(
            flow_env(base / "home", base / "executions.log"), base, "--variant", variant
        )
        summaries[variant] = program.summary()
    return summaries


#: How long the racing processes may take together; past it they count as hung.
RACE_SECONDS = 90


def _race(tmp_path: Path, variants: list[str]) -> tuple[list[Program], Path, Path, list[str]]:
    """Start one flow.py per variant on one home, release them together, wait for all.

    Returns the programs, the home, the executions log and a note per process that hung
    (its thread stacks, dumped through faulthandler before it was killed).
    """
    home, log, barrier = tmp_path / "home", tmp_path / "executions.log", tmp_path / "barrier"
    barrier.mkdir()
    # bodies long enough that, without leases, the processes surely meet on the same keys
    env = flow_env(home, log, EF_TEST_BARRIER=str(barrier), EF_TEST_WORK_SECONDS="0.05")
    programs = [
        start_flow(env, tmp_path / "out", "--variant", v, name=f"{i}-{v}")
        for i, v in enumerate(variants)
    ]
    hung: list[str] = []
    try:
        ready = wait_until(
            lambda: (
                len(list(barrier.glob("ready-*"))) == len(programs)
                or any(p.proc.poll() is not None for p in programs)
            ),
            timeout=120,
        )
        assert ready and all(p.proc.poll() is None for p in programs), "not all reached the barrier"
        (barrier / "go").touch()
        wait_until(lambda: all(p.proc.poll() is not None for p in programs), timeout=RACE_SECONDS)
        for p in programs:
            if p.proc.poll() is None:
                size = p.stderr.stat().st_size
                p.proc.send_signal(signal.SIGUSR1)  # flow.py dumps its threads' stacks
                wait_until(lambda p=p, size=size: p.stderr.stat().st_size > size, timeout=5)
                hung.append(
                    f"pid {p.pid} still running {RACE_SECONDS} s after the barrier opened "
                    f"(deadlock?); its threads:\n{p.err()[size:][-6000:]}"
                )
    finally:
        for p in programs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
    return programs, home, log, hung


def _check_race(
    checks: Checks,
    programs: list[Program],
    variants: list[str],
    home: Path,
    log: Path,
    clean: dict[str, dict[str, Any]],
) -> None:
    journal = home / "journal.db"
    for program, variant in zip(programs, variants, strict=True):
        err = program.err()
        if not checks.check(
            program.proc.returncode == 0,
            f"pid {program.pid} ({variant}) exited {program.proc.returncode}: {err[-1500:]}",
        ):
            continue
        checks.check("database is locked" not in err.lower(), f"pid {program.pid}: {err[-1500:]}")
        values = program.summary()["values"]
        for label in NODES[variant]:
            checks.check(
                values.get(label) == clean[variant]["values"][label],
                f"pid {program.pid} ({variant}): {label} = {values.get(label)}, clean run: "
                f"{clean[variant]['values'][label]}",
            )
    for problem in bad_objects(home) + bad_blobs(journal) + dangling_actions(journal, home):
        checks.check(False, problem)
    # the lease requirement: each node key computed by exactly one process
    executions = read_log(log)
    expected = set().union(*(NODES[v] for v in variants))
    by_node: dict[str, list[int]] = {}
    for label, pid in executions:
        by_node.setdefault(label, []).append(pid)
    checks.check(
        set(by_node) == expected,
        f"nodes executed {sorted(by_node)} != nodes of the workflows {sorted(expected)}",
    )
    twice = {label: pids for label, pids in sorted(by_node.items()) if len(pids) > 1}
    checks.check(
        not twice,
        f"lease: {len(twice)} of {len(expected)} node keys were computed by more than one "
        f"process ({len(executions)} executions for {len(expected)} keys): {twice}",
    )


@pytest.mark.slow
def test_three_processes_same_workflow_one_home_compute_each_key_once(
    tmp_path: Path, clean: dict[str, dict[str, Any]]
) -> None:
    variants = ["a", "a", "a"]
    programs, home, log, hung = _race(tmp_path, variants)
    checks = Checks()
    for note in hung:
        checks.check(False, note)
    _check_race(checks, programs, variants, home, log, clean)
    executed = [p.summary()["executed"] for p in programs if p.proc.returncode == 0]
    checks.check(
        sum(executed) == len(NODES_A),
        f"the processes report executed={executed}: {sum(executed)} in total for "
        f"{len(NODES_A)} keys",
    )
    checks.done()


@pytest.mark.slow
def test_overlapping_workflows_one_home_compute_shared_keys_once(
    tmp_path: Path, clean: dict[str, dict[str, Any]]
) -> None:
    variants = ["a", "b", "b"]
    programs, home, log, hung = _race(tmp_path, variants)
    checks = Checks()
    for note in hung:
        checks.check(False, note)
    _check_race(checks, programs, variants, home, log, clean)
    shared = sorted(set(NODES_A) & set(NODES_B))
    counts = Counter(label for label, _ in read_log(log))
    checks.check(
        all(counts[label] == 1 for label in shared),
        f"shared nodes computed more than once: { {n: counts[n] for n in shared if counts[n] != 1} }",
    )
    checks.done()


@pytest.mark.slow
def test_process_killed_inside_a_node_does_not_block_the_next_run(
    tmp_path: Path, clean: dict[str, dict[str, Any]]
) -> None:
    home, log = tmp_path / "home", tmp_path / "executions.log"
    victim = "branch:4"
    first = start_flow(flow_env(home, log, EF_TEST_SUICIDE=victim), tmp_path / "out")
    assert first.wait(120) == -signal.SIGKILL, f"it should have killed itself:\n{first.err()}"
    assert victim in [label for label, _ in read_log(log)]
    before = len(read_log(log))
    second = start_flow(flow_env(home, log), tmp_path / "out")
    try:
        code = second.wait(90)
    except subprocess.TimeoutExpired:
        second.proc.kill()
        second.proc.wait()
        pytest.fail(f"the next run waited > 90 s, probably on the dead process's lease of {victim}")
    checks = Checks()
    checks.check(code == 0, f"the next run exited {code}: {second.err()[-1500:]}")
    if code == 0:
        again = [label for label, pid in read_log(log)[before:] if pid == second.pid]
        checks.check(victim in again, f"the next run did not execute {victim} itself: {again}")
        checks.check(
            second.summary()["values"] == clean["a"]["values"], "outputs differ from a clean run"
        )
    runs = runs_of_pid(home / "journal.db", first.pid)
    checks.check(
        not runs or runs[0]["status"] == "interrupted",
        f"the self-killed run is {runs[0]['status'] if runs else None!r}, not 'interrupted'",
    )
    checks.done()


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_leases_held_by_a_dead_process_are_taken_over(
    tmp_path: Path, clean: dict[str, dict[str, Any]]
) -> None:
    # learn the keys from a run in another home
    other = tmp_path / "other"
    run_flow(flow_env(other / "home", other / "executions.log"), other)
    keys = {
        row["node"]: row["cache_key"]
        for row in query(
            other / "home" / "journal.db",
            "SELECT node, cache_key FROM node_runs WHERE status = 'succeeded'",
        )
    }
    assert sorted(keys) == sorted(NODES_A)
    # a fresh home whose journal says a dead process of this host holds a lease on every key
    home, log = tmp_path / "home", tmp_path / "executions.log"
    dead = _dead_pid()
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        conn.execute(
            "INSERT INTO runs (id, workflow, status, started_at, host, pid, nodes) "
            "VALUES ('dead-run', 'flow-a', 'running', ?, ?, ?, ?)",
            (time.time() - 5, HOST, dead, len(keys)),
        )
        conn.executemany(
            "INSERT INTO leases (key, node, run_id, host, pid, acquired_at) VALUES (?,?,?,?,?,?)",
            [(key, node, "dead-run", HOST, dead, time.time() - 5) for node, key in keys.items()],
        )
    program = start_flow(flow_env(home, log), tmp_path / "out")
    try:
        code = program.wait(90)
    except subprocess.TimeoutExpired:
        program.proc.kill()
        program.proc.wait()
        pytest.fail("the run waited > 90 s on leases held by a dead process")
    assert code == 0, program.err()
    checks = Checks()
    executed = sorted(label for label, pid in read_log(log) if pid == program.pid)
    checks.check(executed == sorted(NODES_A), f"the run executed only {executed}")
    checks.check(program.summary()["values"] == clean["a"]["values"], "outputs differ")
    status = query(home / "journal.db", "SELECT status FROM runs WHERE id = 'dead-run'")
    checks.check(
        status == [{"status": "interrupted"}], f"the dead run is {status}, not interrupted"
    )
    checks.done()
