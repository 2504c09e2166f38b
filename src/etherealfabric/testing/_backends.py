"""The backend contract: what every :class:`~etherealfabric.backends.Backend` must do.

Subclass :class:`BackendContract` in a test module (its name must start with ``Test``) and
give it a ``backend_name`` fixture: it points the environment at your backend (the
``ETHEREALFABRIC_EXECUTION_BACKEND`` variable and your backend's own settings, through
``monkeypatch``) and returns the name ``create_backend`` knows it by. The tests then create
the backend the way a user does, ``create_backend(name)`` or ``Workflow.execute()``::

    class TestMyBackend(BackendContract):
        in_process = False  # tasks run in other processes

        @pytest.fixture
        def backend_name(self, monkeypatch):
            register_backend("mine", MyBackend)
            monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "mine")
            monkeypatch.setenv("ETHEREALFABRIC_MAX_WORKERS", str(self.max_workers))
            return "mine"

What the workers must import: the task functions of this module are pickled by reference, so
workers import ``etherealfabric.testing`` (and so pytest); ``@node`` functions and classes
defined inside a test travel by value. One test runs a user's script in a fresh interpreter
(``python script.py``) with the same environment: a backend registered only in the test
process is not known there, so a backend that is neither built in nor an entry point puts the
lines that register it in :attr:`BackendContract.script_setup`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..backends import Backend, create_backend

# engine internal: ``node`` and ``Node`` are exported by the package root, which this layer
# may not import (the root imports everything); they are the same objects
from ..define._files import File, root_path
from ..define._function import node
from ..define._node import Node
from ..errors import RunFailedError
from ..journal import Journal
from ..workflow import Workflow
from ._failfast import FailFastContract
from ._maps import MapContract

__all__ = ["USER_SCRIPT", "BackendContract", "double", "nap", "refuse"]


# -- nodes and task functions ----------------------------------------------------------------
@node
def numbers(n: int) -> list[int]:
    return list(range(n))


@node
def squares(xs: list[int]) -> list[int]:
    return [x * x for x in xs]


@node
def total(xs: list[int]) -> int:
    return sum(xs)


@node
def where() -> dict[str, int]:
    return {"pid": os.getpid()}


@node
def explode(xs: list[int]) -> None:
    raise ValueError(f"explode got {len(xs)} numbers")


@node(writes=["out/report.txt", "out/model/"])
def artifacts(n: int) -> File:
    """Writes a declared file, a declared folder, and returns a third file."""
    os.makedirs(root_path("out", "model", "parts"), exist_ok=True)
    for i in range(n):
        with open(root_path("out", "model", "parts", f"{i}.bin"), "wb") as fh:
            fh.write(bytes([i]) * 1000)
    with open(root_path("out", "report.txt"), "w") as fh:
        fh.write(f"{n} parts from pid {os.getpid()}\n")
    with open(root_path("out", "plot.txt"), "w") as fh:
        fh.write("*" * n + "\n")
    return File(root_path("out", "plot.txt"))


@node
def nested_files(n: int) -> dict[str, Any]:
    """Returns files inside an output (a list in a dict), not as outputs of their own."""
    os.makedirs(root_path("nested"), exist_ok=True)
    for i in range(n):
        with open(root_path("nested", f"{i}.txt"), "w") as fh:
            fh.write("x" * (i + 1))
    return {"n": n, "files": [File(root_path("nested", f"{i}.txt")) for i in range(n)]}


@node
def nested_bytes(found: dict[str, Any], offset: int = 0) -> int:
    files = found["files"]
    if not all(isinstance(f, File) and os.path.isfile(f) for f in files):
        raise TypeError(f"nested_bytes got {files!r}, not existing Files")
    return offset + sum(os.path.getsize(f) for f in files)


@node
def file_size(f: File) -> int:
    if not isinstance(f, File):
        raise TypeError(f"file_size got {type(f).__name__}, not a File")
    return os.path.getsize(f)


def double(x: int) -> int:
    return 2 * x


def refuse(x: int) -> int:
    raise ValueError(f"refused {x}")


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def same(value: object) -> object:
    return value


def pipeline(name: str = "contract") -> Workflow:
    with Workflow(name) as wf:
        xs = numbers(10)
        total(squares(xs))
        where()
    return wf


#: A user's script: a class of its own and a serializer for it, registered in the script.
#: Every hop through the serializer leaves a mark on the value, so the test can tell that the
#: worker wrote and read each output with it (and nothing pickled the value instead).
USER_SCRIPT = '''
"""A user's script: its own type, with its own serializer registered right here."""
import json
import os
import sys

from etherealfabric import Workflow, node
from etherealfabric.store import Serializer, register_serializer

{setup}


class Celsius:
    def __init__(self, degrees, via):
        self.degrees = degrees
        self.via = via


class CelsiusSerializer(Serializer):
    name = "script-celsius"

    def dump(self, value, fp):
        if not isinstance(value, Celsius):
            raise TypeError("CelsiusSerializer writes Celsius values only")
        fp.write(json.dumps({{"degrees": value.degrees, "via": value.via}}).encode())

    def load(self, fp):
        data = json.loads(fp.read())
        return Celsius(data["degrees"], data["via"] + " > CelsiusSerializer")


register_serializer(CelsiusSerializer(), types=(Celsius,))


@node
def reading(x):
    return Celsius(x * 1.5, "reading")


@node
def warmer(t):
    return Celsius(t.degrees + 1.0, t.via + " > warmer")


@node
def describe(t):
    return {{"degrees": t.degrees, "via": t.via, "pid": os.getpid()}}


def build():
    with Workflow("user-serializer") as wf:
        describe(warmer(reading(10)))
    return wf


if __name__ == "__main__":
    home = sys.argv[1]
    first = build().execute(home=home)
    again = build().execute(home=home)
    value = again["warmer"]["result"]
    print(json.dumps({{
        "pid": os.getpid(),
        "first": [first.executed, first.cached, first.failed],
        "again": [again.executed, again.cached, again.failed],
        "described": first["describe"]["result"],
        "value": [type(value).__name__, value.degrees, value.via],
    }}))
'''


def node_runs(home: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """The journal's rows of one run, by node."""
    with Journal(home / "journal.db") as journal:
        return {r["node"]: r for r in journal.node_runs(run_id)}


class BackendContract(MapContract, FailFastContract):
    """Tests every backend passes. Subclasses provide the ``backend_name`` fixture.

    The mapped-node cases (partial failure, warm re-run, a driver killed mid-map) come from
    :class:`~etherealfabric.testing._maps.MapContract`, fail-fast ending a running node's
    retries from :class:`~etherealfabric.testing._failfast.FailFastContract`.
    """

    #: the ``max_workers`` the tests create the backend with (and expect it to report)
    max_workers: ClassVar[int] = 2
    #: True when tasks run in the test's own process (threads): no pickling, same pid
    in_process: ClassVar[bool] = False
    #: seconds to wait for any one result
    timeout: ClassVar[float] = 60
    #: Python lines the user's-script test runs first (register the backend, for example)
    script_setup: ClassVar[str] = ""

    @pytest.fixture
    def backend_name(self) -> str:
        """Point the environment at the backend under test; return its name."""
        raise NotImplementedError(f"{type(self).__name__} must define a backend_name fixture")

    @pytest.fixture
    def backend(self, backend_name: str) -> Iterator[Backend]:
        with create_backend(backend_name, max_workers=self.max_workers) as opened:
            yield opened

    @pytest.fixture
    def home(self, tmp_path: Path) -> Path:
        """The home (journal and store) of the workflows the tests run."""
        return tmp_path / "contract-home"

    # -- the Backend interface -------------------------------------------------------------------
    def test_submit_returns_a_future_of_the_result_and_calls_back_once(
        self, backend: Backend
    ) -> None:
        called: list[Any] = []
        done = threading.Event()

        def callback(future: Any) -> None:
            called.append(future)
            done.set()

        future = backend.submit(double, 21)
        future.add_done_callback(callback)
        assert future.result(timeout=self.timeout) == 42
        assert done.wait(self.timeout)
        time.sleep(0.05)  # a second call would come right after the first
        assert len(called) == 1
        assert called[0].result() == 42

    def test_an_exception_of_the_task_is_raised_by_result(self, backend: Backend) -> None:
        future = backend.submit(refuse, 7)
        with pytest.raises(Exception, match="refused 7"):
            future.result(timeout=self.timeout)

    def test_many_tasks_all_complete(self, backend: Backend) -> None:
        assert backend.max_workers == self.max_workers
        futures = [backend.submit(double, i) for i in range(30)]
        assert [f.result(timeout=self.timeout) for f in futures] == [2 * i for i in range(30)]

    def test_close_with_cancel_returns_without_running_the_queue(self, backend_name: str) -> None:
        workers = self.max_workers
        opened = create_backend(backend_name, max_workers=workers)
        futures = [opened.submit(nap, 0.3) for _ in range(3 * workers)]
        started = time.monotonic()
        opened.close(cancel=True)
        assert time.monotonic() - started < 3 * workers * 0.3  # the queue was not worked through
        assert len(futures) == 3 * workers

    def test_an_unpicklable_task_fails_cleanly_or_runs_in_process(self, backend: Backend) -> None:
        """Out of process, ``submit`` or the future raises (the scheduler fails the node
        either way); in process, the task gets the very object, never a copy."""
        lock = threading.Lock()
        if self.in_process:
            assert backend.submit(same, lock).result(timeout=self.timeout) is lock
        else:
            with pytest.raises(TypeError, match="pickle"):
                backend.submit(same, lock).result(timeout=self.timeout)
        assert backend.submit(double, 1).result(timeout=self.timeout) == 2  # still works

    # -- whole workflows -------------------------------------------------------------------------
    def test_results_equal_the_local_backends(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        remote = pipeline().execute(home=home)
        local = pipeline().execute(backend="local", home=tmp_path / "local-home")
        assert remote["total"]["result"] == local["total"]["result"] == 285
        assert remote["squares"]["result"] == local["squares"]["result"]
        assert (remote.executed, remote.cached, remote.failed) == (4, 0, 0)

    def test_nodes_run_in_worker_processes_and_a_second_run_is_cached(
        self, backend_name: str, home: Path
    ) -> None:
        first = pipeline().execute(home=home)
        journal = node_runs(home, first.run_id)
        assert set(journal) == {"numbers", "squares", "total", "where"}
        assert all(r["status"] == "succeeded" for r in journal.values())
        pids = {r["pid"] for r in journal.values()}
        assert first["where"]["result"]["pid"] in pids
        if self.in_process:
            assert pids == {os.getpid()}
        else:
            assert os.getpid() not in pids
        second = pipeline().execute(home=home)
        assert (second.executed, second.cached) == (0, 4)
        assert {r["status"] for r in node_runs(home, second.run_id).values()} <= {"cached"}

    def test_a_failing_node_reports_its_error(self, backend_name: str, home: Path) -> None:
        with Workflow("failing") as wf:
            xs = numbers(3)
            explode(xs)
            total(xs)
        with pytest.raises(RunFailedError) as caught:
            wf.execute(keep_going=True, home=home)
        assert "explode got 3 numbers" in caught.value.failures["explode"]
        results = caught.value.results
        assert results["total"]["result"] == 3
        journal = node_runs(home, results.run_id)
        assert journal["explode"]["status"] == "failed"
        assert "ValueError: explode got 3 numbers" in journal["explode"]["error"]

    def test_many_short_nodes_each_succeed_or_fail_on_their_own(
        self, backend_name: str, home: Path
    ) -> None:
        """Short nodes may travel to the workers together (several in one cluster task):
        each still gets its own result, and a failing one fails alone."""
        with Workflow("short") as wf:
            for i in range(60):
                (explode if i % 9 == 4 else total)(list(range(i)))
        with pytest.raises(RunFailedError) as caught:
            wf.execute(keep_going=True, home=home)
        results = caught.value.results
        failed = {name for name, row in node_runs(home, results.run_id).items()
                  if row["status"] == "failed"}  # fmt: skip
        explodes = {"explode", *(f"explode-{k}" for k in range(2, 8))}  # i = 4, 13, ... 58
        assert failed == set(caught.value.failures) == explodes
        for name, error in caught.value.failures.items():
            assert "explode got" in error, name
        totals = ["total", *(f"total-{k}" for k in range(2, 54))]  # in the order defined
        assert [results[name]["result"] for name in totals] == [
            sum(range(i)) for i in range(60) if i % 9 != 4
        ]

    def test_declared_file_outputs_are_restored_on_a_hit(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        """Files a node declares or returns are stored by the worker and put back, byte for
        byte, when the node is a cache hit; the consumer gets a File at that path."""
        root = tmp_path / "project"
        root.mkdir()

        def build() -> Workflow:
            with Workflow("file-outputs", root=root) as wf:
                file_size(artifacts(3))
            return wf

        first = build().execute(home=home)
        assert (first.executed, first["file_size"]["result"]) == (2, 4)
        written = {p: p.read_bytes() for p in sorted((root / "out").rglob("*")) if p.is_file()}
        assert len(written) == 5
        for path in written:
            path.unlink()
        again = build().execute(home=home)
        assert (again.executed, again.cached) == (0, 2)
        assert {p: p.read_bytes() for p in written} == written
        assert again["artifacts"]["result"] == File(root / "out" / "plot.txt")

    def test_files_inside_an_output_are_stored_and_restored(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        """A File inside an output (a list in a dict) is stored root-relative with it: a hit
        puts the files back without running, and a consumer running in a worker gets Files
        under the root."""
        root = tmp_path / "project"
        root.mkdir()

        def build(offset: int) -> Workflow:
            with Workflow("nested-files", root=root) as wf:
                nested_bytes(nested_files(3), offset)
            return wf

        first = build(0).execute(home=home)
        assert (first.executed, first["nested_bytes"]["result"]) == (2, 6)
        written = {p: p.read_bytes() for p in sorted((root / "nested").glob("*.txt"))}
        assert len(written) == 3
        for path in written:
            path.unlink()
        again = build(10).execute(home=home)  # the producer is a hit, the consumer runs
        assert (again.executed, again.cached) == (1, 1)
        assert again["nested_bytes"]["result"] == 16
        assert {p: p.read_bytes() for p in written} == written

    def test_seed_style_class_nodes_defined_in_a_test_run(
        self, backend_name: str, home: Path
    ) -> None:
        class MyNode(Node):
            def __init__(self, input_data: Any) -> None:
                super().__init__()
                self.input_data = input_data
                self.outputs = ["output_data"]

            def run(self) -> dict[str, Any]:
                return {"output_data": self.input_data * 2}

        node1 = MyNode(input_data=10)
        node2 = MyNode(input_data=node1.outputs["output_data"])
        workflow = Workflow()
        workflow.add_node(node1)
        workflow.add_node(node2)
        workflow.add_dependency(node1, node2)
        results = workflow.execute(home=home)
        assert results[node2]["output_data"] == 40
        again = workflow.execute(home=home)
        assert (again.executed, again.cached) == (0, 2)

    def test_a_serializer_registered_in_the_users_script_works(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        """The script registers a serializer for its own class and runs a workflow twice.

        The worker must write and read every output with that serializer, though it never
        ran the script's ``register_serializer(...)``; the second run is all cached.
        """
        script = tmp_path / "user_script.py"
        script.write_text(USER_SCRIPT.format(setup=textwrap.dedent(self.script_setup)))
        done = subprocess.run(
            [sys.executable, str(script), str(home)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=4 * self.timeout,
        )
        assert done.returncode == 0, f"the script failed:\n{done.stderr[-4000:]}"
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["first"] == [3, 0, 0]
        assert report["again"] == [0, 3, 0]
        hops = "reading > CelsiusSerializer > warmer > CelsiusSerializer"
        assert report["described"]["degrees"] == 16.0
        # every output was written and read with the script's serializer, on the worker too
        assert report["described"]["via"] == hops, "the worker did not use CelsiusSerializer"
        assert report["value"] == ["Celsius", 16.0, hops]
        if self.in_process:
            assert report["described"]["pid"] == report["pid"]
        else:
            assert report["described"]["pid"] != report["pid"]
