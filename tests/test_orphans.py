"""A run killed with SIGKILL takes its worker processes with it.

Real processes: ``etherealfabric run FLOW --backend B`` runs two nodes at once, one that
sleeps and one stuck in a long C call that holds the GIL (so a watchdog thread in its worker
cannot run). Once both nodes have written their pid, the test notes every descendant of the
run (workers, the forkserver, multiprocessing's resource tracker, Dask's worker processes),
SIGKILLs the run, and expects every one of them to be gone within a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

#: how long the processes have to exit once the run is dead (they take well under a second)
EXIT_WITHIN = 10.0
#: how long the run may take to start both nodes (a Dask cluster on a busy machine is slow)
START_WITHIN = 120.0

FLOW = """
import os
import time
from pathlib import Path

from etherealfabric import Workflow, node

OUT = Path(os.environ["EF_TEST_PIDS"])


def _started(name):
    (OUT / f"{name}.tmp").write_text(f"{os.getpid()}\\n")
    os.replace(OUT / f"{name}.tmp", OUT / f"{name}.pid")


@node
def nap(seconds):
    _started("nap")
    time.sleep(seconds)
    return seconds


@node
def hold(n):
    _started("hold")
    return sum(range(n))  # one C call: the GIL is never released


with Workflow("orphans") as wf:
    nap(600)
    hold(10**13)
"""
#: the same nodes with a time limit: on ``processes`` each attempt runs in a child of the worker
TIMED_FLOW = FLOW.replace("@node\n", "@node(timeout=3600)\n")


# -- /proc ----------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, start time)`` of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (so a reused pid is not mistaken)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    found: dict[int, int] = {}
    parents = {root}
    while parents:
        children = {pid for pid, (_, ppid, _) in table.items() if ppid in parents}
        children -= found.keys() | {root}
        found.update({pid: table[pid][2] for pid in children})
        parents = children
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in ("Z", "X", "x")


def _describe(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = "?"
    return f"{pid} {_stat(pid)} {cmdline[:200]}"


# -- the test -------------------------------------------------------------------------------------
def _write_flow(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orphans_flow.py"
    path.write_text(text)
    return path


def _start(flow: Path, backend: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(
        ETHEREALFABRIC_HOME=str(tmp_path / "home"),
        ETHEREALFABRIC_LOG_LEVEL="WARNING",
        EF_TEST_PIDS=str(pids),
        PYTHONDONTWRITEBYTECODE="1",
    )
    command = [sys.executable, "-m", "etherealfabric", "run", str(flow)]
    command += ["--backend", backend, "--max-workers", "2"]
    with (tmp_path / "run.err").open("wb") as err:
        proc = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err
        )
    return proc, pids


def _node_pids(pids: Path) -> dict[str, int] | None:
    files = {name: pids / f"{name}.pid" for name in ("nap", "hold")}
    if not all(f.exists() for f in files.values()):
        return None
    return {name: int(f.read_text()) for name, f in files.items()}


def _kill_all(processes: dict[int, int]) -> None:
    for pid, started in processes.items():
        if _alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("backend", "timed"), [("processes", False), ("processes", True), ("dask", False)]
)
def test_killing_the_run_kills_its_workers(
    backend: str, timed: bool, tmp_path: Path, record_property: Any
) -> None:
    """``timed``: the nodes have a time limit, so they run in a child of the pool worker."""
    if backend == "dask":
        pytest.importorskip("distributed")
    flow = _write_flow(tmp_path, TIMED_FLOW if timed else FLOW)
    proc, pids = _start(flow, backend, tmp_path)
    family: dict[int, int] = {}
    try:
        deadline = time.monotonic() + START_WITHIN
        while (nodes := _node_pids(pids)) is None:
            if proc.poll() is not None:
                err = (tmp_path / "run.err").read_text(errors="replace")
                pytest.fail(f"the run exited with {proc.returncode} early:\n{err}")
            assert time.monotonic() < deadline, "the nodes did not start"
            time.sleep(0.05)
        family = _descendants(proc.pid)
        assert set(nodes.values()) <= family.keys(), (nodes, family)

        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while (left := [p for p, s in family.items() if _alive(p, s)]) and (
            time.monotonic() - killed < EXIT_WITHIN
        ):
            time.sleep(0.02)
        record_property("exit_seconds", round(time.monotonic() - killed, 3))
        assert not left, (
            f"still running {EXIT_WITHIN:.0f} s after the run was killed:\n"
            + "\n".join(_describe(pid) for pid in left)
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_all(family)
        _kill_all(_descendants(proc.pid))


WATCHED_CHILD = """
import multiprocessing, os, sys, time
from etherealfabric.backends._base import lifeline, watch_run

def child(run, out):
    watch_run(run, False)  # no parent-death signal: the pipe alone, as on macOS
    with open(out + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(out + ".tmp", out)
    time.sleep(600)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    ctx.Process(target=child, args=(lifeline(), sys.argv[1])).start()
    time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_lifeline_alone_stops_a_worker(tmp_path: Path) -> None:
    """The watchdog pipe works without the Linux parent-death signal (macOS relies on it)."""
    script, out = tmp_path / "parent.py", tmp_path / "child.pid"
    script.write_text(WATCHED_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=tmp_path)
    family: dict[int, int] = {}
    try:
        deadline = time.monotonic() + START_WITHIN
        while not out.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        family = _descendants(proc.pid)
        child = int(out.read_text())
        assert child in family
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while (left := [p for p, s in family.items() if _alive(p, s)]) and (
            time.monotonic() - killed < EXIT_WITHIN
        ):
            time.sleep(0.02)
        assert not left, "\n".join(_describe(pid) for pid in left)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_all(family)
