"""Lost Celery workers never hang a run (issue 12, item 2), with real parts only.

Each test has its own ``redis-server`` on a free loopback port and real worker subprocesses
(``python -m etherealfabric.backends._celery worker``); the workflow runs in another
subprocess (``python -m etherealfabric run flow.py --json``) with a re-dispatch time of a few
seconds (``ETHEREALFABRIC_CELERY_REDISPATCH_SECONDS``). The node ``slow`` leaves one marker
file per start; its first start sleeps, so the test can kill its worker while it runs; later
starts return once the test creates the file ``release``.

- a worker's main process killed with SIGKILL mid-node (its pool process dies with it): the
  run re-dispatches the node, a worker started afterwards runs it, the run succeeds;
- the same, with the killed worker's unacknowledged message also redelivered (as the Redis
  transport does after its visibility timeout) to a worker that never heard of its revocation:
  both copies run and finish while the run goes on, only the first result counts;
- no worker at all: the run fails within a bounded time naming the broker and the node;
- the task of a run that ended (failed for want of a worker, or interrupted) waits in the
  queue: a worker started afterwards takes its message and skips it, the node never runs.

The journal must hold exactly one row per node, a succeeded one.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_server import RedisServer, private_redis, stop_process

pytest.importorskip("celery")

REDISPATCH_SECONDS = 3
TIMEOUT = 120  # generous: the machine is slow and busy; every wait is bounded by it
FLOW = """\
import os
import time
from pathlib import Path

from etherealfabric import Workflow, node, untracked

MARKS = Path({marks!r})


@node
def slow(x):
    with untracked(MARKS):  # the test's bookkeeping, not data: another execution changes it
        n = len(list(MARKS.glob("slow-*")))
        (MARKS / f"slow-{{n}}-{{os.getpid()}}").touch()
    if n == 0:
        time.sleep({first_sleep})
    deadline = time.monotonic() + 300
    while not (MARKS / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return x * 2


@node
def total(y):
    time.sleep({total_sleep})
    return y + 1


with Workflow("faults") as wf:
    total(slow(20))
"""


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis(tmp_path / "redis") as server:
        yield server


class Cluster:
    """The workers and the run of one test, all subprocesses, all stopped at the end."""

    def __init__(self, redis: RedisServer, folder: Path) -> None:
        self.redis = redis
        self.folder = folder
        self.marks = folder / "marks"
        self.marks.mkdir()
        self.home = folder / "home"
        self.processes: list[subprocess.Popen[bytes]] = []
        base = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        self.env = {
            **base,
            "ETHEREALFABRIC_CELERY_BROKER_URL": redis.url(0),
            "ETHEREALFABRIC_CELERY_RESULT_BACKEND": redis.url(1),
            "C_FORCE_ROOT": "1",  # CI runs as root; Celery refuses pickle as root without it
        }

    def start_worker(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"worker-{name}.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "etherealfabric.backends._celery", "worker"),
                    *("--concurrency", "1", "--loglevel", "INFO", f"--hostname={name}@%h"),
                    *options,
                ],
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(worker)
        deadline = time.monotonic() + TIMEOUT
        while worker.poll() is None and time.monotonic() < deadline:
            if "ready." in log.read_text(errors="replace"):
                return worker
            time.sleep(0.1)
        pytest.fail(f"worker {name} did not start; its log:\n{log.read_text()[-3000:]}")

    def start_run(self, *, first_sleep: float, total_sleep: float = 0) -> subprocess.Popen[bytes]:
        flow = self.folder / "flow.py"
        flow.write_text(
            FLOW.format(marks=str(self.marks), first_sleep=first_sleep, total_sleep=total_sleep)
        )
        env = {
            **self.env,
            "ETHEREALFABRIC_HOME": str(self.home),
            "ETHEREALFABRIC_EXECUTION_BACKEND": "celery",
            "ETHEREALFABRIC_MAX_WORKERS": "1",
            "ETHEREALFABRIC_CELERY_REDISPATCH_SECONDS": str(REDISPATCH_SECONDS),
        }
        with (
            (self.folder / "run.out").open("wb") as out,
            (self.folder / "run.err").open("wb") as err,
        ):
            run = subprocess.Popen(
                [sys.executable, "-m", "etherealfabric", "run", str(flow), "--json"],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.processes.append(run)
        return run

    def finish(self, run: subprocess.Popen[bytes]) -> tuple[int, dict, str]:
        """Wait for the run (bounded); its exit code, JSON summary and stderr."""
        try:
            code = run.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
            pytest.fail(f"the run hung for {TIMEOUT}s; its stderr:\n{self.err()[-3000:]}")
        out = (self.folder / "run.out").read_text().strip()
        return code, (json.loads(out) if out else {}), self.err()

    def err(self) -> str:
        return (self.folder / "run.err").read_text(errors="replace")

    def release(self) -> None:
        (self.marks / "release").touch()

    def starts(self) -> list[Path]:
        return sorted(self.marks.glob("slow-*"))

    def wait_for(self, what: str, condition: object) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if callable(condition) and condition():
                return
            time.sleep(0.1)
        pytest.fail(f"{what} did not happen within {TIMEOUT}s; run stderr:\n{self.err()[-3000:]}")

    def journal_rows(self, run_id: str) -> list[tuple[str, str]]:
        conn = sqlite3.connect(f"file:{self.home / 'journal.db'}?mode=ro", uri=True)
        try:
            return sorted(
                conn.execute("SELECT node, status FROM node_runs WHERE run_id = ?", (run_id,))
            )
        finally:
            conn.close()

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout=15)


@pytest.fixture
def cluster(redis: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(redis, tmp_path)
    try:
        yield made
    finally:
        made.stop()


def _kill_mid_node(cluster: Cluster, worker: subprocess.Popen[bytes]) -> None:
    cluster.wait_for("the first start of node 'slow'", lambda: len(cluster.starts()) == 1)
    os.kill(worker.pid, signal.SIGKILL)  # its pool process dies with it (PR_SET_PDEATHSIG)
    worker.wait(TIMEOUT)


def _assert_succeeded_once(cluster: Cluster, code: int, summary: dict, err: str) -> None:
    assert code == 0, err[-3000:]
    assert summary["status"] == "succeeded"
    assert cluster.journal_rows(summary["run_id"]) == [
        ("slow", "succeeded"),
        ("total", "succeeded"),
    ]
    from etherealfabric.cli._loader import load_workflow

    again = load_workflow(str(cluster.folder / "flow.py")).execute(
        home=str(cluster.home), backend="threads"
    )
    assert (again.executed, again.cached) == (0, 2)
    assert again["total"]["result"] == 41


def test_a_killed_worker_is_replaced_and_the_run_completes(cluster: Cluster) -> None:
    cluster.release()
    first = cluster.start_worker("first")
    run = cluster.start_run(first_sleep=600)
    _kill_mid_node(cluster, first)
    cluster.start_worker("second")
    code, summary, err = cluster.finish(run)
    _assert_succeeded_once(cluster, code, summary, err)
    assert len(cluster.starts()) == 2  # killed once, then run once more
    assert "sent it again" in err


def test_a_node_run_twice_after_redelivery_and_redispatch_counts_once(cluster: Cluster) -> None:
    from kombu import Connection

    first = cluster.start_worker("first")
    run = cluster.start_run(first_sleep=600, total_sleep=5)
    _kill_mid_node(cluster, first)
    cluster.start_worker("second")
    cluster.wait_for("the re-dispatch of node 'slow'", lambda: "sent it again" in cluster.err())
    cluster.wait_for("the re-dispatched copy", lambda: len(cluster.starts()) == 2)
    # "second" is busy with the new copy; a worker that never heard that the killed worker's
    # task was revoked (no mingle) receives its message again, as the Redis transport
    # redelivers an unacknowledged message once its visibility timeout has passed
    cluster.start_worker("third", "--without-mingle")
    with Connection(cluster.redis.url(0), transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(num=100)
    cluster.wait_for("the redelivered copy", lambda: len(cluster.starts()) == 3)
    cluster.release()  # both copies finish now; 'total' then runs for 5 s
    code, summary, err = cluster.finish(run)
    _assert_succeeded_once(cluster, code, summary, err)


def test_without_any_worker_the_run_fails_naming_broker_and_node(cluster: Cluster) -> None:
    started = time.monotonic()
    run = cluster.start_run(first_sleep=0)
    code, summary, _err = cluster.finish(run)
    elapsed = time.monotonic() - started
    assert code != 0
    message = summary["errors"]["slow"]
    assert "no Celery worker" in message
    assert cluster.redis.url(0) in message
    assert "node 'slow'" in message
    assert "\n" not in message.strip()
    assert elapsed < 60, f"took {elapsed:.0f}s"
    assert cluster.starts() == []


def _queued(cluster: Cluster) -> int:
    import redis as redis_client

    client = redis_client.Redis.from_url(cluster.redis.url(0))
    try:
        return int(client.llen("etherealfabric"))
    finally:
        client.close()


@pytest.mark.parametrize("end", ["failed", "interrupted"])
def test_the_queued_tasks_of_a_run_that_ended_never_run(cluster: Cluster, end: str) -> None:
    import redis as redis_client

    cluster.release()
    run = cluster.start_run(first_sleep=0)
    if end == "interrupted":  # Ctrl-C while the node's task waits for a worker
        cluster.wait_for("the node's task in the queue", lambda: _queued(cluster) == 1)
        run.send_signal(signal.SIGINT)
    code, summary, err = cluster.finish(run)
    assert code != 0, err[-3000:]
    if end == "failed":
        assert "no Celery worker" in summary["errors"]["slow"]
    assert _queued(cluster) == 1  # the message still waits for a worker
    late = cluster.start_worker("late")
    log = cluster.folder / "worker-late.log"
    cluster.wait_for(
        "the late worker taking the message",
        lambda: _queued(cluster) == 0 and ("skipped task" in log.read_text() or cluster.starts()),
    )
    time.sleep(2)  # had it run the node, its marker would be there by now
    assert cluster.starts() == [], log.read_text()[-3000:]
    stop_process(late, timeout=15)  # a warm shutdown: a message it held would be requeued
    assert _queued(cluster) == 0
    results = redis_client.Redis.from_url(cluster.redis.url(1))
    try:  # the skipped task recorded nothing (not even STARTED), and the run's key is gone
        assert results.keys("celery-task-meta-*") == []
        assert results.keys("etherealfabric-live-*") == []
    finally:
        results.close()
    # a run with a worker runs the node once
    cluster.start_worker("next")
    code, summary, err = cluster.finish(cluster.start_run(first_sleep=0))
    _assert_succeeded_once(cluster, code, summary, err)
    assert len(cluster.starts()) == 1
