"""Failure handling: retries, timeouts, on_error fallbacks and skips, fail-fast vs keep-going,
resume, and the output each attempt printed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from etherealfabric import Node, NodeTimeoutError, RetryPolicy, RunFailedError, Workflow, node
from etherealfabric.define._policies import SKIP, NodeError
from etherealfabric.journal._history import node_attempts
from etherealfabric.journal._journal import Journal


@node
def value(x):
    return x


@node
def add(a, b):
    return a + b


def rows(home: Path, run_id: str) -> dict[str, list[dict]]:
    with Journal(home / "journal.db") as journal:
        out: dict[str, list[dict]] = {}
        for r in journal.node_runs(run_id):
            out.setdefault(r["node"], []).append(r)
        return out


def test_retry_only_the_exception_types_asked_for() -> None:
    calls = {"n": 0}

    @node(
        retries=RetryPolicy(
            retries=5, retry_on=(ConnectionError,), never_retry=(ConnectionResetError,)
        )
    )
    def fetch():
        calls["n"] += 1
        raise ConnectionResetError("reset")

    with Workflow("types") as wf:
        fetch()
    with pytest.raises(RunFailedError):
        wf.execute()
    assert calls["n"] == 1  # never_retry wins over retry_on


def test_workflow_default_retry_policy_applies_to_nodes_without_one() -> None:
    calls = {"n": 0}

    @node
    def flaky():
        calls["n"] += 1
        if calls["n"] < 2:
            raise OSError("once")
        return "ok"

    with Workflow("default-retry", retries=1) as wf:
        out = flaky()
    assert wf.execute()[out] == "ok" and calls["n"] == 2


def test_retry_backoff_waits_between_attempts() -> None:
    times: list[float] = []

    @node(retries=RetryPolicy(retries=2, backoff=0.2, multiplier=1.0))
    def slow_to_work():
        times.append(time.monotonic())
        if len(times) < 3:
            raise OSError("not yet")
        return 1

    with Workflow("backoff") as wf:
        slow_to_work()
    wf.execute()
    assert times[1] - times[0] >= 0.19 and times[2] - times[1] >= 0.19


def test_timeout_on_threads_abandons_the_attempt_and_retries(home: Path) -> None:
    release = threading.Event()
    attempts = {"n": 0}

    @node(timeout=0.3, retries=1)
    def stuck():
        attempts["n"] += 1
        if attempts["n"] == 1:
            release.wait(30)  # the first attempt hangs
        return "second try"

    with Workflow("timeout-threads") as wf:
        out = stuck()
    try:
        results = wf.execute()
    finally:
        release.set()
    assert results[out] == "second try"
    r = rows(home, results.run_id)["stuck"]
    assert [x["status"] for x in r] == ["retrying", "succeeded"]
    assert "NodeTimeoutError" in r[0]["error"] and "abandoned" in r[0]["error"]


def test_timeout_on_processes_stops_the_node(tmp_path: Path) -> None:
    marker = tmp_path / "still-running"

    @node(timeout=1.0)
    def forever(path):
        import time as t

        t.sleep(3)
        open(path, "w").close()  # never reached: the process is killed first
        return 1

    with Workflow("timeout-processes") as wf:
        forever(str(marker))
    with pytest.raises(RunFailedError) as info:
        wf.execute(backend="processes", max_workers=1)
    assert isinstance(info.value.__cause__.original, NodeTimeoutError)
    assert "was stopped" in str(info.value)
    time.sleep(2.5)
    assert not marker.exists()


def test_on_error_fallback_feeds_downstream_but_is_never_cached(home: Path) -> None:
    seen: list[NodeError] = []

    def fallback(error: NodeError):
        seen.append(error)
        return {"result": 100}

    calls = {"n": 0}

    @node(on_error=fallback)
    def broken():
        calls["n"] += 1
        raise RuntimeError("no data today")

    def build():
        with Workflow("fallback") as wf:
            total = add(broken(), value(1))
        return wf, total

    wf, total = build()
    results = wf.execute()
    assert results[total] == 101
    assert results.statuses["broken"] == "fallback" and results.ok
    assert seen[0].node == "broken" and "no data today" in seen[0].error
    row = rows(home, results.run_id)["broken"][-1]
    assert row["status"] == "fallback" and row["fallback"] == 1
    wf, total = build()
    again = wf.execute()
    assert calls["n"] == 2  # the fallback was not cached as a real result
    assert again.statuses["add"] == "cached"  # same fallback bytes: downstream cached


def test_on_error_skip_skips_descendants() -> None:
    @node(on_error=lambda e: SKIP)
    def optional():
        raise ValueError("skip me")

    with Workflow("skip") as wf:
        a = optional()
        b = add(a, 1)
        c = value(5)
    results = wf.execute()
    assert results.statuses == {"optional": "skipped", "add": "skipped", "value": "succeeded"}
    assert results[c] == 5 and b not in results and results.ok


def test_on_error_that_raises_or_returns_none_lets_the_failure_stand() -> None:
    def reraise(error: NodeError):
        raise KeyError("handler says no")

    class Broken(Node):
        on_error = staticmethod(reraise)

        def __init__(self):
            super().__init__()
            self.outputs = ["x"]

        def run(self):
            raise ValueError("bad")

    wf = Workflow("reraise")
    wf.add_node(Broken())
    with pytest.raises(RunFailedError, match="handler says no"):
        wf.execute()
    with Workflow("none", on_error=lambda e: None) as wf2:
        add(1, "x")
    with pytest.raises(RunFailedError, match="TypeError"):
        wf2.execute()


def test_fail_fast_stops_independent_branches() -> None:
    gate = threading.Event()
    ran: list[str] = []

    @node
    def fails():
        raise RuntimeError("boom")

    @node
    def slow(i):
        gate.wait(5)
        ran.append(f"slow{i}")
        return i

    with Workflow("fail-fast", max_workers=1) as wf:
        fails()
        for i in range(3):
            slow(i)
    results = wf.execute(raise_on_error=False)
    gate.set()
    assert results.statuses["fails"] == "failed"
    assert list(results.statuses.values()).count("cancelled") == 3
    assert ran == []


def test_fail_fast_drops_the_short_tasks_queued_behind_a_failure() -> None:
    # once short tasks are seen the thread pool keeps a deep queue (backends/_local.py): a
    # failure must drop what waits in it, not run it. One thread: quick nodes open the
    # window, then `fails`, then ten nodes that wait until the run has seen the failure
    gate = threading.Event()
    ran: list[int] = []

    @node
    def quick(i):
        return i

    @node
    def fails():
        raise RuntimeError("boom")

    @node
    def after(i):
        gate.wait(10)
        ran.append(i)
        return i

    def on_event(event) -> None:
        if event.kind == "node_failed":
            gate.set()

    with Workflow("fail-fast-queue", max_workers=1) as wf:
        for i in range(20):
            quick(i)
        fails()
        for i in range(10):
            after(i)
    results = wf.execute(raise_on_error=False, subscribers=[on_event])
    gate.set()
    assert results.statuses["fails"] == "failed"
    # the one thread may have started the first `after` before the failure was seen (and,
    # if the scheduler is descheduled for a whole GIL switch interval, a second): no more
    assert len(ran) <= 2, ran
    cancelled = [n for n, s in results.statuses.items() if s == "cancelled"]
    assert len(cancelled) == 10 - len(ran)
    assert all(n.startswith("after") for n in cancelled)


@pytest.mark.parametrize("on_driver", [False, True])
def test_fail_fast_ends_the_retries_of_a_node_running_in_this_process(
    home: Path, on_driver: bool
) -> None:
    # `flaky` retries with a 30 s backoff; `fails` fails once `flaky` failed its first
    # attempt: the run stops at once, `flaky` makes no second attempt and fails with its error
    first_failed = threading.Event()
    attempts: list[float] = []

    @node(retries=RetryPolicy(retries=5, backoff=30.0), on_driver=on_driver)
    def flaky():
        attempts.append(time.monotonic())
        first_failed.set()
        raise ValueError("flaky failed")

    @node
    def fails():
        first_failed.wait(10)
        raise RuntimeError("boom")

    with Workflow("fail-fast-retries", max_workers=2) as wf:
        flaky()
        fails()
    started = time.monotonic()
    results = wf.execute(raise_on_error=False)
    assert time.monotonic() - started < 20  # not 30 s of backoff, nor five more attempts
    assert results.statuses == {"flaky": "failed", "fails": "failed"}
    assert len(attempts) == 1
    assert "flaky failed" in str(results.errors["flaky"])
    with Journal(home / "journal.db") as journal:
        rows = node_attempts(journal, results.run_id, "flaky")
    assert [r["status"] for r in rows] == ["failed"] and "flaky failed" in rows[0]["error"]


def test_keep_going_finishes_independent_branches() -> None:
    @node
    def fails():
        raise RuntimeError("boom")

    with Workflow("keep-going", max_workers=1) as wf:
        bad = fails()
        blocked = add(bad, 1)
        fine = [value(i) for i in range(3)]
    results = wf.execute(raise_on_error=False, keep_going=True)
    assert results.statuses["fails"] == "failed"
    assert results.statuses["add"] == "upstream_failed"
    assert [results[f] for f in fine] == [0, 1, 2]
    assert blocked not in results
    # asking for a value that was never made says why, by the reference as by the name
    for asked in (lambda: results[blocked], lambda: results["add"]["result"]):
        with pytest.raises(KeyError, match=r"'add' has no results in run .*: it upstream_failed"):
            asked()
    with pytest.raises(KeyError, match="'nothing' was not part of run"):
        results["nothing"]


def test_resume_reruns_a_failed_run_linked_to_it(home: Path) -> None:
    state = {"fail": True}

    @node
    def fragile(x):
        if state["fail"]:
            raise RuntimeError("first time")
        return x * 10

    def build():
        with Workflow("resume") as wf:
            out = fragile(value(4))
        return wf, out

    wf, _ = build()
    failed = wf.execute(raise_on_error=False)
    state["fail"] = False
    wf, out = build()
    resumed = wf.execute(resume=failed.run_id)
    assert resumed[out] == 40
    assert resumed.statuses == {"value": "cached", "fragile": "succeeded"}
    with Journal(home / "journal.db") as journal:
        assert journal.get_run(resumed.run_id)["resumed_from"] == failed.run_id
        count = len(journal.list_runs())
    wf, out = build()
    noop = wf.execute(resume=resumed.run_id)  # it succeeded: nothing to do
    assert noop.run_id == resumed.run_id and noop.executed == 0 and noop[out] == 40
    with Journal(home / "journal.db") as journal:
        assert len(journal.list_runs()) == count


def test_each_attempt_keeps_what_it_printed_and_logged(home: Path) -> None:
    import logging

    tries = {"n": 0}

    @node(retries=1)
    def chatty():
        tries["n"] += 1
        print(f"hello from attempt {tries['n']}")
        logging.getLogger("user.code").warning("careful, attempt %d", tries["n"])
        if tries["n"] == 1:
            raise ValueError("first fails")
        return 1

    with Workflow("chatty") as wf:
        chatty()
    results = wf.execute()
    r = rows(home, results.run_id)["chatty"]
    assert "hello from attempt 1" in r[0]["output"] and "careful, attempt 1" in r[0]["output"]
    assert "hello from attempt 2" in r[1]["output"]
    assert "attempt 1" not in r[1]["output"]


def test_a_killed_process_worker_fails_its_node_and_the_run_goes_on() -> None:
    @node
    def dies():
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    with Workflow("dead-worker", keep_going=True) as wf:
        dies()
        later = [value(i) for i in range(3)]
    results = wf.execute(backend="processes", max_workers=1, raise_on_error=False)
    assert results.statuses["dies"] == "failed"
    assert "WorkerDiedError" in results.errors["dies"] and "SIGKILL" in results.errors["dies"]
    assert [results[v] for v in later] == [0, 1, 2]


def test_plan_from_python_says_what_would_run_and_writes_nothing(home: Path) -> None:
    def build(n: int) -> Workflow:
        with Workflow("planned") as wf:
            add(value(n), 1)
        return wf

    before = build(1).plan()
    assert [(n.node, n.action) for n in before.nodes] == [("value", "run"), ("add", "run")]
    assert not home.exists()  # planning creates nothing
    build(1).execute()
    after = build(1).plan()
    assert after.to_run == [] and len(after.cached) == 2
    changed = build(2).plan()
    assert changed.to_run == ["value", "add"]
    assert changed.nodes[0].reason.startswith("param x: 1 → 2")
    assert changed.nodes[1].reason == "upstream 'value' runs first"
