"""Celery URLs Celery cannot use are refused before anything runs, naming the setting; a poller
thread that dies fails the nodes waiting on it instead of leaving the run waiting forever."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from etherealfabric import Workflow, node
from etherealfabric.backends import create_backend
from etherealfabric.backends._celery import CeleryBackend
from etherealfabric.backends._celery_app import main as celery_main
from etherealfabric.errors import ConfigError, ExecutionError, RunFailedError
from redis_server import redis_server_path, silent_listener, start_redis

pytest.importorskip("celery")

NOBODY = "redis://127.0.0.1:1/0"  # a valid URL where nothing listens
FLOW = """
from etherealfabric import Workflow, node

@node
def load():
    return 1

with Workflow("garbage") as wf:
    load()
"""


def _run_cli(tmp_path: Path, broker: str, backend: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(
        ETHEREALFABRIC_EXECUTION_BACKEND="celery",
        ETHEREALFABRIC_CELERY_BROKER_URL=broker,
        ETHEREALFABRIC_CELERY_RESULT_BACKEND=backend,
    )
    return subprocess.run(  # it hung forever with a bad result backend: bounded here
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.parametrize(
    ("broker", "backend", "variable"),
    [
        (NOBODY, "garbage", "ETHEREALFABRIC_CELERY_RESULT_BACKEND"),
        ("garbage", NOBODY, "ETHEREALFABRIC_CELERY_BROKER_URL"),
        ("nosuchtransport://host/0", NOBODY, "ETHEREALFABRIC_CELERY_BROKER_URL"),
    ],
)
def test_a_bad_celery_url_is_exit_2_naming_the_variable_before_anything_runs(
    tmp_path: Path, broker: str, backend: str, variable: str
) -> None:
    done = _run_cli(tmp_path, broker, backend)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert variable in lines[0] and "redis://localhost:6379/0" in lines[0]
    journal = tmp_path / ".etherealfabric" / "journal.db"
    if journal.exists():  # no run was recorded (none left to be marked interrupted)
        with sqlite3.connect(journal) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)


def test_the_backend_and_the_worker_entry_point_check_the_urls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError, match="ETHEREALFABRIC_CELERY_RESULT_BACKEND") as caught:
        create_backend("celery", broker_url=NOBODY, result_backend="garbage")
    assert caught.value.setting == "ETHEREALFABRIC_CELERY_RESULT_BACKEND"
    assert celery_main(["worker", "--broker-url", "garbage", "--result-backend", NOBODY]) == 2
    assert "ETHEREALFABRIC_CELERY_BROKER_URL" in capsys.readouterr().err


def test_a_dead_poller_fails_the_nodes_instead_of_waiting_forever(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a result backend Celery knows by name but cannot build (checked when it is built, in
    # the poller thread): the poller dies before it sends anything
    bad = "rediss://127.0.0.1:1/0?ssl_cert_reqs=bogus"
    monkeypatch.setenv("ETHEREALFABRIC_CELERY_BROKER_URL", NOBODY)
    monkeypatch.setenv("ETHEREALFABRIC_CELERY_RESULT_BACKEND", bad)

    @node
    def load():
        return 1

    with Workflow("dead-poller") as wf:
        load()
    ended: list[BaseException] = []

    def run() -> None:
        try:
            wf.execute(backend="celery", max_workers=1)
        except BaseException as exc:
            ended.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(120)
    assert ended, "the run still waits for its nodes"  # it waited forever
    assert isinstance(ended[0], RunFailedError), ended[0]
    message = ended[0].failures["load"]
    assert "node 'load'" in message and "poller" in message and "ssl_cert_reqs" in message

    backend = CeleryBackend(max_workers=1)
    try:
        first = backend.submit(len, "abc")
        with pytest.raises(ExecutionError, match="poller"):
            first.result(timeout=60)
        later = backend.submit(len, "abc")  # submitted once the poller is dead: fails too
        with pytest.raises(ExecutionError, match="poller"):
            later.result(timeout=60)
    finally:
        backend.close()


def test_a_fully_cached_run_never_contacts_the_broker(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @node
    def one():
        return 1

    with Workflow("cached-celery") as wf:
        one()
    assert wf.execute().executed == 1
    monkeypatch.setenv("ETHEREALFABRIC_CELERY_BROKER_URL", NOBODY)  # checked, never contacted
    monkeypatch.setenv("ETHEREALFABRIC_CELERY_RESULT_BACKEND", NOBODY)
    again = wf.execute(backend="celery")
    assert (again.executed, again.cached) == (0, 1)


SEED = """
from etherealfabric import Node, Workflow


class MyNode(Node):
    def __init__(self, input_data):
        super().__init__()
        self.input_data = input_data
        self.outputs = ["output_data"]

    def run(self):
        return {"output_data": self.input_data * 2}


node1 = MyNode(input_data=10)
node2 = MyNode(input_data=node1.outputs["output_data"])
workflow = Workflow()
workflow.add_node(node1)
workflow.add_node(node2)
workflow.add_dependency(node1, node2)
results = workflow.execute()
"""


def _run_down(tmp_path: Path, broker: str, backend: str, *command: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(
        ETHEREALFABRIC_EXECUTION_BACKEND="celery",
        ETHEREALFABRIC_CELERY_BROKER_URL=broker,
        ETHEREALFABRIC_CELERY_RESULT_BACKEND=backend,
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode in (1, 2), done.stderr[-3000:]
    return done.stderr, time.monotonic() - started


@pytest.mark.parametrize("how", ["script", "cli"])
def test_a_broker_that_is_down_fails_the_run_at_once_naming_the_variable(
    tmp_path: Path, how: str
) -> None:
    # Celery retried for ~20 s, then failed the first node with "Retry limit exceeded while
    # trying to reconnect to the Celery result store backend" (the script: one node sent) or
    # the run with "cannot reach the Celery broker ..." (several nodes), naming no variable
    (tmp_path / "flow.py").write_text(SEED)
    command = ("flow.py",) if how == "script" else ("-m", "etherealfabric", "run", "flow.py")
    err, seconds = _run_down(tmp_path, NOBODY, NOBODY.replace("/0", "/1"), *command)
    assert "cannot reach the Celery broker redis://127.0.0.1:1/0" in err, err[-3000:]
    assert "(ETHEREALFABRIC_CELERY_BROKER_URL)" in err
    assert "Retry limit exceeded" not in err
    assert seconds < 15, seconds  # a refused connection is known at once (it took 20 s)


def test_a_result_backend_that_is_down_is_named(tmp_path: Path) -> None:
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed")
    server = start_redis(tmp_path / "redis")
    try:
        (tmp_path / "flow.py").write_text(FLOW)
        err, _ = _run_down(
            tmp_path, server.url(0), NOBODY, "-m", "etherealfabric", "run", "flow.py"
        )
    finally:
        server.stop()
    assert "cannot reach the Celery result backend redis://127.0.0.1:1/0" in err, err[-3000:]
    assert "(ETHEREALFABRIC_CELERY_RESULT_BACKEND)" in err
    assert "Retry limit exceeded" not in err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("silent", ["broker", "result backend", "rediss broker"])
def test_a_server_that_accepts_but_never_answers_is_named_in_bounded_time(
    tmp_path: Path, silent: str
) -> None:
    """A port that accepts the connection and never answers (another service's, a hung Redis,
    ``rediss://`` against a plain Redis): the poller waited forever inside redis-py (a PING
    read, a TLS handshake) and the run with it, deaf to Ctrl-C and SIGTERM."""
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed")
    server = start_redis(tmp_path / "redis")
    try:
        with silent_listener() as port:
            quiet = f"redis://127.0.0.1:{port}/0"
            broker, backend, named, variable = {
                "broker": (quiet, server.url(1), quiet, "BROKER_URL"),
                "result backend": (server.url(0), quiet, quiet, "RESULT_BACKEND"),
                "rediss broker": (
                    server.url(0).replace("redis://", "rediss://") + "?ssl_cert_reqs=none",
                    server.url(1),
                    server.url(0).replace("redis://", "rediss://"),
                    "BROKER_URL",
                ),
            }[silent]
            (tmp_path / "flow.py").write_text(FLOW)
            err, seconds = _run_down(
                tmp_path, broker, backend, "-m", "etherealfabric", "run", "flow.py"
            )
    finally:
        server.stop()
    what = "broker" if variable == "BROKER_URL" else "result backend"
    assert f"cannot reach the Celery {what} {named}" in err, err[-3000:]
    assert f"(ETHEREALFABRIC_CELERY_{variable})" in err
    assert seconds < 40, seconds  # ~5-10 s and Python's start; it never ended


def test_close_leaves_a_stuck_poller_behind_when_cancelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poller stuck in a call that never returns: close(cancel=True) (Ctrl-C, SIGTERM)
    waited for it forever."""
    import etherealfabric.backends._celery as celery_backend

    monkeypatch.setattr(celery_backend, "CANCEL_WAIT_SECONDS", 0.5)
    release = threading.Event()
    backend = CeleryBackend(broker_url=NOBODY, result_backend=NOBODY.replace("/0", "/1"))
    monkeypatch.setattr(backend, "_poll_rounds", lambda: release.wait(60))
    try:
        backend.submit(int, 1)
        started = time.monotonic()
        backend.close(cancel=True)
        assert time.monotonic() - started < 10
    finally:
        release.set()
