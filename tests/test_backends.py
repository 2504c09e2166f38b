"""The backend contract (``etherealfabric.testing.BackendContract``) for every backend of the
package, local threads, processes, Dask and Celery, plus what is specific to each.

Each ``Test<Backend>`` class subclasses the contract with a ``backend_name`` fixture that
points the environment at the backend (``ETHEREALFABRIC_EXECUTION_BACKEND`` and its
settings), so tests create backends the way a user does: ``create_backend(name)`` or
``workflow.execute()``. Real clusters, started once per module and only when a selected test
needs them: a Dask ``LocalCluster`` of two worker processes, and a private ``redis-server``
with one Celery worker (``python -m etherealfabric.backends._celery worker --concurrency 2``).

Pickling, and so what the workers must import: the plain task functions (``double``,
``refuse``... here and in ``etherealfabric.testing``) are pickled by reference, so workers
import their module: the Celery worker runs with this folder on its ``PYTHONPATH`` (as a real
worker has the project's code installed), and Dask's spawned workers inherit this process's
``sys.path``. ``@node`` functions travel by value (their module attribute is the node wrapper,
so cloudpickle cannot find the raw function by name), as do nodes defined inside a test and
those of a workflow file loaded by :func:`load_workflow`
(``test_workflow_file_nodes_travel_by_value``). A class node from a module the workers cannot
import fails with a message that says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import ConfigError, RunFailedError, Workflow, node, root_path
from etherealfabric.backends import backend_names, create_backend
from etherealfabric.backends._celery import main as celery_main
from etherealfabric.backends._celery import make_app
from etherealfabric.backends._dask import DaskBackend
from etherealfabric.cli._loader import load_workflow
from etherealfabric.testing import BackendContract
from etherealfabric.testing._backends import double, numbers, pipeline
from etherealfabric.testing._backends import node_runs as rows
from redis_server import RedisServer, private_redis, silent_listener, stop_process

IMPLEMENTATIONS = ["threads", "processes", "dask", "celery"]
WORKERS = BackendContract.max_workers
TESTS = Path(__file__).resolve().parent
TIMEOUT = 60


# -- nodes and task functions the workers import from this module --------------------------------
@node
def crash(xs):
    os._exit(3)


def nap_then_touch(args: tuple[float, str]) -> None:
    seconds, path = args
    time.sleep(seconds)
    Path(path).touch()


# -- clusters, started once per module ----------------------------------------------------------
@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with private_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def celery_worker(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One worker process with two pool processes; yields the settings that reach it."""
    pytest.importorskip("celery")
    settings = {
        "ETHEREALFABRIC_CELERY_BROKER_URL": redis.url(0),
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": redis.url(1),
    }
    folder = tmp_path_factory.mktemp("celery-worker")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["C_FORCE_ROOT"] = "1"  # CI runs as root; Celery refuses pickle messages as root without it
    log = folder / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "etherealfabric.backends._celery", "worker"),
                *("--concurrency", str(WORKERS), "--loglevel", "INFO"),
            ],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_worker(worker, settings, log)
        yield settings
    finally:
        stop_process(worker, timeout=15)


def _wait_for_worker(worker: subprocess.Popen, settings: dict, log: Path) -> None:
    app = make_app(
        settings["ETHEREALFABRIC_CELERY_BROKER_URL"],
        settings["ETHEREALFABRIC_CELERY_RESULT_BACKEND"],
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while worker.poll() is None and time.monotonic() < deadline:
            if app.control.ping(timeout=0.5):
                return
        pytest.fail(f"the Celery worker did not start; its log:\n{log.read_text()[-3000:]}")
    finally:
        app.close()


def point_at(name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the environment at the backend ``name`` (starting its cluster); return the name."""
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", name)
    monkeypatch.setenv("ETHEREALFABRIC_MAX_WORKERS", str(WORKERS))
    if name == "dask":
        cluster = request.getfixturevalue("dask_cluster")
        monkeypatch.setenv("ETHEREALFABRIC_DASK_ADDRESS", cluster.scheduler_address)
    elif name == "celery":
        for var, value in request.getfixturevalue("celery_worker").items():
            monkeypatch.setenv(var, value)
    return name


@pytest.fixture
def backend_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend ``request.param``, for the tests below that are not the contract."""
    return point_at(request.param, request, monkeypatch)


# -- the contract, for every backend ------------------------------------------------------------
class TestThreads(BackendContract):
    in_process = True

    @pytest.fixture
    def backend_name(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        return point_at("threads", request, monkeypatch)


class TestProcesses(BackendContract):
    @pytest.fixture
    def backend_name(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        return point_at("processes", request, monkeypatch)


class TestDask(BackendContract):
    @pytest.fixture
    def backend_name(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        return point_at("dask", request, monkeypatch)


class TestCelery(BackendContract):
    @pytest.fixture
    def backend_name(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        return point_at("celery", request, monkeypatch)


# -- more for every backend: a workflow file's nodes ---------------------------------------------
@pytest.mark.parametrize("backend_name", IMPLEMENTATIONS, indirect=True)
def test_workflow_file_nodes_travel_by_value(backend_name: str, tmp_path: Path) -> None:
    source = tmp_path / "flows" / "byvalue_flow.py"
    source.parent.mkdir()
    source.write_text(
        "from etherealfabric import Workflow, node\n\n"
        "OFFSET = 100\n\n"
        "@node\n"
        "def shifted(x):\n"
        "    return x + OFFSET\n\n"
        "with Workflow('byvalue') as wf:\n"
        "    shifted(1)\n"
    )
    try:
        results = load_workflow(str(source)).execute()
        assert results["shifted"]["result"] == 101
    finally:
        sys.path[:] = [p for p in sys.path if p != str(source.parent)]
        sys.modules.pop(next(m for m in sys.modules if m.endswith("byvalue_flow")), None)


# -- the registry and import lightness -----------------------------------------------------------
def test_dask_and_celery_are_registered_by_name() -> None:
    assert {"local", "threads", "processes", "dask", "celery"} <= set(backend_names())


def test_importing_etherealfabric_loads_no_dask_or_celery() -> None:
    code = (
        "import sys, etherealfabric, etherealfabric.backends, etherealfabric.run._session\n"
        "heavy = ('dask', 'distributed', 'celery', 'kombu', 'redis')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- Dask ------------------------------------------------------------------------------------------
def test_dask_connects_to_a_running_cluster_by_address(dask_cluster: Any) -> None:
    with DaskBackend(address=dask_cluster.scheduler_address) as backend:
        assert backend.max_workers == WORKERS  # the cluster's worker threads
        assert backend.submit(double, 5).result(timeout=TIMEOUT) == 10
    assert dask_cluster.scheduler_address  # the cluster outlives the backend
    with DaskBackend(address=dask_cluster.scheduler_address, max_workers=1) as backend:
        assert backend.max_workers == 1


def test_dask_uses_a_given_client_and_leaves_it_open(dask_cluster: Any) -> None:
    import distributed

    with distributed.Client(dask_cluster) as client:
        with DaskBackend(client=client) as backend:
            assert backend.submit(double, 4).result(timeout=TIMEOUT) == 8
        assert client.status == "running"


def test_dask_from_the_environment_starts_its_own_cluster_once_needed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "dask")
    monkeypatch.setenv("ETHEREALFABRIC_MAX_WORKERS", str(WORKERS))
    caplog.set_level("INFO", logger="etherealfabric.backends.dask")
    first = pipeline().execute()
    assert (first.executed, first["total"]["result"]) == (4, 285)
    assert os.getpid() not in {
        r["pid"] for r in rows(Path(".etherealfabric"), first.run_id).values()
    }
    second = pipeline().execute()
    assert (second.executed, second.cached) == (0, 4)
    started = [r for r in caplog.records if "starting a Dask LocalCluster" in r.getMessage()]
    assert len(started) == 1  # the cached run started no cluster


def test_dask_unreachable_address_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    dask = pytest.importorskip("dask")
    monkeypatch.setenv("ETHEREALFABRIC_DASK_ADDRESS", "tcp://127.0.0.1:1")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        backend = create_backend("dask")  # nothing is contacted yet
        for _ in range(2):  # the first submission says why; later ones say it again at once
            with pytest.raises(ConfigError, match="ETHEREALFABRIC_DASK_ADDRESS") as caught:
                backend.submit(double, 1)
            assert caught.value.setting == "ETHEREALFABRIC_DASK_ADDRESS"
        backend.close()


@pytest.mark.timeout(60)
def test_dask_an_address_that_does_not_answer_names_the_setting_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port that accepts the connection but is not a Dask scheduler (another service, a
    hung scheduler): distributed.Client alone waited forever for its handshake."""
    dask = pytest.importorskip("dask")
    with silent_listener() as port, dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        monkeypatch.setenv("ETHEREALFABRIC_DASK_ADDRESS", f"tcp://127.0.0.1:{port}")
        backend = create_backend("dask")
        started = time.monotonic()
        with pytest.raises(ConfigError, match="ETHEREALFABRIC_DASK_ADDRESS") as caught:
            backend.submit(double, 1)
        assert "did not answer as a Dask scheduler within 1 s" in str(caught.value)
        assert caught.value.setting == "ETHEREALFABRIC_DASK_ADDRESS"
        assert time.monotonic() - started < 15
        backend.close()


MALFORMED_ADDRESS = """
import sys
from etherealfabric import ConfigError
from etherealfabric.backends._dask import DaskBackend
from etherealfabric.testing._backends import double, pipeline

try:
    if sys.argv[2] == "env":
        pipeline().execute(backend="dask", home=sys.argv[3])
    else:  # code that drives the backend itself
        with DaskBackend(address=sys.argv[1]) as backend:
            backend.submit(double, 1)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", ["env", "argument"])
def test_dask_a_malformed_address_names_the_setting_and_exits_at_once(
    form: str, tmp_path: Path
) -> None:
    """``127.0.0.1:8786x``: a bare ValueError named no setting, and the half-made client
    held the interpreter's exit for a minute (Client.__del__)."""
    pytest.importorskip("distributed")
    address = "127.0.0.1:8786x"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    if form == "env":
        env["ETHEREALFABRIC_DASK_ADDRESS"] = address
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", MALFORMED_ADDRESS, address, form, str(tmp_path / "home")],
        capture_output=True, text=True, env=env, timeout=100,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-3000:]
    setting = "ETHEREALFABRIC_DASK_ADDRESS" if form == "env" else "address"
    assert f"{setting}='127.0.0.1:8786x' is not a Dask scheduler address" in out.stdout
    assert "TimeoutError" not in out.stderr
    assert elapsed < 40  # Python and Dask start in seconds; the hang at exit was 60 s


def test_dask_a_cached_run_never_contacts_the_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    first = pipeline().execute(backend="local", home=tmp_path / "home")
    assert first.executed == 4
    monkeypatch.setenv("ETHEREALFABRIC_DASK_ADDRESS", "tcp://127.0.0.1:1")  # nobody there
    code = (
        "import sys\n"
        "from etherealfabric.testing._backends import pipeline\n"
        f"again = pipeline().execute(backend='dask', home={str(tmp_path / 'home')!r})\n"
        "print(again.executed, again.cached, 'distributed' in sys.modules)\n"
    )
    env = {**os.environ, "ETHEREALFABRIC_DASK_ADDRESS": "tcp://127.0.0.1:1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "4", "False"]  # all cached; Dask not even imported


# -- Celery ----------------------------------------------------------------------------------------
def test_celery_without_settings_names_the_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("celery")
    with pytest.raises(ConfigError, match="ETHEREALFABRIC_CELERY_BROKER_URL") as caught:
        create_backend("celery")
    assert caught.value.setting == "ETHEREALFABRIC_CELERY_BROKER_URL"
    monkeypatch.setenv("ETHEREALFABRIC_CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="ETHEREALFABRIC_CELERY_RESULT_BACKEND"):
        Workflow().execute(backend="celery")


def test_celery_worker_entry_point_without_settings_exits_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("celery")
    assert celery_main(["worker", "--concurrency", "1"]) == 2
    assert "ETHEREALFABRIC_CELERY_BROKER_URL" in capsys.readouterr().err


def test_celery_max_workers_defaults_to_the_workers_concurrency(
    celery_worker: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in celery_worker.items():
        monkeypatch.setenv(var, value)
    with create_backend("celery") as backend:
        assert backend.max_workers == WORKERS


@pytest.mark.parametrize("backend_name", ["celery"], indirect=True)
def test_celery_a_crashed_worker_process_fails_its_node_by_name(
    backend_name: str, home: Path
) -> None:
    with Workflow("crashing") as wf:
        crash(numbers(2))
    with pytest.raises(RunFailedError) as caught:
        wf.execute()
    message = caught.value.failures["crash"]
    assert "node 'crash'" in message
    assert "WorkerLostError" in message
    assert rows(home, caught.value.results.run_id)["crash"]["status"] == "failed"


@pytest.mark.parametrize("backend_name", ["celery"], indirect=True)
def test_celery_a_node_the_workers_cannot_import_says_so(
    backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "only_here_nodes.py").write_text(
        "from etherealfabric import Node\n\n"
        "class Here(Node):\n"
        "    def __init__(self, x):\n"
        "        super().__init__()\n"
        "        self.x = x\n"
        "        self.outputs = ['x']\n\n"
        "    def run(self):\n"
        "        return {'x': self.x}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from only_here_nodes import Here  # type: ignore[import-not-found]

        wf = Workflow("unimportable")
        wf.add_node(Here(1), name="here")
        with pytest.raises(RunFailedError) as caught:
            wf.execute()
    finally:
        sys.modules.pop("only_here_nodes", None)
    message = caught.value.failures["here"]
    assert "node 'here'" in message
    assert "only_here_nodes" in message
    assert "importable on the workers" in message


@pytest.mark.timeout(120)
def test_dask_a_node_the_workers_cannot_import_says_so(
    dask_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare ModuleNotFoundError said nothing of the workers (Celery said how to fix it)."""
    (tmp_path / "only_here_helpers.py").write_text("def factor():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # here only: the cluster's workers run already
    monkeypatch.setenv("ETHEREALFABRIC_DASK_ADDRESS", dask_cluster.scheduler_address)
    try:
        from only_here_helpers import factor  # type: ignore[import-not-found]

        @node
        def scaled() -> int:
            return 2 * factor()

        with Workflow("unimportable-helper") as wf:
            scaled()
        with pytest.raises(RunFailedError) as caught:
            wf.execute(backend="dask", home=tmp_path / "home")
    finally:
        sys.modules.pop("only_here_helpers", None)
    message = caught.value.failures["scaled"]
    assert "only_here_helpers" in message
    assert "importable on the workers" in message
    assert "register_pickle_by_value" in message


@pytest.mark.parametrize("backend_name", ["celery"], indirect=True)
def test_celery_close_with_cancel_revokes_what_has_not_run(
    backend_name: str, celery_worker: dict, tmp_path: Path
) -> None:
    opened = create_backend(backend_name, max_workers=WORKERS)
    marks = [tmp_path / f"ran-{i}" for i in range(4 * WORKERS)]
    for mark in marks:
        opened.submit(nap_then_touch, (0.2, str(mark)))
    deadline = time.monotonic() + TIMEOUT
    while not any(m.exists() for m in marks):  # the first tasks ran
        assert time.monotonic() < deadline, "no task ran"
        time.sleep(0.01)
    opened.close(cancel=True)
    _wait_until_idle(celery_worker)
    ran = sum(m.exists() for m in marks)
    assert 0 < ran < len(marks)


def _wait_until_idle(settings: dict) -> None:
    app = make_app(
        settings["ETHEREALFABRIC_CELERY_BROKER_URL"],
        settings["ETHEREALFABRIC_CELERY_RESULT_BACKEND"],
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            inspect = app.control.inspect(timeout=0.3)
            busy = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
            if not any(busy):
                return
        pytest.fail("the Celery worker stayed busy")
    finally:
        app.close()


# -- pacing of remote backends -------------------------------------------------------------------
def test_pacing_opens_the_window_for_short_tasks_only() -> None:
    from etherealfabric.backends._base import Pacing
    from etherealfabric.run._messages import Attempt, TaskResult

    def ran(seconds: float) -> TaskResult:
        result = TaskResult(node="n", key="k", ok=True)
        result.attempts = [Attempt(number=1, started_at=100.0, finished_at=100.0 + seconds)]
        return result

    pacing = Pacing()
    assert pacing.window(None) is None  # no workers known: no limit
    assert pacing.window(2) == 2 * Pacing.per_worker  # nothing seen yet: a short queue
    for _ in range(Pacing.recent):
        assert pacing.observe(ran(2.0)).ok
    assert pacing.window(2) == 2 * Pacing.per_worker  # long tasks keep it short
    for _ in range(Pacing.recent):
        pacing.observe(ran(0.001))
    assert pacing.window(2) == 2 * Pacing.short_per_worker  # milliseconds: keep many queued
    pacing.observe("not a task result")  # anything else is ignored
    assert pacing.window(2) == 2 * Pacing.short_per_worker


# -- the thread pool's size ------------------------------------------------------------------------
def test_the_thread_pool_starts_threads_as_tasks_need_them_up_to_max_workers() -> None:
    """A max_workers of 100,000 for a few tasks starts a few threads (it started them all: a
    node error "can't start new thread"); tasks that wait for each other still all run at
    once, up to max_workers."""
    import threading

    from etherealfabric.backends._local import EAGER_THREADS, ThreadBackend

    before = threading.active_count()
    with ThreadBackend(max_workers=100_000) as backend:
        assert [backend.submit(double, i).result(timeout=TIMEOUT) for i in range(5)] == [
            0, 2, 4, 6, 8,
        ]  # fmt: skip
        assert threading.active_count() - before <= EAGER_THREADS
    count = EAGER_THREADS + 8
    barrier = threading.Barrier(count, timeout=TIMEOUT)  # each task waits for all the others
    with ThreadBackend(max_workers=count) as backend:
        futures = [backend.submit(lambda _: barrier.wait(), i) for i in range(count)]
        assert sorted(f.result(timeout=TIMEOUT) for f in futures) == list(range(count))


# -- workers started in another folder than the driver ---------------------------------------------
@pytest.fixture(scope="module")
def dask_cluster_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Dask ``LocalCluster`` whose worker processes run in a folder of their own (as
    ``dask worker`` on a cluster's machines does): they inherit the working folder it is
    started in."""
    distributed = pytest.importorskip("distributed")
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("dask-worker"))
    try:
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        )
    finally:
        os.chdir(here)
    try:
        yield cluster
    finally:
        cluster.close()


def _worker_folder(backend_name: str) -> Path:
    """The working folder of the backend's workers (a node that says where it runs)."""

    @node
    def where(_: int) -> str:
        return os.getcwd()

    with Workflow("where", root=os.getcwd()) as wf:
        where(0)
    return Path(wf.execute(backend=backend_name, force=["where"])["where"]["result"])


@pytest.mark.parametrize("backend", ["dask", "celery"])
def test_workers_in_another_folder_keep_their_hits(
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A node run by a worker started in another folder than the driver: a relative path in
    its code is the worker's file. Its declared output, which the driver's folder holds and
    the worker's does not, is no read of it (it ran again on every warm run: 'appeared'); a
    file it reads and one it looks for are recorded where the worker read or missed them, so
    the driver's own copies (other bytes, one the worker lacks) refuse no hit, and an edit of
    the worker's file still runs it again."""
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", backend)
    if backend == "dask":
        cluster = request.getfixturevalue("dask_cluster_elsewhere")
        monkeypatch.setenv("ETHEREALFABRIC_DASK_ADDRESS", cluster.scheduler_address)
    else:
        for var, value in request.getfixturevalue("celery_worker").items():
            monkeypatch.setenv(var, value)
    elsewhere = _worker_folder(backend)
    assert elsewhere != tmp_path  # the workers' folder is not the driver's
    name = f"in-{backend}-{tmp_path.name}.csv"  # (the worker's folder is shared by the tests)
    (elsewhere / "data").mkdir(exist_ok=True)
    (elsewhere / "data" / name).write_text("worker,1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / name).write_text("driver,22\n")  # other bytes: not what it read
    (tmp_path / f"overrides-{tmp_path.name}.json").write_text("{}")  # the worker has none

    @node
    def a(n: int) -> int:
        return n * 2

    @node(writes=["out/report.txt"])
    def report(x: int) -> str:
        with open(root_path("out/report.txt"), "w") as f:
            f.write(f"x={x}\n")
        with open(f"data/{name}") as f:  # the worker's file
            text = f.read()
        extra = os.path.exists(f"overrides-{tmp_path.name}.json")
        return f"{text.strip()} {extra}"

    def flow() -> Workflow:
        with Workflow("writes", root=str(tmp_path)) as wf:
            report(a(3))
        return wf

    first = flow().execute()
    assert (first.executed, first["report"]["result"]) == (2, "worker,1 False")
    assert (tmp_path / "out" / "report.txt").read_text() == "x=6\n"
    for _ in range(2):
        again = flow().execute()
        assert (again.executed, again.cached) == (0, 2)
    (elsewhere / "data" / name).write_text("worker,333\n")  # the file it read: runs again
    edited = flow().execute()
    assert (edited.executed, edited["report"]["result"]) == (1, "worker,333 False")
    assert flow().execute().executed == 0
