"""Liveness is exact (issue 12.6): zombies are dead, leases expire unless renewed.

A run killed but not yet reaped by its parent is a zombie: ``kill(pid, 0)`` still succeeds on
it, so it used to count as alive and its leases blocked every other run forever. A lease holder
that liveness cannot see (another host, a frozen process) loses its leases when they expire.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etherealfabric.journal import Journal
from etherealfabric.journal._liveness import alive, process_start
from programs.harness import flow_env, read_log, start_flow


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and that nobody reaped (the caller must wait() it later)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return proc
        time.sleep(0.01)
    raise AssertionError("the child did not exit")


def test_a_zombie_is_not_alive() -> None:
    proc = _zombie()
    try:
        start = process_start(proc.pid)
        assert start is not None  # /proc still has it...
        os.kill(proc.pid, 0)  # ...and kill(0) still succeeds on it
        assert not alive(proc.pid, start)
        assert not alive(proc.pid)
    finally:
        proc.wait()
    assert alive(os.getpid(), process_start(os.getpid()))


def test_a_lease_expires_unless_its_holder_renews_it(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.acquire_lease("k" * 32, node="n", run_id="r1", ttl=0.5)
        # the holder (this very process) is alive: only the expiry can free the lease
        assert not journal.acquire_lease("k" * 32, node="n", run_id="r2")
        assert journal.renew_leases("r1", ttl=30) == 1
        time.sleep(0.6)
        assert not journal.acquire_lease("k" * 32, node="n", run_id="r2")  # renewed: still held
        assert journal.acquire_lease("j" * 32, node="m", run_id="r1", ttl=0.2)
        time.sleep(0.3)
        assert journal.acquire_lease("j" * 32, node="m", run_id="r2")  # expired: taken over
        assert journal.renew_leases("r1", ttl=30) == 1  # only the lease r1 still holds


@pytest.mark.slow
def test_a_killed_unreaped_run_does_not_block_the_next_one(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "executions.log"
    release = tmp_path / "never"  # the blocked node waits for this file, which never comes
    first = start_flow(
        flow_env(home, log, EF_TEST_BLOCK="branch:4", EF_TEST_BLOCK_RELEASE=str(release)),
        tmp_path / "out1",
    )
    deadline = time.monotonic() + 120
    while "branch:4" not in [label for label, _ in read_log(log)]:
        assert time.monotonic() < deadline, first.err()
        assert first.proc.poll() is None, first.err()
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # and do not reap it: it stays a zombie
    try:
        before = len(read_log(log))
        second = start_flow(flow_env(home, log), tmp_path / "out2")
        try:
            code = second.wait(45)  # far less than a lease's expiry (60 s)
        except subprocess.TimeoutExpired:
            second.proc.kill()
            second.proc.wait()
            pytest.fail("the next run waited on the leases of a killed, unreaped run")
        assert code == 0, second.err()
        again = [label for label, pid in read_log(log)[before:] if pid == second.pid]
        assert "branch:4" in again
    finally:
        first.proc.wait()
