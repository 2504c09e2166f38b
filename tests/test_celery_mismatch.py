"""A Celery worker whose result backend is not the driver's fails the run within seconds.

The worker ran the tasks and stored their results where the driver never looks: the run
waited forever (or re-dispatched its nodes as lost). Real parts only: each test has its own
``redis-server`` on a free loopback port and real worker subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etherealfabric.errors import ExecutionError
from redis_server import RedisServer, private_redis, stop_process

pytest.importorskip("celery")

TIMEOUT = 120  # a worker's start on a slow, busy machine: generous
FAIL_WITHIN = 50  # the run failed within seconds; it waited forever before
FLOW = """
import time

from etherealfabric import Workflow, node

@node
def load():
    time.sleep(0.5)
    return 1

with Workflow("mismatch") as wf:
    load()
"""


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for worker in started:
            stop_process(worker, timeout=15)


def _env(broker: str, results: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(
        ETHEREALFABRIC_CELERY_BROKER_URL=broker,
        ETHEREALFABRIC_CELERY_RESULT_BACKEND=results,
        C_FORCE_ROOT="1",  # CI runs as root; Celery refuses pickle as root without it
    )
    return env


def _start_worker(
    folder: Path, started: list[subprocess.Popen[bytes]], broker: str, results: str
) -> None:
    log = folder / f"worker-{len(started)}.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric.backends._celery", "worker", "-c", "1",
             f"--hostname=w{len(started)}@%h"],
            cwd=folder, env=_env(broker, results), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    started.append(worker)
    deadline = time.monotonic() + TIMEOUT
    while worker.poll() is None and time.monotonic() < deadline:
        if "ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    pytest.fail(f"the worker did not start; its log:\n{log.read_text()[-3000:]}")


def test_a_worker_with_another_result_backend_fails_the_run_naming_both(
    tmp_path: Path, redis: RedisServer, workers: list[subprocess.Popen[bytes]]
) -> None:
    _start_worker(tmp_path, workers, redis.url(0), redis.url(2))
    (tmp_path / "flow.py").write_text(FLOW)
    env = _env(redis.url(0), redis.url(1))
    env.update(ETHEREALFABRIC_EXECUTION_BACKEND="celery", ETHEREALFABRIC_MAX_WORKERS="1")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", "run", "flow.py"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=FAIL_WITHIN,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the run still waited after {FAIL_WITHIN}s: {exc.stderr!r}"[-3000:])
    assert done.returncode == 1, done.stderr[-3000:]
    expected = (
        "node 'load': the Celery worker w0@",  # (then the host name)
        f" stores results in {redis.url(2)} but this driver reads them from {redis.url(1)}: "
        "start the worker with the same ETHEREALFABRIC_CELERY_RESULT_BACKEND",
    )
    assert all(part in done.stderr for part in expected), done.stderr[-3000:]


def test_matching_result_backends_under_other_names_still_run(
    tmp_path: Path, redis: RedisServer, workers: list[subprocess.Popen[bytes]]
) -> None:
    """``localhost`` and ``127.0.0.1``: two URLs, one store (the worker sees the run's key)."""
    from etherealfabric.backends._celery import CeleryBackend

    alias = redis.url(1).replace("127.0.0.1", "localhost")
    _start_worker(tmp_path, workers, redis.url(0), alias)
    backend = CeleryBackend(max_workers=1, broker_url=redis.url(0), result_backend=redis.url(1))
    try:
        running = backend.submit(time.sleep, 3)
        while not backend._live.task_kwargs:  # the run's key is set before the first send
            assert not running.done(), running.exception()
            time.sleep(0.05)
        assert backend._check.check() == ""  # asked while it runs: the worker sees the key
        assert backend._check._checked == {next(iter(backend._check._checked))}  # (one: w0)
        assert running.result(timeout=TIMEOUT) is None
        assert backend._check.mismatch == ""
        assert backend.submit(len, "abc").result(timeout=TIMEOUT) == 3
    finally:
        backend.close()


def test_a_mismatched_worker_that_joins_later_fails_the_nodes(
    tmp_path: Path, redis: RedisServer, workers: list[subprocess.Popen[bytes]]
) -> None:
    from etherealfabric.backends._celery import CeleryBackend

    backend = CeleryBackend(max_workers=1, broker_url=redis.url(0), result_backend=redis.url(1))
    try:
        waiting = backend.submit(len, "abc")  # no worker yet: it waits in the queue
        time.sleep(1)
        assert not waiting.done()
        _start_worker(tmp_path, workers, redis.url(0), redis.url(3))
        with pytest.raises(ExecutionError, match="stores results in") as caught:
            waiting.result(timeout=FAIL_WITHIN)
        assert redis.url(3) in str(caught.value) and redis.url(1) in str(caught.value)
        with pytest.raises(ExecutionError, match="stores results in"):  # and later ones too
            backend.submit(len, "abc").result(timeout=FAIL_WITHIN)
    finally:
        backend.close()
