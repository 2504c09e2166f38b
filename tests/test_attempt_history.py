"""What the journal keeps of attempts that did not succeed, on real runs: retried attempts of a
run that failed, a node stopped by Ctrl-C while it ran, the plan's reason after a failure, and
the stored outputs of an ``on_error`` fallback (``cat``, ``open_run``)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from etherealfabric import open_run
from etherealfabric.cli import main
from etherealfabric.journal._journal import HOST, Journal
from etherealfabric.states import RunStatus


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str, expect: int = 0) -> dict[str, Any]:
    code, out, err = invoke("run", *args, "--json")
    assert code == expect, err
    data: dict[str, Any] = json.loads(out)
    return data


def explain(run_id: str, node: str) -> tuple[dict[str, Any], str]:
    code, out, err = invoke("explain", run_id, node, "--json")
    assert code == 0, err
    code, text, err = invoke("explain", run_id, node)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data, text


def rows(home: Path, run_id: str, node: str) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "journal.db") as db:
        db.row_factory = sqlite3.Row
        found = db.execute(
            "SELECT * FROM node_runs WHERE run_id = ? AND node = ? ORDER BY attempt",
            (run_id, node),
        ).fetchall()
    return [dict(r) for r in found]


# -- 1. retried attempts of a run that failed ------------------------------------------------
RETRIES = """
from pathlib import Path
from etherealfabric import RetryPolicy, Workflow, node

COUNT = Path("flaky.count")

@node(retries=RetryPolicy(retries=2, backoff=0.01))
def always_fails():
    raise ConnectionError("s3 unavailable")

@node(retries=RetryPolicy(retries=2, backoff=0.01))
def flaky():
    tries = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(tries))
    if tries < 3:
        raise ConnectionError(f"timeout {tries}")
    return tries

with Workflow("retries") as workflow:
    always_fails()
    flaky()
"""


def test_retried_attempts_of_a_failed_run_stay_retrying(tmp_path: Path, home: Path) -> None:
    """The attempts that failed and were retried ended: the run failing later does not make
    them 'cancelled' (they were, in any run that did not succeed)."""
    path = tmp_path / "flow.py"
    path.write_text(RETRIES)
    ran = run_json(str(path), "--keep-going", expect=1)
    assert ran["nodes"] == {"always_fails": "failed", "flaky": "succeeded"}
    failing = rows(home, ran["run_id"], "always_fails")
    assert [r["status"] for r in failing] == ["retrying", "retrying", "failed"]
    assert all(r["finished_at"] is not None and r["cache_key"] for r in failing)
    assert [r["status"] for r in rows(home, ran["run_id"], "flaky")] == [
        "retrying", "retrying", "succeeded",
    ]  # fmt: skip
    code, out, err = invoke("logs", ran["run_id"], "always_fails")
    assert code == 0, err
    assert "attempt 1 (retrying)" in out and "attempt 3 (failed)" in out
    assert "cancelled" not in out


def test_a_run_that_ends_marks_only_attempts_that_had_not_ended(tmp_path: Path) -> None:
    """finish_run (Ctrl-C, failure) and mark_interrupted (a dead process) settle the rows of
    attempts still running, never those of attempts that ended and were retried."""
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    now = time.time()
    with Journal(tmp_path / "journal.db") as journal:
        journal.start_run("stopped", workflow="w", backend="local", nodes=2)
        with journal.write() as conn:
            conn.execute(
                "INSERT INTO runs (id, workflow, status, started_at, host, pid) "
                "VALUES ('dead', 'w', 'running', ?, ?, ?)",
                (now, HOST, int(dead_pid)),
            )
            for run_id in ("stopped", "dead"):
                conn.executemany(
                    "INSERT INTO node_runs (run_id, node, attempt, status, cache_key, "
                    "started_at, finished_at) VALUES (?, ?, ?, ?, 'k', ?, ?)",
                    [(run_id, "a", 1, "retrying", now - 2, now - 1),
                     (run_id, "b", 1, "running", now - 1, None)],
                )  # fmt: skip
        journal.finish_run("stopped", status=RunStatus.CANCELLED, counts={})
        assert journal.mark_interrupted() == ["dead"]
        stopped = {r["node"]: r for r in journal.node_runs("stopped")}
        dead = {r["node"]: r["status"] for r in journal.node_runs("dead")}
    assert stopped["a"]["status"] == "retrying" and dead["a"] == "retrying"
    assert stopped["b"]["status"] == "cancelled" and dead["b"] == "interrupted"
    # the attempt stopped running keeps its key and start, and gets an end
    assert stopped["b"]["cache_key"] == "k" and stopped["b"]["started_at"] == now - 1
    assert stopped["b"]["finished_at"] is not None and stopped["b"]["duration"] >= 0


# -- 2. the plan's reason after a failure ------------------------------------------------------
DOWN = """
from etherealfabric import Workflow, node

@node
def fetch():
    raise ConnectionError("the source is down")

with Workflow("down") as workflow:
    fetch()
"""


def test_plan_after_a_failure_says_it_failed(tmp_path: Path) -> None:
    path = tmp_path / "down.py"
    path.write_text(DOWN)
    failed = run_json(str(path), expect=1)
    code, out, err = invoke("plan", str(path), "--json")
    assert code == 0, err
    (planned,) = json.loads(out)["nodes"]
    assert planned["reason"] == (
        f"same key as run {failed['run_id']}, where it failed: ConnectionError: the source is down"
    )


def test_explain_after_a_cached_run_whose_result_was_lost_says_so(
    tmp_path: Path, home: Path
) -> None:
    """The previous keyed attempt was a cache hit: its result was stored, then lost (it did
    not 'not finish')."""
    path = tmp_path / "flow.py"
    path.write_text(
        "from etherealfabric import Workflow, node\n\n@node\ndef numbers():\n"
        "    return list(range(20000))\n\nwith Workflow('lost') as workflow:\n    numbers()\n"
    )
    run_json(str(path))
    cached = run_json(str(path))
    assert cached["nodes"]["numbers"] == "cached"
    for obj in (home / "objects").glob("??/*"):
        obj.unlink()
    code, out, err = invoke("plan", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["nodes"][0]["reason"] == (
        f"same key as run {cached['run_id']}, but its cached result is gone"
    )
    again = run_json(str(path))
    found, _ = explain(again["run_id"], "numbers")
    assert found["reason"] == "same_key" and found["previous_run"] == cached["run_id"]
    assert "missing or corrupt" in found["detail"]


# -- 5. Ctrl-C while a node runs -------------------------------------------------------------
STOPPED = """
import time
from pathlib import Path
from etherealfabric import Workflow, node

@node
def train():
    Path("started").touch()
    deadline = time.time() + 120
    while not Path("release").exists() and time.time() < deadline:
        time.sleep(0.05)
    return 1

@node
def evaluate(model):
    return model + 1

with Workflow("stopped") as workflow:
    evaluate(train())
"""


def wait_for(predicate: Any, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None or what == "exit", proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_node_stopped_by_ctrl_c_keeps_its_start_and_key(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(STOPPED)
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", str(path), "-q"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for((tmp_path / "started").exists, proc, "train to start")
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: proc.poll() is not None, proc, "exit")
    finally:
        (tmp_path / "release").touch()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    with Journal(home / "journal.db", read_only=True) as journal:
        (run,) = journal.list_runs()
    assert run["status"] == "cancelled"
    (train,) = rows(home, run["id"], "train")
    assert train["status"] == "cancelled"
    assert train["cache_key"] and train["started_at"] is not None
    assert train["finished_at"] is not None and train["duration"] >= 0
    (evaluate,) = rows(home, run["id"], "evaluate")  # never started: no key, no start
    assert evaluate["status"] == "cancelled" and evaluate["started_at"] is None
    assert evaluate["cache_key"] is None

    found, text = explain(run["id"], "train")
    assert found["verdict"] == "executed" and found["status"] == "cancelled"
    assert "stopped while it ran" in text and "before it started" not in text
    found, text = explain(run["id"], "evaluate")
    assert found["verdict"] == "not_run" and "before it started" in text

    resumed = run_json(str(path))
    assert resumed["nodes"]["train"] == "succeeded"
    found, text = explain(resumed["run_id"], "train")
    assert found["reason"] == "previous_failed" and found["previous_run"] == run["id"]
    assert "did not finish (cancelled)" in found["detail"]


# -- 8. the outputs of an on_error fallback --------------------------------------------------
FALLBACK = """
from etherealfabric import Workflow, node

def fallback(err):
    return {"result": {"model": "baseline", "why": err.error, "weights": list(range(SIZE))}}

@node(on_error=fallback)
def train():
    raise MemoryError("CUDA out of memory")

@node
def evaluate(m):
    return m["model"]

with Workflow("fallback") as workflow:
    evaluate(train())
"""


def test_cat_and_open_run_give_a_fallback_s_stored_outputs(tmp_path: Path) -> None:
    for size in (3, 20000):  # an inline value, and one stored as an object
        path = tmp_path / f"flow{size}.py"
        path.write_text(f"SIZE = {size}\n{FALLBACK}")
        ran = run_json(str(path))
        assert ran["nodes"]["train"] == "fallback"
        expected = {
            "model": "baseline",
            "why": "MemoryError: CUDA out of memory",
            "weights": list(range(size)),
        }
        code, out, err = invoke("cat", ran["run_id"], "train", "--json")
        assert code == 0, err
        assert json.loads(out) == expected
        results = open_run(ran["run_id"])
        assert results.statuses["train"] == "fallback"
        assert results["train"]["result"] == expected
        assert results["evaluate"]["result"] == "baseline"


def test_cache_gc_keeps_the_fallback_outputs_of_kept_runs_only(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(f"SIZE = 20000\n{FALLBACK}")  # its weights: a stored object
    first = run_json(str(path))
    code, out, err = invoke("cache", "gc", "--older-than", "0")
    assert code == 0, err
    code, out, err = invoke("cat", first["run_id"], "train", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "baseline"
    objects = set((home / "objects").glob("??/*"))
    second = run_json(str(path))  # the same fallback outputs: the same stored bytes
    path.write_text(f"SIZE = 3\n{FALLBACK}")  # another workflow run, keeping only 1 run
    run_json(str(path))
    code, out, err = invoke("cache", "gc", "--older-than", "0", "--keep-runs", "1")
    assert code == 0, err
    assert not any(o.exists() for o in objects), "the fallback of runs no longer kept stays"
    code, out, err = invoke("cat", second["run_id"], "train")
    assert code == 2 and "no longer in the store" in err
