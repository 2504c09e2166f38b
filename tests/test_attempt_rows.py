"""A node's attempt history in the journal, seen through the command line in fresh processes,
with real signals (``run/_noderows.py``):

- while a retried node runs its next attempt, ``status`` and ``show`` name that attempt, and
  the failed one is a ``retrying`` row with its error, traceback and output; a run killed
  (SIGKILL), stopped (SIGTERM) or cancelled (Ctrl-C) then keeps it, and ``resume`` runs only
  what did not finish (threads and processes);
- a node whose ``on_error`` handler answers ``SKIP`` keeps its attempts as a fallback does;
- an attempt whose worker process is killed keeps what the worker passed on of its output.
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

SRC = Path(__file__).resolve().parent.parent / "src"
TIMEOUT = 120  # generous: a slow, busy machine


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return {**env, "PYTHONPATH": str(SRC), "ETHEREALFABRIC_HOME": str(tmp_path / "home")}


def ef(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def ef_json(tmp_path: Path, *args: str) -> Any:
    done = ef(tmp_path, *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", *args],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def wait_for(
    predicate: Any, proc: subprocess.Popen[str], what: str, seconds: float = TIMEOUT
) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[0]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rows_of(tmp_path: Path, node: str) -> list[dict[str, Any]]:
    return [n for n in ef_json(tmp_path, "show", "latest", node)["nodes"] if n["node"] == node]


# -- 1. a retried node: its failed attempt while the next runs, and after a stop -------------
RETRIED = """
import time
from pathlib import Path
from etherealfabric import Workflow, node, untracked

@node
def prepare():
    with untracked():
        with open("prepared.log", "a") as f:
            f.write("ran\\n")
    return 3

@node(retries=2)
def train(x):
    with untracked():
        f = Path("attempts.txt")
        n = int(f.read_text()) + 1 if f.exists() else 1
        f.write_text(str(n))
    print(f"attempt {n}", flush=True)
    if n == 1:
        raise RuntimeError("CUDA error: transient")
    with untracked():
        Path("second").touch()
        deadline = time.time() + 120
        while not Path("release").exists() and time.time() < deadline:
            time.sleep(0.05)
    return x + n

with Workflow("retried") as wf:
    train(prepare())
"""


def _second_attempt_running(tmp_path: Path) -> Any:
    state = ef_json(tmp_path, "status")
    running = [r for r in state["running"] if r["node"] == "train"]
    return running and running[0]["attempt"] == 2 and state


@pytest.mark.parametrize(
    ("backend", "stop"),
    [
        ("local", signal.SIGKILL),
        ("local", signal.SIGTERM),
        ("local", signal.SIGINT),
        ("processes", signal.SIGKILL),
    ],
)
def test_a_failed_attempt_is_journaled_while_the_next_runs_and_kept_by_a_stop(
    tmp_path: Path, backend: str, stop: signal.Signals
) -> None:
    (tmp_path / "flow.py").write_text(RETRIED)
    proc = start(tmp_path, "flow.py", "--backend", backend)
    try:
        wait_for((tmp_path / "second").exists, proc, "attempt 2 to start")
        # status names attempt 2 (the failed one's row is committed, not only the event)
        # (a group commit: within 10-50 ms; 30 s on a busy machine)
        wait_for(lambda: _second_attempt_running(tmp_path), proc, "status to say attempt 2", 30)
        first, second = rows_of(tmp_path, "train")
        assert (first["attempt"], first["status"]) == (1, "retrying")
        assert (second["attempt"], second["status"]) == (2, "running")
        assert first["error"] == "RuntimeError: CUDA error: transient"
        assert "CUDA error: transient" in first["traceback"] and first["output"] == "attempt 1\n"
        assert first["finished_at"] is not None and first["cache_key"] == second["cache_key"]
        shown = ef(tmp_path, "logs", "latest", "train")
        assert "attempt 1\n" in shown.stdout and "CUDA error: transient" in shown.stdout
        proc.send_signal(stop)
        proc.communicate(timeout=TIMEOUT)
    finally:
        (tmp_path / "release").touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
    ended = {signal.SIGKILL: "interrupted", signal.SIGTERM: "cancelled", signal.SIGINT: "cancelled"}
    first, second = rows_of(tmp_path, "train")
    assert (first["status"], second["status"]) == ("retrying", ended[stop])
    assert first["error"] == "RuntimeError: CUDA error: transient"
    assert "CUDA error: transient" in first["traceback"] and first["output"] == "attempt 1\n"
    shown = ef(tmp_path, "logs", "latest", "train")
    assert "== train attempt 1 (retrying) ==\nattempt 1\n" in shown.stdout
    assert "RuntimeError: CUDA error: transient" in shown.stdout
    assert f"== train attempt 2 ({ended[stop]}) ==" in shown.stdout

    stopped = ef_json(tmp_path, "status")["id"]
    resumed = ef(tmp_path, "resume", stopped, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["nodes"] == {"prepare": "cached", "train": "succeeded"}
    assert (tmp_path / "prepared.log").read_text() == "ran\n"  # committed work: never again


# -- 2. a node its on_error handler skips -----------------------------------------------------
SKIPPED = """
from etherealfabric import SKIP, Workflow, node

def skipper(err):
    return SKIP

@node(on_error=skipper, retries=1)
def skippy():
    print("working on it, step 1 done", flush=True)
    raise ValueError("skip me")

@node
def after(x):
    return x

with Workflow("sk") as wf:
    after(skippy())
"""


def test_a_node_its_handler_skips_keeps_its_attempts(tmp_path: Path) -> None:
    (tmp_path / "sk.py").write_text(SKIPPED)
    ran = ef_json(tmp_path, "run", "sk.py")
    assert ran["nodes"] == {"skippy": "skipped", "after": "skipped"}
    assert (ran["executed"], ran["failed"]) == (0, 0)  # counted skipped (docs/concepts.md)
    first, last = rows_of(tmp_path, "skippy")
    assert (first["status"], last["status"]) == ("retrying", "skipped")
    for row in (first, last):
        assert row["cache_key"] and row["duration"] is not None
        assert row["error"] == "ValueError: skip me" and "skip me" in row["traceback"]
        assert row["output"] == "working on it, step 1 done\n"
    assert first["cache_key"] == last["cache_key"] and last["components"]
    (after,) = rows_of(tmp_path, "after")  # its descendants: skipped, as before
    assert after["status"] == "skipped" and after["cache_key"] is None
    assert after["error"] == "skipped with upstream node 'skippy'"

    shown = ef(tmp_path, "logs", "latest", "skippy").stdout
    assert shown.count("working on it, step 1 done") == 2 and "no output captured" not in shown
    assert "== skippy attempt 2 (skipped) ==" in shown and "ValueError: skip me" in shown
    why = ef_json(tmp_path, "explain", "latest", "skippy")
    assert (why["verdict"], why["status"], why["key"]) == ("executed", "skipped", last["cache_key"])
    text = ef(tmp_path, "explain", "latest", "skippy").stdout
    assert "ran (skipped)" in text and "did not run" not in text
    assert "it failed, then its on_error handler skipped it" in text
    assert "error: ValueError: skip me" in text
    why = ef_json(tmp_path, "explain", "latest", "after")
    assert why["verdict"] == "not_run" and why["reason"] == "skipped"

    again = ef_json(tmp_path, "run", "sk.py")  # its handler's skip was no result: it runs again
    why = ef_json(tmp_path, "explain", again["run_id"], "skippy")
    assert why["reason"] == "previous_failed" and why["previous_run"] == ran["run_id"]
    assert "where it failed: ValueError: skip me" in why["detail"]


# -- 3. an attempt whose worker process is killed -----------------------------------------------
EPOCHS = """
import os
import time
from pathlib import Path
from etherealfabric import Workflow, node, untracked

@node(retries=RETRIES)
def train():
    with untracked():
        tried = Path("pid").exists()
        Path("pid").write_text(str(os.getpid()))
    if tried:
        return "second try"
    for i in range(1, 201):
        print(f"epoch {i}/200 done", flush=True)
        time.sleep(0.2)
    return "done"

with Workflow("oom") as wf:
    train()
"""


def _epochs_printed(proc_output: list[str], proc: subprocess.Popen[str]) -> bool:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc_output.append(line)
    return "epoch 3/200 done" in line


@pytest.mark.parametrize("retries", [0, 1])
def test_an_attempt_whose_worker_is_killed_keeps_what_it_printed(
    tmp_path: Path, retries: int
) -> None:
    (tmp_path / "flow.py").write_text(EPOCHS.replace("RETRIES", str(retries)))
    proc = start(tmp_path, "flow.py", "--backend", "processes")
    printed: list[str] = []
    try:
        wait_for(lambda: _epochs_printed(printed, proc), proc, "epoch 3 to be printed")
        worker = int((tmp_path / "pid").read_text())
        assert worker != proc.pid
        time.sleep(0.6)  # a batch or two more passed on (every 0.25 s)
        os.kill(worker, signal.SIGKILL)  # the worker only, as the OOM killer does
        rest, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == (0 if retries else 1), "".join(printed) + rest
    rows = rows_of(tmp_path, "train")
    killed = rows[0]
    assert killed["status"] == ("retrying" if retries else "failed")
    assert killed["error"].startswith("WorkerDiedError: its worker process (pid ")
    assert "epoch 1/200 done\nepoch 2/200 done\nepoch 3/200 done\n" in killed["output"]
    if retries:
        assert [r["status"] for r in rows] == ["retrying", "succeeded"]
    shown = ef(tmp_path, "logs", "latest", "train", "--attempt", "1").stdout
    assert "epoch 3/200 done" in shown and "no output captured" not in shown
    assert "WorkerDiedError" in shown
