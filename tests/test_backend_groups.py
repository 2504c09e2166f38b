"""Short tasks travel to a cluster in groups (``backends/_grouping.py``): how groups are sized,
and that each node of a group still settles on its own, on Dask and Celery (a LocalCluster
and a redis-server with one Celery worker of their own, so that killing their workers
disturbs no other test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from etherealfabric.backends._grouping import GroupPacing, outcome, run_captured, run_group
from etherealfabric.run._messages import Attempt, TaskResult
from etherealfabric.testing._backends import double, refuse
from redis_server import redis_server_path, start_redis, stop_process

TIMEOUT = 120


def ran(seconds: float) -> TaskResult:
    result = TaskResult(node="n", key="k", ok=True)
    result.attempts = [Attempt(number=1, started_at=100.0, finished_at=100.0 + seconds)]
    return result


def short_pacing(seconds: float = 0.0005) -> GroupPacing:
    pacing = GroupPacing()
    for _ in range(GroupPacing.recent):
        pacing.observe(ran(seconds))
    return pacing


def die(task: Any) -> None:
    os._exit(3)  # takes its (pool) process down, every time


def die_once(marker: str) -> str:
    """Take the whole worker process down the first time; return the second time."""
    if os.path.exists(marker):
        return "ran again"
    Path(marker).touch()
    os._exit(3)


# -- sizes ---------------------------------------------------------------------------------------
def test_tasks_travel_alone_until_recent_ones_turn_out_short() -> None:
    pacing = GroupPacing()
    assert pacing.sizes(40, 2) == [1] * 40  # nothing seen yet
    for _ in range(GroupPacing.recent):
        pacing.observe(ran(2.0))
    assert pacing.sizes(40, 2) == [1] * 40  # long tasks never share a cluster task


def test_short_tasks_queued_together_share_cluster_tasks() -> None:
    pacing = short_pacing()
    sizes = pacing.sizes(200, 2)
    assert sum(sizes) == 200 and max(sizes) == GroupPacing.group_max
    # few queued: still enough groups to keep every worker busy
    assert pacing.sizes(8, 2) == [2, 2, 2, 2]
    assert pacing.sizes(3, 2) == [1, 1, 1]
    assert pacing.sizes(1, 2) == [1]


def test_a_group_runs_for_about_group_seconds() -> None:
    pacing = short_pacing(0.01)  # 10 ms each: two per group
    assert pacing.sizes(100, 2) == [2] * 50


def test_each_node_of_a_group_has_its_own_outcome() -> None:
    payloads = [cloudpickle.dumps((double, 4)), cloudpickle.dumps((refuse, 5))]
    ok, failed = run_group(payloads)
    assert outcome(ok) == 8
    with pytest.raises(ValueError, match="refused 5"):
        outcome(failed)
    assert run_captured(payloads[0]) == ok


def test_a_celery_group_that_fails_as_a_whole_names_each_of_its_nodes() -> None:
    pytest.importorskip("celery")
    from etherealfabric.backends._celery_lost import Submission
    from etherealfabric.errors import ExecutionError

    members = [Submission(name, Future(), b"") for name in ("load", "clean", "fit")]
    members[1].future.set_result("done before")  # settled already: left alone
    group = Submission("load (and 2 more)", Future(), [b""] * 3, members=members)
    group.fail("could not send it to the Celery broker redis://127.0.0.1:1/0: refused")
    for member in (members[0], members[2]):
        with pytest.raises(ExecutionError, match=rf"^node '{member.node}': could not send"):
            member.future.result()
    assert members[1].future.result() == "done before"
    with pytest.raises(ExecutionError, match="nodes load \\(and 2 more\\)"):
        group.future.result()


# -- on Dask ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    dask = pytest.importorskip("dask")
    # a task whose worker dies fails at once (KilledWorker), instead of being tried 3 more times
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        )
    try:
        yield local
    finally:
        local.close()


def send_together(backend: Any, tasks: list[tuple[Any, Any]]) -> list[Future[Any]]:
    """Queue ``tasks`` as one batch (as the I/O thread finds them when a run submits a burst
    of ready nodes); return their futures."""
    from etherealfabric.backends._dask import _Send

    assert backend.submit(double, 0).result(timeout=TIMEOUT) == 0  # its I/O thread runs
    assert backend._pacing.sizes(len(tasks), backend.max_workers)[0] > 1  # grouped
    sends = [_Send(f"t{i}", cloudpickle.dumps(task), Future()) for i, task in enumerate(tasks)]
    backend._send(sends)
    return [send.future for send in sends]


def test_dask_short_tasks_share_cluster_tasks_and_settle_one_by_one(cluster: Any) -> None:
    import distributed

    from etherealfabric.backends._dask import DaskBackend

    with distributed.Client(cluster) as client, DaskBackend(client=client) as backend:
        backend._pacing = short_pacing()
        with distributed.get_task_stream(client) as stream:
            futures = send_together(backend, [(double, i) for i in range(40)] + [(refuse, 1)])
            assert [f.result(timeout=TIMEOUT) for f in futures[:40]] == [2 * i for i in range(40)]
            with pytest.raises(ValueError, match="refused 1"):
                futures[40].result(timeout=TIMEOUT)
        assert len(stream.data) < 41 / 2  # grouped: fewer cluster tasks than nodes


def test_dask_a_group_whose_worker_dies_is_sent_again_node_by_node(
    cluster: Any, tmp_path: Path
) -> None:
    """A group's cluster task fails as a whole when its worker dies (here Dask gives up at
    once: ``allowed-failures`` 0): its nodes are then sent again one by one, so the others
    succeed, and only a node that keeps taking its worker down would fail."""
    import distributed

    from etherealfabric.backends._dask import DaskBackend

    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        with DaskBackend(client=client, max_workers=1) as backend:
            backend._pacing = short_pacing()
            backend._pacing.groups_per_worker = 1  # the three in one group
            marker = str(tmp_path / "died-once")
            futures = send_together(backend, [(double, 1), (die_once, marker), (double, 2)])
            assert [f.result(timeout=TIMEOUT) for f in futures] == [2, "ran again", 4]
        assert os.path.exists(marker)  # the group's worker did die
        client.wait_for_workers(2, timeout=TIMEOUT)  # the nanny restarted it


# -- on Celery -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def celery_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private redis-server and one Celery worker (two pool processes) that can import
    this module (``die``)."""
    pytest.importorskip("celery")
    if redis_server_path() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; CI must install it (redis-server)")
        pytest.skip("redis-server is not installed")
    folder = tmp_path_factory.mktemp("groups-celery")
    redis = start_redis(folder)
    settings = {
        "ETHEREALFABRIC_CELERY_BROKER_URL": redis.url(0),
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": redis.url(1),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    here = str(Path(__file__).resolve().parent)
    env.update(settings, C_FORCE_ROOT="1", PYTHONPATH=os.pathsep.join([here, *sys.path]))
    with (folder / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric.backends._celery", "worker", "-c", "2"],
            cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield settings
    finally:
        stop_process(worker, timeout=15)
        redis.stop()


def test_celery_a_group_whose_pool_process_dies_is_sent_again_node_by_node(
    celery_settings: dict[str, str],
) -> None:
    """The group's message fails as a whole (its pool process died on every try): its nodes
    are then sent again one by one, the others succeed, and the node that kills its process
    fails alone, with Celery's WorkerLostError."""
    from etherealfabric.backends._celery import CeleryBackend
    from etherealfabric.backends._celery_lost import Submission

    backend = CeleryBackend(
        max_workers=1,
        broker_url=celery_settings["ETHEREALFABRIC_CELERY_BROKER_URL"],
        result_backend=celery_settings["ETHEREALFABRIC_CELERY_RESULT_BACKEND"],
    )
    try:
        backend._pacing = short_pacing()
        backend._pacing.groups_per_worker = 1  # the four in one group
        tasks = [(double, 1), (die, None), (double, 2), (double, 3)]
        assert backend._pacing.sizes(len(tasks), 1) == [4]
        subs = [Submission(f"t{i}", Future(), cloudpickle.dumps(t)) for i, t in enumerate(tasks)]
        for sub in subs:  # queued before the poller starts: it finds them all in one round
            backend._outbox.put(sub)
        backend._start_poller()
        backend._wake.set()
        with pytest.raises(Exception, match="WorkerLostError"):
            subs[1].future.result(timeout=TIMEOUT)
        assert [subs[i].future.result(timeout=TIMEOUT) for i in (0, 2, 3)] == [2, 4, 6]
        assert "t1" in str(subs[1].future.exception())  # named alone, not as the group
    finally:
        backend.close()
