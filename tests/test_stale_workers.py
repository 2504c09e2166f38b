"""A worker that runs other code than the run keyed never stores a result (run/_codestamp.py).

Real parts: a private ``redis-server`` on a free loopback port, a Celery worker subprocess
(``python -m etherealfabric celery-worker``) that imports the workflow's ``helpers.py`` from its
``PYTHONPATH``, and runs of ``python -m etherealfabric run flow.py --json`` in fresh processes.
The worker imports ``helpers`` on the first run; ``helpers.py`` is then edited. The next run keys
the node by the new code, but the worker still holds the old module: it used to compute with
it and store the old result under the new key (every later run, on any backend, got it back
as a cache hit). Now the node fails naming the stale function and nothing is cached; once the
worker is restarted, the node runs with the new code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer, private_redis, stop_process

pytest.importorskip("celery")

TIMEOUT = 120  # generous: the machine is slow and busy
FLOW = """\
from etherealfabric import Workflow, node
import helpers


@node
def scaled(x: int) -> int:
    return x * helpers.factor()


with Workflow("stale") as wf:
    scaled(21)
"""
HELPERS = "def factor():\n    return {factor}\n"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis(tmp_path / "redis") as server:
        yield server


def _env(redis: RedisServer, folder: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    path = os.pathsep.join(p for p in (str(folder), base.get("PYTHONPATH", "")) if p)
    return {
        **base,
        "PYTHONPATH": path,  # the worker imports helpers.py by name
        "ETHEREALFABRIC_CELERY_BROKER_URL": redis.url(0),
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": redis.url(1),
        "ETHEREALFABRIC_HOME": str(folder / "home"),
        "ETHEREALFABRIC_EXECUTION_BACKEND": "celery",
        "ETHEREALFABRIC_MAX_WORKERS": "1",
        "C_FORCE_ROOT": "1",  # CI runs as root; Celery refuses pickle as root without it
    }


def _start_worker(env: dict[str, str], folder: Path, name: str) -> subprocess.Popen[bytes]:
    log = folder / f"worker-{name}.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "etherealfabric", "celery-worker", "--concurrency", "1"),
                *("--loglevel", "INFO", f"--hostname={name}@%h"),
            ],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + TIMEOUT
    while worker.poll() is None and time.monotonic() < deadline:
        if "ready." in log.read_text(errors="replace"):
            return worker
        time.sleep(0.1)
    stop_process(worker)
    pytest.fail(f"worker {name} did not start; its log:\n{log.read_text()[-3000:]}")


def _run(env: dict[str, str], folder: Path, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "--json"],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    out = done.stdout.strip()
    return done.returncode, (json.loads(out) if out else {}), done.stderr


def test_a_worker_with_an_edited_helper_fails_the_node_and_caches_nothing(
    redis: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "helpers.py").write_text(HELPERS.format(factor=2))
    env = _env(redis, tmp_path)
    worker = _start_worker(env, tmp_path, "first")
    try:
        code, summary, err = _run(env, tmp_path, "run", "flow.py")
        assert code == 0, err[-3000:]
        assert summary["executed"] == 1
        assert _value(env, tmp_path, summary["run_id"]) == 42

        (tmp_path / "helpers.py").write_text(HELPERS.format(factor=3))  # the worker holds 2
        code, summary, err = _run(env, tmp_path, "run", "flow.py")
        assert code == 1, err[-3000:]
        assert summary["status"] == "failed"
        assert "StaleCodeError" in err and "helpers.factor" in err, err[-3000:]
        assert "Restart the workers" in err
    finally:
        stop_process(worker, timeout=15)

    # nothing was cached under the new key: a restarted worker computes 63
    worker = _start_worker(env, tmp_path, "restarted")
    try:
        code, summary, err = _run(env, tmp_path, "run", "flow.py")
        assert code == 0, err[-3000:]
        assert (summary["executed"], summary["cached"]) == (1, 0)
        assert _value(env, tmp_path, summary["run_id"]) == 63
    finally:
        stop_process(worker, timeout=15)


def _value(env: dict[str, str], folder: Path, run_id: str) -> object:
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "cat", run_id, "scaled"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


OVERRIDDEN = """
import config
from etherealfabric import Workflow, node

config.THRESHOLD = 0.9  # set by the workflow file: a worker process never runs this line

@node
def keep(xs):
    return [x for x in xs if x > config.THRESHOLD]

with Workflow("override") as wf:
    keep([0.1, 0.6, 0.95])
"""


def test_a_module_value_the_driver_set_is_not_taken_for_the_workers_own(
    tmp_path: Path, ef: Any
) -> None:
    """The key read config.THRESHOLD = 0.9 (set by the workflow file) while a worker process,
    importing config afresh, computed with 0.5: [0.6, 0.95] was cached under the key and then
    served to every backend. The node fails saying so, and nothing is stored."""
    (tmp_path / "config.py").write_text("THRESHOLD = 0.5\n")
    (tmp_path / "flow.py").write_text(OVERRIDDEN)
    home = {"ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    done = ef(tmp_path, "run", "flow.py", "--backend", "processes", **home)
    assert done.returncode == 1
    assert "config.THRESHOLD in this worker process is not the value the run keyed" in done.stderr
    threads = ef(tmp_path, "run", "flow.py", "--json", **home)
    assert json.loads(threads.stdout)["executed"] == 1  # nothing was cached by the failure
    assert ef(tmp_path, "cat", "latest", "keep", **home).stdout.strip() == "[0.95]"
    (tmp_path / "config.py").write_text("THRESHOLD = 0.9\n")  # set in the module: the same
    (tmp_path / "flow.py").write_text(OVERRIDDEN.replace("config.THRESHOLD = 0.9", "pass"))
    again = ef(tmp_path, "run", "flow.py", "--backend", "processes", "--json", **home)
    assert again.returncode == 0, again.stderr
