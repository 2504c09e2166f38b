"""Short tasks run in the scheduler's thread when nothing could run beside them (run/_inline.py).

On the threads backend a definition that ran before in the run, always briefly, runs its next
nodes in the scheduler's own thread while no other node runs or is ready: a chain of trivial
nodes pays no thread hand-off per node. Everything else is as before: results, journal rows,
cache hits on the next run, captured output, failures, retries, Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from etherealfabric import RetryPolicy, Workflow, node
from etherealfabric.journal import Journal
from etherealfabric.run import _inline
from etherealfabric.states import NodeStatus

WHERE: list[tuple[str, bool]] = []  # (what ran, whether in the scheduler's (main) thread)


def _here(what: str) -> None:
    WHERE.append((what, threading.current_thread() is threading.main_thread()))


@node
def leaf(i):
    _here(f"leaf {i}")
    return i


@node
def inc(x):
    _here(f"inc {x}")
    return x + 1


@node
def slow_inc(x):
    _here(f"slow_inc {x}")
    time.sleep(0.4)  # over INLINE_SECONDS below
    return x + 1


@node(timeout=30)
def bounded_inc(x):
    _here(f"bounded_inc {x}")
    return x + 1


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    WHERE.clear()
    # "short" whatever the machine's load: a busy machine (load 15 on 2 cores) may take tens of
    # milliseconds over a trivial node, and one slow inline run ends the chain's inlining
    monkeypatch.setattr(_inline, "INLINE_SECONDS", 0.3)


def _chain(name: str, step, n: int) -> Workflow:  # type: ignore[no-untyped-def]
    with Workflow(name) as wf:
        x = leaf(0)
        for _ in range(n):
            x = step(x)
        wf.add_node(x.node, name="last")
    return wf


def test_a_chain_of_short_nodes_runs_in_the_scheduler_thread_after_the_first(home: Path) -> None:
    results = _chain("inline-chain", inc, 20).execute()
    assert (results.executed, results["last"]["result"]) == (21, 20)
    inline = dict(WHERE)
    # a definition's first node measures it on a worker thread; the rest run inline
    assert inline["leaf 0"] is False and inline["inc 0"] is False
    assert all(inline[f"inc {i}"] for i in range(1, 20)), WHERE
    # the journal holds the same rows and records as a threaded run's: the next run is cached
    again = _chain("inline-chain", inc, 20).execute()
    assert (again.executed, again.cached, again["last"]["result"]) == (0, 21, 20)
    with Journal(home / "journal.db", read_only=True) as journal:
        rows = journal._rows("SELECT status, count(*) AS n FROM node_runs GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"succeeded": 21, "cached": 21}


def test_a_definition_that_takes_long_never_runs_inline(home: Path) -> None:
    results = _chain("inline-slow", slow_inc, 4).execute()
    assert results["last"]["result"] == 4
    assert [here for what, here in WHERE if what.startswith("slow_inc")] == [False] * 4


def test_a_node_with_a_timeout_never_runs_inline(home: Path) -> None:
    results = _chain("inline-timeout", bounded_inc, 5).execute()
    assert results["last"]["result"] == 5
    assert [here for what, here in WHERE if what.startswith("bounded")] == [False] * 5


def test_other_backends_and_a_fan_out_run_on_their_workers(home: Path) -> None:
    # a fan-out: several nodes ready at once run side by side on the pool, never inline
    with Workflow("inline-fanout") as wf:
        root = leaf(0)
        for i in range(8):
            inc(root)  # one key for all eight: computed once, the others wait for it
            leaf(i + 1)
    results = wf.execute()
    assert results.executed == 10
    assert not any(here for what, here in WHERE), WHERE


FLAKES: list[int] = []


def _flaky(x):
    _here(f"flaky {x}")
    FLAKES.append(x)
    if FLAKES.count(x) == 1 and x >= 2:
        raise OSError(f"flake at {x}")
    return x + 1


@node
def flaky_inc(x):
    return _flaky(x)


@node(retries=RetryPolicy(retries=1))
def retried_inc(x):
    return _flaky(x)


def test_failures_and_retries_of_an_inline_node_are_reported_as_usual(home: Path) -> None:
    FLAKES.clear()
    results = _chain("inline-retry", retried_inc, 4).execute()
    assert results["last"]["result"] == 4
    assert FLAKES == [0, 1, 2, 2, 3, 3]
    assert dict(WHERE)["flaky 3"] is True  # ran inline, its retry too
    # an error without retries fails the node, not the run's machinery, and blocks the rest
    FLAKES.clear()
    WHERE.clear()
    results = _chain("inline-fail", flaky_inc, 4).execute(raise_on_error=False)
    failed = [n for n, s in results.statuses.items() if s == NodeStatus.FAILED]
    assert len(failed) == 1 and "flake at 2" in results.errors[failed[0]], results.errors
    assert results.statuses["last"] == NodeStatus.UPSTREAM_FAILED
    # (leaf 0 is cached from the workflow before) the failing node ran inline
    assert WHERE == [("flaky 0", False), ("flaky 1", True), ("flaky 2", True)]


@node
def interrupting_inc(x, flag):
    _here(f"interrupting_inc {x}")
    if x == 5 and not os.path.exists(flag):  # (once: the flag says it was done)
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, while the node runs
        time.sleep(5)  # interrupted here when it runs in the scheduler's (main) thread
    return x + 1


def test_ctrl_c_during_an_inline_node_interrupts_the_run_and_the_next_run_resumes(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a flag named without a suffix or a folder: not taken for a path the nodes look for (a
    # path that appears after a node ran, as this one does, would rightly re-run the node)
    monkeypatch.chdir(tmp_path)
    flag = "interrupted"

    def chain() -> Workflow:
        with Workflow("inline-ctrl-c") as wf:
            x = leaf(0)
            for _ in range(8):
                x = interrupting_inc(x, flag)
            wf.add_node(x.node, name="last")
        return wf

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        chain().execute()
    assert time.monotonic() - started < 4  # the node itself was interrupted, not waited for
    assert dict(WHERE)["interrupting_inc 5"] is True
    with Journal(home / "journal.db", read_only=True) as journal:
        run = journal._rows("SELECT id, status FROM runs ORDER BY started_at DESC LIMIT 1")[0]
        rows = journal._rows("SELECT node, status FROM node_runs WHERE run_id = ?", (run["id"],))
    assert run["status"] == "cancelled"
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["cancelled"] * 3 + ["succeeded"] * 6, rows  # leaf, 0..4 | 5, 6, last
    # the next run reuses what the interrupted one finished, and runs the rest
    WHERE.clear()
    results = chain().execute()
    assert (results.executed, results.cached, results["last"]["result"]) == (3, 6, 8)
