"""Nodes whose worker process dies, and exceptions that do not cross a process boundary as they
are, on the process backend: real worker processes, really killed with SIGKILL.

- a node whose worker is killed (as the out-of-memory killer does) is retried under its retry
  policy, its lost attempt recorded with the time it ran and the pid and signal of the death,
  while a node running beside it in another worker goes on untouched;
- a node that kills its worker every time fails once its attempts are spent;
- an exception whose ``__init__`` takes other arguments than its ``args`` (or that holds a lock)
  reaches the run as a stand-in of the same type name and text, with its attempts and output.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import RunFailedError, Workflow, node
from etherealfabric.journal._journal import Journal

TIMEOUT = 120  # generous: a slow, busy machine


def rows(home: Path, run_id: str) -> dict[str, list[dict]]:
    with Journal(home / "journal.db") as journal:
        out: dict[str, list[dict]] = {}
        for r in journal.node_runs(run_id):
            out.setdefault(r["node"], []).append(r)
        return out


def test_a_killed_worker_is_retried_and_the_node_beside_it_goes_on(
    home: Path, tmp_path: Path
) -> None:
    """Attempt 1 fails (an exception), attempt 2 SIGKILLs its own worker after running a
    while, attempt 3 succeeds; ``beside`` runs in the other worker all along."""
    folder = str(tmp_path)

    @node(retries=2)
    def fragile():
        import os
        import signal
        import time

        tries = len([n for n in os.listdir(folder) if n.startswith("try-")]) + 1
        Path(folder, f"try-{tries}").touch()
        if tries == 1:
            raise ValueError("first try fails")
        if tries == 2:
            time.sleep(0.5)  # ran a while before it was killed
            Path(folder, "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    @node(retries=2)
    def beside():
        import os
        import time

        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(os.path.join(folder, "killed")):  # still running then
            assert time.monotonic() < deadline, "fragile never killed its worker"
            time.sleep(0.05)
        time.sleep(0.5)
        return os.getpid()

    with Workflow("worker-death", keep_going=True) as wf:
        fragile()
        beside()
    results = wf.execute(backend="processes", max_workers=2, raise_on_error=False)
    assert results.statuses == {"fragile": "succeeded", "beside": "succeeded"}, results.errors
    r = rows(home, results.run_id)
    assert len(r["beside"]) == 1 and r["beside"][0]["status"] == "succeeded"
    first, killed, last = r["fragile"]
    assert [a["attempt"] for a in r["fragile"]] == [1, 2, 3]
    assert first["error"].startswith("ValueError: first try fails")
    assert killed["error"].startswith("WorkerDiedError: its worker process (pid ")
    assert "killed by SIGKILL (out of memory?" in killed["error"]
    assert killed["finished_at"] - killed["started_at"] >= 0.4  # the time it really ran
    assert last["status"] == "succeeded"
    assert results["fragile"] != results["beside"]  # different workers


def test_a_node_that_kills_its_worker_every_time_fails_once_its_retries_are_spent(
    home: Path,
) -> None:
    @node(retries=2)
    def doomed():
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    @node
    def fine():
        return 1

    with Workflow("doomed", keep_going=True) as wf:
        doomed()
        fine()
    results = wf.execute(backend="processes", max_workers=1, raise_on_error=False)
    assert results.statuses == {"doomed": "failed", "fine": "succeeded"}
    assert results.errors["doomed"].startswith("WorkerDiedError: its worker process (pid ")
    assert "killed by SIGKILL" in results.errors["doomed"]
    attempts = rows(home, results.run_id)["doomed"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all("killed by SIGKILL" in a["error"] for a in attempts)


class ShapeError(Exception):
    def __init__(self, expected, got):
        super().__init__(f"expected shape {expected}, got {got}")
        self.expected, self.got = expected, got


class LockedError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()  # does not pickle


def test_an_exception_that_cannot_be_rebuilt_reaches_the_run_with_its_attempts(
    home: Path,
) -> None:
    @node(retries=1)
    def shaped():
        print("checking shapes")
        raise ShapeError((3, 4), (4, 3))

    @node
    def locked():
        raise LockedError("cuda context lost")

    @node(timeout=60)  # attempts run in a child process of the worker
    def shaped_in_time():
        raise ShapeError((1,), (2,))

    with Workflow("exc", keep_going=True) as wf:
        shaped()
        locked()
        shaped_in_time()
    with pytest.raises(RunFailedError) as raised:
        wf.execute(backend="processes", max_workers=2)
    results = raised.value.results
    assert results.errors == {
        "shaped": "ShapeError: expected shape (3, 4), got (4, 3)",
        "locked": "LockedError: cuda context lost",
        "shaped_in_time": "ShapeError: expected shape (1,), got (2,)",
    }
    attempts = rows(home, results.run_id)["shaped"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all("checking shapes" in (a["output"] or "") for a in attempts)
    cause = raised.value.__cause__  # node 'x' failed after n attempts: (its exception)
    assert f"{type(cause.original).__name__}: {cause.original}" in results.errors.values()


CLUSTER_OUTCOME = """\
import threading
import cloudpickle
from etherealfabric.backends._grouping import outcome, run_captured
from etherealfabric.errors import RemoteError

class ShapeError(Exception):
    def __init__(self, expected, got):
        super().__init__(f"expected shape {expected}, got {got}")

class LockedError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()

def raising(kind):
    raise ShapeError((3, 4), (4, 3)) if kind == "shape" else LockedError("lost")

for kind in ("shape", "lock"):
    try:
        outcome(run_captured(cloudpickle.dumps((raising, kind))))
    except RemoteError as exc:
        print(type(exc).__name__, exc, "in raising" in exc.remote_traceback, sep="|")
"""


def test_cluster_outcomes_bring_a_stand_in_for_an_exception_that_cannot_be_rebuilt(
    python: str,
) -> None:
    """What the Dask and Celery backends send back for a node whose task raised (in a fresh
    interpreter: ``distributed`` teaches pickle to rebuild such exceptions when imported)."""
    done = subprocess.run(
        [python, "-c", CLUSTER_OUTCOME], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.stdout.splitlines() == [
        "ShapeError|expected shape (3, 4), got (4, 3)|True",
        "LockedError|lost|True",
    ], done.stderr[-3000:]


def test_a_worker_start_during_another_waits_for_the_stand_in_main_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two feeder threads start workers at once from an unguarded script (``__main__`` has no
    spec): the second start must not run while the first resets the stand-in spec, or its
    worker would re-import the user's script."""
    import sys

    from etherealfabric.backends._base import no_main_reimport

    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__spec__", None)
    first_in, second_trying, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[object] = []

    def first() -> None:
        with no_main_reimport():  # inside its process.start()
            first_in.set()
            second_trying.wait(TIMEOUT)
        first_out.set()

    def second() -> None:
        first_in.wait(TIMEOUT)
        second_trying.set()
        with no_main_reimport():  # what its process.start() would send the new worker
            first_out.wait(TIMEOUT)
            seen.append(main.__spec__)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(seen) == 1 and seen[0] is not None
    assert seen[0].name == "etherealfabric._spawn_main"
    assert main.__spec__ is None


def test_a_worker_that_died_idle_does_not_fail_the_next_node_sent_to_it(home: Path) -> None:
    """``first``'s worker is killed while idle (``pause`` runs on the driver meanwhile):
    ``then``, sent to that slot next, never started there, so it runs on a new worker, on its
    first attempt, with no retries allowed."""

    @node
    def first():
        import os

        return os.getpid()

    @node(on_driver=True)
    def pause(pid):
        import os
        import signal

        os.kill(pid, signal.SIGKILL)  # the worker is idle: its task is done
        return pid

    @node
    def then(pid):
        import os

        return os.getpid()

    with Workflow("idle-death") as wf:
        then(pause(first()))
    results = wf.execute(backend="processes", max_workers=1, raise_on_error=False)
    assert results.statuses == {
        "first": "succeeded",
        "pause": "succeeded",
        "then": "succeeded",
    }, results.errors
    assert results["then"] != results["first"]
    attempts = rows(home, results.run_id)["then"]
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "succeeded")]


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_node_raising_system_exit_fails_like_any_error_and_keeps_its_worker(
    home: Path, backend: str
) -> None:
    """``sys.exit(5)``, ``KeyboardInterrupt`` and a bare ``BaseException`` in a node fail it,
    with that error and no retry, as on threads: the worker does not die of it."""

    @node(retries=1)
    def exits():
        import sys

        sys.exit(5)

    @node(retries=1)
    def interrupted():
        raise KeyboardInterrupt

    @node(retries=1)
    def based():
        raise BaseException("base")

    with Workflow("sysexit", keep_going=True) as wf:
        exits()
        interrupted()
        based()
    results = wf.execute(backend=backend, max_workers=1, raise_on_error=False)
    assert results.errors == {
        "exits": "SystemExit: 5",
        "interrupted": "KeyboardInterrupt: ",
        "based": "BaseException: base",
    }
    r = rows(home, results.run_id)
    for name in ("exits", "interrupted", "based"):
        assert [(a["attempt"], a["status"]) for a in r[name]] == [(1, "failed")], name


def test_a_map_item_whose_worker_dies_is_retried_under_the_maps_retry_policy(
    home: Path, tmp_path: Path
) -> None:
    """Item 1's first attempt SIGKILLs its worker after running a while: it runs again (its
    retry policy allows it), its lost attempt recorded with the time it ran; the map
    succeeds."""
    folder = str(tmp_path)

    @node(retries=2)
    def work(x):
        import os
        import signal
        import time

        if x == 1 and not os.path.exists(os.path.join(folder, "killed")):
            time.sleep(0.5)
            Path(folder, "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x * 10

    with Workflow("map-death") as wf:
        work.map([0, 1, 2])
    results = wf.execute(backend="processes", max_workers=2, raise_on_error=False)
    assert results.statuses == {"work": "succeeded"}, results.errors
    assert results["work"]["result"] == [0, 10, 20]
    r = rows(home, results.run_id)
    lost, last = r["work[1]"]
    assert (lost["attempt"], lost["status"], last["attempt"]) == (1, "retrying", 2)
    assert lost["error"].startswith("WorkerDiedError: its worker process (pid ")
    assert lost["finished_at"] - lost["started_at"] >= 0.4  # the time it really ran
    assert last["status"] == "succeeded"
    assert [a["status"] for a in r["work[0]"]] == ["succeeded"]


def test_a_map_item_that_kills_its_worker_every_time_fails_once_its_retries_are_spent(
    home: Path,
) -> None:
    @node(retries=1)
    def doomed(x):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    with Workflow("map-doomed") as wf:
        doomed.map([1])
    results = wf.execute(backend="processes", max_workers=1, raise_on_error=False)
    assert results.statuses == {"doomed": "failed"}
    attempts = rows(home, results.run_id)["doomed[1]"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all("killed by SIGKILL" in a["error"] for a in attempts)


@pytest.mark.parametrize("mapped", [False, True])
def test_a_retry_after_a_worker_death_waits_the_policys_backoff(
    home: Path, tmp_path: Path, mapped: bool
) -> None:
    """The first attempt SIGKILLs its worker: the second starts only after the retry policy's
    backoff (1 s), as after any other failure, for a node and for a map's item."""
    from etherealfabric import RetryPolicy

    folder = str(tmp_path)

    @node(retries=RetryPolicy(retries=1, backoff=1.0))
    def fragile(x):
        import os
        import signal

        if not os.path.exists(os.path.join(folder, "killed")):
            Path(folder, "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with Workflow("backoff-death") as wf:
        fragile.map([7]) if mapped else fragile(7)
    results = wf.execute(backend="processes", max_workers=1, raise_on_error=False)
    assert results.statuses == {"fragile": "succeeded"}, results.errors
    lost, last = rows(home, results.run_id)["fragile[7]" if mapped else "fragile"]
    assert lost["error"].startswith("WorkerDiedError")
    assert last["started_at"] - lost["finished_at"] >= 0.9


def test_an_exception_whose_class_only_the_worker_can_import_keeps_the_nodes_attempts(
    home: Path, tmp_path: Path
) -> None:
    """The node raises an exception of a module the driver cannot import: the run gets a
    stand-in of the same type name and text, with every attempt, not a ModuleNotFoundError
    in place of the node's result."""
    folder = tmp_path / "worker-only"
    folder.mkdir()
    module = f"worker_only_{tmp_path.name.replace('-', '_')}"
    (folder / f"{module}.py").write_text("class OnlyHereError(Exception):\n    pass\n")
    where = str(folder)

    @node(retries=1)
    def raiser():
        import importlib
        import sys

        sys.path.insert(0, where)
        raise importlib.import_module(module).OnlyHereError("only importable in the worker")

    with Workflow("worker-only-exc") as wf:
        raiser()
    results = wf.execute(backend="processes", max_workers=1, raise_on_error=False)
    assert results.errors == {"raiser": "OnlyHereError: only importable in the worker"}
    attempts = rows(home, results.run_id)["raiser"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all(a["error"].startswith("OnlyHereError: only") for a in attempts)


FORKING = """
import os
from etherealfabric import Workflow, node

@node
def work(n):
    pid = os.fork()
    if pid == 0:
        return n + 100  # the child's value, by mistake: never the node's output
    os.waitpid(pid, 0)
    return n + 1

@node
def after(x):
    return x

with Workflow("fork") as wf:
    after(work(10))
"""


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_forked_child_returning_from_the_node_is_ended_not_taken_for_the_node(
    tmp_path: Path, ef: Any, backend: str
) -> None:
    """Its value became the node's output (110 downstream) and the run never ended (the
    parent waited for a child that went on as a worker); on threads it hung."""
    (tmp_path / "flow.py").write_text(FORKING)
    home = str(tmp_path / "home")
    done = ef(tmp_path, "run", "flow.py", "--backend", backend, ETHEREALFABRIC_HOME=home)
    assert done.returncode == 0, done.stderr
    assert "returned from the node instead of exiting" in done.stderr
    assert "os._exit" in done.stderr
    assert ef(tmp_path, "cat", "latest", "after", ETHEREALFABRIC_HOME=home).stdout.strip() == "11"
