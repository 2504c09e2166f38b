"""``kill -TERM`` of a CLI ``run`` or ``resume``: the run stops as on a Ctrl-C, exit 143.

SIGTERM (``kill PID``, a job scheduler or a container stopping) used to kill the driver
outright: exit -15, no summary, no resume hint, the running node's row left ``running`` until a
later command found the process gone. It now stops the run like Ctrl-C does: the running node
is ``cancelled``, what finished is committed, the run is recorded ``interrupted``, the
``resume`` line is printed, and the exit code is 143 (128 + SIGTERM). A process forked from
the driver (a node's own ``multiprocessing`` child) does not run the driver's handler: it dies
of the signal as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SLOW = """
import os, time
from etherealfabric import Workflow, node

@node
def step(i, prev=None):
    print(f"step {i}", flush=True)
    time.sleep(0.2 if i == 0 else float(os.environ.get("STEP_SECONDS", "120")))
    return i

with Workflow("slow") as wf:
    step(1, step(0))
"""

FORKS = """
import multiprocessing, time
from etherealfabric import Workflow, node

def _sleep():
    time.sleep(60)

@node
def fork_and_stop():
    child = multiprocessing.get_context("fork").Process(target=_sleep)
    child.start()
    time.sleep(0.5)
    child.terminate()  # SIGTERM: the child inherited the driver's handler
    child.join(30)
    return child.exitcode

with Workflow("forks") as wf:
    fork_and_stop()
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=tmp_path, env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _terminate_at_step_1(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Start the CLI, send SIGTERM once step 1 runs; its exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", *args], cwd=tmp_path, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the second node has started: the run is going
            if line.startswith("step 1"):
                break
        time.sleep(1.5)  # (a worker process passes what its node prints on every 0.25 s)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    return proc.returncode, err


def _show(tmp_path: Path, run_id: str) -> dict[str, Any]:
    return json.loads(_cli(tmp_path, "show", run_id, "--json").stdout)  # type: ignore[no-any-return]


def _last_run(tmp_path: Path) -> dict[str, Any]:
    return json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_sigterm_stops_a_run_like_ctrl_c_and_exits_143(tmp_path: Path, backend: str) -> None:
    (tmp_path / "flow.py").write_text(SLOW)
    code, err = _terminate_at_step_1(tmp_path, "run", "flow.py", "--backend", backend)
    assert code == 128 + signal.SIGTERM, err
    run = _last_run(tmp_path)
    assert run["status"] == "interrupted"
    assert f"resume: etherealfabric resume {run['id']}" in err
    assert "Traceback" not in err and "Aborted!" not in err
    statuses = {n["node"]: n["status"] for n in _show(tmp_path, run["id"])["nodes"]}
    assert statuses == {"step": "succeeded", "step-2": "cancelled"}  # committed, stopped
    logs = _cli(tmp_path, "logs", run["id"], "step-2")
    assert "attempt 1 (cancelled)" in logs.stdout, logs
    # what the stopped node printed is kept (a worker process passes it on as it goes)
    assert "step 1" in logs.stdout and "no output captured" not in logs.stdout, logs.stdout
    why = _cli(tmp_path, "explain", run["id"], "step-2").stdout  # (not "cancelled (Ctrl-C")
    assert "the run was stopped from outside (SIGTERM" in why and "Ctrl-C" not in why, why

    # resume: SIGTERM'd too, then finished; the node that completed comes from the cache
    code, err = _terminate_at_step_1(tmp_path, "resume", run["id"])
    assert code == 143, err
    again = _last_run(tmp_path)
    assert (again["status"], again["resumed_from"]) == ("interrupted", run["id"])
    done = _cli(tmp_path, "resume", again["id"], STEP_SECONDS="0")
    assert done.returncode == 0, done.stderr
    last = _last_run(tmp_path)
    assert (last["status"], last["executed"], last["cached"]) == ("succeeded", 1, 1)


@pytest.mark.parametrize(
    ("signum", "status", "code"),
    [(signal.SIGTERM, "interrupted", 143), (signal.SIGINT, "cancelled", 1)],
)
def test_a_stopped_run_still_prints_its_summary_on_stdout(
    tmp_path: Path, signum: int, status: str, code: int
) -> None:
    """``run --json`` of a run stopped by SIGTERM or Ctrl-C printed nothing on stdout (nor, when
    stdout was a pipe, the summary line): a script could not read the id to resume it."""
    (tmp_path / "flow.py").write_text(SLOW)
    for as_json in (True, False):
        args = ["run", "flow.py", *(["--json"] if as_json else [])]
        proc = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric", *args], cwd=tmp_path, env=_env(tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            seen = proc.stderr if as_json else proc.stdout  # (--json: what nodes print → stderr)
            assert seen is not None
            for line in seen:
                if line.startswith("step 1"):
                    break
            time.sleep(0.5)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=60)
        assert proc.returncode == code, err
        run = _last_run(tmp_path)
        assert run["status"] == status
        if as_json:
            summary = json.loads(out)
            assert (summary["run_id"], summary["status"]) == (run["id"], status)
            assert summary["nodes"] == {"step": "succeeded", "step-2": "cancelled"}
            assert (summary["executed"], summary["workflow"]) == (1, "slow")
        else:
            last = out.strip().splitlines()[-1]  # (step 0 ran in the first run: a hit now)
            assert last == f"run {run['id']} of 'slow' {status}: 0 executed, 1 cached, 0 failed"


STUCK = """
import threading, time
from concurrent.futures import ProcessPoolExecutor
from etherealfabric import Workflow, node

@node
def stuck():
    threading.Thread(target=time.sleep, args=(300,)).start()  # (not a daemon: exit waits)
    print("step 1", flush=True)
    with ProcessPoolExecutor(2) as ex:
        return sum(ex.map(time.sleep, [300, 300]) and [1])

with Workflow("stuck") as wf:
    stuck()
"""


def test_a_stopped_run_ends_what_its_node_left_running(tmp_path: Path) -> None:
    """A node waiting on its own process pool (threads backend) kept the stopped command alive
    until the pool's work ended (the interpreter joins the executor's thread at exit), and for
    good with a stuck worker: the pool's processes are now ended, and the exit is bounded."""
    (tmp_path / "flow.py").write_text(STUCK)
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"], cwd=tmp_path,
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("step 1"):
                break
        workers: list[int] = []
        for _ in range(100):  # the pool's two processes, children of the command
            found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
            workers = [int(p) for p in found.stdout.split()]
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, workers
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert took < 60, (took, err)  # (the pool sleeps 300 s, the thread too)
    assert "Traceback" not in err, err
    for pid in workers:  # the pool's workers are gone, not left to sleep on
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid):
                break
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), pid
    assert _last_run(tmp_path)["status"] == "interrupted"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].splitlines()[0]
    except (OSError, IndexError):
        return "gone"


def test_a_process_forked_from_the_driver_dies_of_sigterm(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FORKS)
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 0, done.stderr
    run_id = _last_run(tmp_path)["id"]
    out = _cli(tmp_path, "cat", run_id, "fork_and_stop")
    assert out.stdout.strip() == str(-signal.SIGTERM), out  # not 1: no Terminated raised there
    assert "Terminated" not in done.stderr and "Traceback" not in done.stderr


STARTS = """
import os, signal
from etherealfabric import Workflow, node

@node
def fork_and_look():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's first look: its SIGTERM action and whether it is held back
        default = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        os.write(write, f"{default} {held}".encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    parent_held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return f"{seen} {parent_held}"

with Workflow("starts") as wf:
    fork_and_look()
"""


@pytest.mark.parametrize("backend", ["threads", "local"])
def test_a_forked_child_starts_with_the_default_sigterm_action(
    tmp_path: Path, backend: str
) -> None:
    """Not the driver's handler, even for the first instructions it runs: a SIGTERM that
    reached a child still starting was lost (CPython clears the signals tripped before its
    fork hooks ran), and a node's ``Pool.terminate()`` then waited for that worker for good.
    The forking thread holds SIGTERM back only across the fork."""
    (tmp_path / "flow.py").write_text(STARTS)
    done = _cli(tmp_path, "run", "flow.py", "--backend", backend)
    assert done.returncode == 0, done.stderr
    out = _cli(tmp_path, "cat", _last_run(tmp_path)["id"], "fork_and_look")
    assert out.stdout.strip() == "'True False False'", out  # default, not held; parent not held
