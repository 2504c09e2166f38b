"""The Spark backend: the backend contract on a real local Spark, plus what is Spark's own.

One ``local[2]`` SparkSession (a real JVM; Java 17+ is on the machine) is started for the
module, only when a selected test needs it; the backend finds it as the process's active
session, as it finds a notebook's ``spark``. Its Python workers get this folder on their
``PYTHONPATH`` (``spark.executorEnv.PYTHONPATH``), as a real cluster has the project installed.
Tests that run a user's script in a fresh interpreter start their own session there, from
``ETHEREALFABRIC_EXECUTION_BACKEND=spark`` alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import etherealfabric
from etherealfabric import ConfigError, RunFailedError, Workflow, node
from etherealfabric.backends import backend_names, create_backend
from etherealfabric.backends._spark import SparkBackend, _local_cores
from etherealfabric.backends._spark_stop import SparkStop, StopServer, driver_address
from etherealfabric.testing import BackendContract
from etherealfabric.testing._backends import double, explode, node_runs, total

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
WORKERS = BackendContract.max_workers
SCRIPT_TIMEOUT = 300  # a fresh interpreter starts its own JVM: seconds on a busy machine


def _need_spark() -> None:
    if shutil.which("java") is None:
        if os.environ.get("CI"):
            pytest.fail("java is not installed; CI must have Java 17+ for the Spark backend")
        pytest.skip("java is not installed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pyspark is not installed; the test extra must install it")
        pytest.skip("pyspark is not installed")


def _python(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in a fresh interpreter; it must succeed."""
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=SCRIPT_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    _need_spark()
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(f"local[{WORKERS}]")
        .appName("etherealfabric-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.executorEnv.PYTHONPATH", os.pathsep.join([str(TESTS), *sys.path]))
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


class TestSpark(BackendContract):
    timeout = 120  # the first job of a session starts its Python workers

    @pytest.fixture
    def backend_name(self, spark: Any, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "spark")
        monkeypatch.setenv("ETHEREALFABRIC_MAX_WORKERS", str(WORKERS))
        return "spark"


# -- Spark's own ----------------------------------------------------------------------------------
def test_spark_is_registered_by_name() -> None:
    assert "spark" in backend_names()


def test_the_active_session_is_used_and_left_running(spark: Any) -> None:
    with create_backend("spark", max_workers=WORKERS) as backend:
        assert backend.submit(double, 4).result(timeout=120) == 8
        assert backend.session is spark
    assert spark.sparkContext._jsc is not None  # not stopped: it was not the backend's


def test_a_given_session_is_used(spark: Any) -> None:
    backend = SparkBackend(session=spark, max_workers=1)
    try:
        assert backend.submit(double, 5).result(timeout=120) == 10
    finally:
        backend.close()
    assert spark.sparkContext._jsc is not None


def test_a_node_error_is_the_nodes_own_exception(spark: Any) -> None:
    with create_backend("spark", max_workers=WORKERS) as backend:
        future = backend.submit(_raise_lookup, "col")
        with pytest.raises(LookupError, match="missing col"):
            future.result(timeout=120)


def _raise_lookup(name: str) -> None:
    raise LookupError(f"missing {name}")


@pytest.mark.parametrize(
    ("master", "cores"),
    [
        ("local[3]", 3),
        ("local[*]", os.cpu_count() or 1),
        ("local", os.cpu_count() or 1),
        ("spark://h:7077", None),
        (None, None),
    ],
)
def test_max_workers_follows_a_local_master(master: str | None, cores: int | None) -> None:
    assert _local_cores(master) == cores


def test_another_master_than_the_running_sessions_is_refused(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SPARK_MASTER", "local[1]")
    with (
        SparkBackend() as backend,
        pytest.raises(ConfigError, match=r"ETHEREALFABRIC_SPARK_MASTER.*already runs"),
    ):
        backend.submit(double, 1).result(timeout=120)
    assert spark.sparkContext._jsc is not None  # the running session was left alone


BAD_MASTER = """
from etherealfabric.backends._spark import SparkBackend
from etherealfabric.errors import ConfigError
from etherealfabric.testing._backends import double, explode, node_runs, total
with SparkBackend() as backend:
    try:
        backend.submit(double, 1).result(timeout=120)
    except ConfigError as exc:
        print("ConfigError:", exc)
"""


@pytest.mark.parametrize(
    ("master", "reason"),
    [
        ("nonsense://nowhere", "PySparkRuntimeError: [JAVA_GATEWAY_EXITED]"),
        # the Java exception's own message, not Py4J's "An error occurred while calling ..."
        ("local[abc]", "SparkException: Could not parse Master URL: 'local[abc]'"),
    ],
)
def test_a_bad_master_names_the_setting_and_the_reason(
    tmp_path: Path, master: str, reason: str
) -> None:
    _need_spark()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_SPARK_MASTER"] = master
    done = _python(["-c", BAD_MASTER], tmp_path, env)
    assert f"ConfigError: cannot start a Spark session on {master!r}" in done.stdout
    assert "ETHEREALFABRIC_SPARK_MASTER" in done.stdout
    assert reason in done.stdout
    assert "An error occurred while calling" not in done.stdout


def test_the_seed_example_runs_unchanged_on_spark(tmp_path: Path) -> None:
    """``python examples/seed_usage.py`` with the variable set, twice: the first run starts a
    JVM of its own, the second is all cached and starts none."""
    _need_spark()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(
        ETHEREALFABRIC_EXECUTION_BACKEND="spark",
        ETHEREALFABRIC_SPARK_MASTER="local[2]",
        ETHEREALFABRIC_HOME=str(tmp_path / "home"),
    )
    outputs = []
    for _ in range(2):
        done = _python([str(ROOT / "examples" / "seed_usage.py")], tmp_path, env)
        outputs.append(done)
    first, again = outputs
    assert "output_data = 40" in first.stdout and "executed 2, cached 0" in first.stdout
    assert "output_data = 40" in again.stdout and "executed 0, cached 2" in again.stdout
    assert "starting a Spark session" in first.stderr
    assert "starting a Spark session" not in again.stderr  # all cached: no JVM started


WHICH_PYTHON = """
import json, sys
from etherealfabric import Workflow, node

@node
def interpreter() -> dict:
    import sys
    return {"executable": sys.executable, "prefix": sys.prefix}

with Workflow("which-python") as wf:
    interpreter()
found = wf.execute(backend="spark")["interpreter"]["result"]
print(json.dumps({"driver": [sys.executable, sys.prefix], "worker": list(found.values())}))
"""


def test_a_session_started_for_a_local_master_runs_workers_with_the_drivers_python(
    tmp_path: Path,
) -> None:
    """PySpark starts its Python workers with ``python3`` from PATH unless PYSPARK_PYTHON
    says otherwise; a local session the backend starts uses this interpreter (and so its
    virtualenv) instead, as the process backend's workers do."""
    _need_spark()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ETHEREALFABRIC_") and k != "PYSPARK_PYTHON"
    }
    env.update(ETHEREALFABRIC_SPARK_MASTER="local[1]", ETHEREALFABRIC_HOME=str(tmp_path / "h"))
    done = _python(["-c", WHICH_PYTHON], tmp_path, env)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["worker"] == seen["driver"]


# -- nodes that drive Spark themselves ------------------------------------------------------------
@node(on_driver=True)
def spark_sum(n: int) -> int:
    spark = etherealfabric.context().spark
    return int(spark.range(n).selectExpr("sum(id) AS total").collect()[0]["total"])


@node
def spark_in_a_task(n: int) -> int:
    return int(etherealfabric.context().spark.range(n).count())


def test_an_on_driver_node_runs_a_spark_job_of_its_own_and_is_cached(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "spark")
    with Workflow("spark-native") as wf:
        spark_sum(1000)
    first = wf.execute(home=tmp_path / "home")
    assert first["spark_sum"]["result"] == sum(range(1000))
    rows = node_runs(tmp_path / "home", first.run_id)
    assert rows["spark_sum"]["pid"] == os.getpid()  # in the driver, not in a Spark task
    again = wf.execute(home=tmp_path / "home")
    assert (again.executed, again.cached) == (0, 1)


def test_context_spark_inside_a_spark_task_says_to_run_on_the_driver(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "spark")
    with Workflow("spark-in-task") as wf:
        spark_in_a_task(10)
    with pytest.raises(RunFailedError) as caught:
        wf.execute(home=tmp_path / "home")
    assert "on_driver=True" in caught.value.failures["spark_in_a_task"]


def test_the_distributed_nodes_example_runs_twice_on_spark(tmp_path: Path) -> None:
    """examples/distributed_nodes.py: Spark and dask.dataframe over one partitioned dataset."""
    _need_spark()
    script = tmp_path / "distributed_nodes.py"
    shutil.copy(ROOT / "examples" / "distributed_nodes.py", script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(
        ETHEREALFABRIC_EXECUTION_BACKEND="spark",
        ETHEREALFABRIC_SPARK_MASTER="local[2]",
        ETHEREALFABRIC_HOME=str(tmp_path / "home"),
    )
    outputs = []
    for _ in range(2):
        done = _python([str(script)], tmp_path, env)
        outputs.append(done.stdout)
    assert "sales per region: {'east':" in outputs[0]
    assert "executed 4, cached 0" in outputs[0]
    assert outputs[0].splitlines()[0] == outputs[1].splitlines()[0]  # the same totals
    assert "executed 0, cached 4" in outputs[1]
    assert len(list((tmp_path / "data" / "daily_sales").glob("*.parquet"))) == 30


# -- short nodes travel together --------------------------------------------------------------
def _last_job_id(spark: Any) -> int:
    """The id of a marker job run now: Spark numbers its jobs in order."""
    sc = spark.sparkContext
    group = f"marker-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "marker")
    try:
        sc.parallelize([0], 1).count()
        return max(sc.statusTracker().getJobIdsForGroup(group))
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)


def test_short_nodes_travel_together_in_a_few_spark_jobs(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the first nodes turn out short, the nodes queued at once share Spark tasks and
    jobs (one job per node cost 60 jobs here); each still gets its own result or error."""
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "spark")
    with Workflow("spark-short") as wf:
        for i in range(60):
            (explode if i % 9 == 4 else total)(list(range(i)))
    before = _last_job_id(spark)
    with pytest.raises(RunFailedError) as caught:
        wf.execute(keep_going=True, home=tmp_path / "home", max_workers=WORKERS)
    jobs = _last_job_id(spark) - before - 1
    assert jobs <= 30, jobs
    results = caught.value.results
    assert set(caught.value.failures) == {"explode", *(f"explode-{k}" for k in range(2, 8))}
    totals = ["total", *(f"total-{k}" for k in range(2, 54))]
    assert [results[name]["result"] for name in totals] == [
        sum(range(i)) for i in range(60) if i % 9 != 4
    ]


def die_once(marker: str) -> str:
    """Take the Python worker down the first time; return the second time."""
    if os.path.exists(marker):
        return "ran again"
    Path(marker).touch()
    os._exit(3)


def test_a_job_whose_python_worker_dies_sends_its_nodes_again_one_by_one(
    spark: Any, tmp_path: Path
) -> None:
    """A job of several nodes fails as a whole when a Python worker dies (``local[N]`` tries
    a task once): its nodes are sent again each alone, so the others succeed."""
    from concurrent.futures import Future

    import cloudpickle

    from etherealfabric.backends._spark import _Send

    with SparkBackend(max_workers=1) as backend:
        assert backend.submit(double, 0).result(timeout=120) == 0  # its I/O thread runs
        for _ in range(backend._pacing.recent):  # the recent tasks were short
            backend._pacing.observe(_ran(0.0005))
        marker = str(tmp_path / "died-once")
        tasks = [(double, 1), (die_once, marker), (double, 2)]
        sends = [_Send(f"t{i}", cloudpickle.dumps(t), Future()) for i, t in enumerate(tasks)]
        assert backend._pacing.sizes(3, 1) == [3]  # one group, one job
        backend._send(sends)
        assert [s.future.result(timeout=120) for s in sends] == [2, "ran again", 4]
    assert os.path.exists(marker)  # the job's worker did die


def _all_runs(home: Path, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The journal's rows of one run, every attempt, by node."""
    from etherealfabric.journal._journal import Journal

    with Journal(home / "journal.db") as journal:
        out: dict[str, list[dict[str, Any]]] = {}
        for row in journal.node_runs(run_id):
            out.setdefault(row["node"], []).append(row)
        return out


def test_a_node_whose_python_worker_is_killed_is_retried_under_its_policy(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the Python worker (the out-of-memory killer) on the first attempt only: the
    job fails as Spark's (``local[N]`` tries a task once), the node's future gets a
    WorkerDiedError and the run sends it again under its retry policy (``run/_lost.py``)."""
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "spark")
    marker = str(tmp_path / "killed-once")

    @node(retries=1)
    def killed_once() -> int:
        import signal

        if not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    with Workflow("spark-killed-once") as wf:
        killed_once()
    home = tmp_path / "home"
    results = wf.execute(home=home, max_workers=WORKERS)
    assert isinstance(results["killed_once"]["result"], int)
    assert os.path.exists(marker)  # it did kill its worker
    attempts = _all_runs(home, results.run_id)["killed_once"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    died, ran = attempts
    assert died["error"].startswith(
        "WorkerDiedError: node 'killed_once': its Spark task's Python worker died"
    )
    assert "Python worker exited unexpectedly (crashed)" in died["error"]
    assert ran["status"] == "succeeded"


def test_a_node_that_kills_its_python_worker_every_time_fails_once_its_retries_are_spent(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "spark")

    @node(retries=2)
    def doomed() -> None:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    @node
    def after_doomed(x: Any) -> Any:
        return x

    with Workflow("spark-doomed", keep_going=True) as wf:
        after_doomed(doomed())
    home = tmp_path / "home"
    results = wf.execute(home=home, max_workers=WORKERS, raise_on_error=False)
    assert results.statuses == {"doomed": "failed", "after_doomed": "upstream_failed"}
    error = results.errors["doomed"]
    assert error.startswith("WorkerDiedError: node 'doomed': its Spark task's Python worker died")
    assert "Python worker exited unexpectedly (crashed)" in error
    assert "Consider setting" not in error  # Spark's advice, not what happened
    attempts = _all_runs(home, results.run_id)["doomed"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all("Python worker exited unexpectedly" in a["error"] for a in attempts)


def _ran(seconds: float) -> Any:
    from etherealfabric.run._messages import Attempt, TaskResult

    result = TaskResult(node="n", key="k", ok=True)
    result.attempts = [Attempt(number=1, started_at=100.0, finished_at=100.0 + seconds)]
    return result


# -- fail-fast's stop signal, as the executors ask it (no JVM needed) -----------------------------
def test_the_stop_server_answers_waits_and_releases_a_waiting_task() -> None:
    server = StopServer(driver_address("local[2]"))
    stop = SparkStop()
    stop.address = server.address
    try:
        assert server.address[0] == "127.0.0.1"
        assert stop.is_set() is False
        started = time.monotonic()
        assert stop.wait(0.3) is False
        assert time.monotonic() - started >= 0.25
        # a task waiting out a long backoff is released as soon as the run stops
        threading.Timer(0.3, server.stopped.set).start()
        started = time.monotonic()
        assert stop.wait(30) is True
        assert time.monotonic() - started < 10
        assert stop.is_set() is True
        # a stranger's bytes get no answer and do not stop the server
        with socket.create_connection(server.address, timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(1) == b""
        assert stop.is_set() is True
    finally:
        server.close()


def test_a_task_that_cannot_reach_the_driver_sleeps_its_backoff_and_retries() -> None:
    server = StopServer("127.0.0.1")
    stop = SparkStop()
    stop.address = server.address
    server.close()  # (the port is closed now)
    assert stop.is_set() is False
    started = time.monotonic()
    assert stop.wait(0.3) is False
    assert time.monotonic() - started >= 0.25
    assert SparkStop().is_set() is False  # never served: no stop
