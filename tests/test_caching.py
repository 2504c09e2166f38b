"""Incremental runs: what runs again, what does not, and what the journal says about it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from etherealfabric import (
    Node,
    RetryPolicy,
    RunFailedError,
    SerializationError,
    UnknownBackendError,
    Workflow,
    node,
)
from etherealfabric.journal._journal import Journal

CALLS: dict[str, int] = {}
LOCK = threading.Lock()


def count(name: str) -> None:
    with LOCK:
        CALLS[name] = CALLS.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@node
def source(n):
    count("source")
    return list(range(n))


@node
def parity(values):
    count("parity")
    return sum(values) % 2


@node
def report(p, label):
    count("report")
    return f"{label}: {p}"


def build(n: int, label: str = "sum parity") -> tuple[Workflow, object]:
    with Workflow("incremental") as wf:
        out = report(parity(source(n)), label)
    return wf, out


def test_second_run_executes_nothing() -> None:
    wf, out = build(10)
    first = wf.execute()
    assert (first.executed, first.cached) == (3, 0)
    assert first[out] == "sum parity: 1"
    second = build(10)[0].execute()
    assert (second.executed, second.cached) == (0, 3)
    assert CALLS == {"source": 1, "parity": 1, "report": 1}


def test_changed_parameter_reruns_the_node_and_only_what_depends_on_it() -> None:
    build(10)[0].execute()
    CALLS.clear()
    results = build(10, label="parity")[0].execute()
    assert CALLS == {"report": 1}
    assert results.statuses == {"source": "cached", "parity": "cached", "report": "succeeded"}


def test_early_cutoff_identical_upstream_output_does_not_rerun_downstream() -> None:
    build(10)[0].execute()  # sum 45: parity 1
    CALLS.clear()
    results = build(12)[0].execute()  # sum 66: parity 0 -> report re-runs
    assert CALLS == {"source": 1, "parity": 1, "report": 1}
    CALLS.clear()
    results = build(13)[0].execute()  # sum 78: parity 0 again -> report is cached
    assert CALLS == {"source": 1, "parity": 1}
    assert results.statuses["report"] == "cached"


def test_failure_blocks_descendants_and_is_recorded(home: Path) -> None:
    @node
    def boom(x):
        raise ValueError(f"bad value {x}")

    with Workflow("fails") as wf:
        b = boom(1)
        after = parity([b])
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    err = info.value
    assert "boom" in str(err) and "ValueError: bad value 1" in str(err)
    assert err.results.statuses == {"boom": "failed", "parity": "upstream_failed"}
    assert err.__cause__.node == "boom"
    assert isinstance(err.__cause__.original, ValueError)
    assert after not in err.results
    with Journal(home / "journal.db") as journal:
        run = journal.list_runs()[0]
        assert run["status"] == "failed" and run["failed"] == 1
        rows = {r["node"]: r for r in journal.node_runs(run["id"])}
        assert rows["boom"]["status"] == "failed"
        assert "ValueError: bad value 1" in rows["boom"]["error"]
        assert "raise ValueError" in rows["boom"]["traceback"]
        assert rows["parity"]["status"] == "upstream_failed"


def test_raise_on_error_false_returns_failed_results() -> None:
    @node
    def boom():
        raise RuntimeError("nope")

    with Workflow("soft") as wf:
        boom()
    results = wf.execute(raise_on_error=False)
    assert results.status == "failed" and results.failed == 1
    assert "RuntimeError: nope" in results.errors["boom"]


def test_retries_record_each_attempt(home: Path) -> None:
    attempts = {"n": 0}

    @node(retries=RetryPolicy(retries=3, backoff=0.0))
    def flaky():
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError(f"try {attempts['n']}")
        return "ok"

    with Workflow("flaky") as wf:
        out = flaky()
    results = wf.execute()
    assert results[out] == "ok"
    with Journal(home / "journal.db") as journal:
        rows = journal.node_runs(results.run_id)
    assert [(r["attempt"], r["status"]) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "succeeded"),
    ]
    assert rows[0]["error"] == "ConnectionError: try 1"


def test_retries_exhausted_names_attempts() -> None:
    @node(retries=2)
    def always():
        raise KeyError("k")

    with Workflow("exhaust") as wf:
        always()
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    assert info.value.__cause__.attempts == 3
    assert "failed after 3 attempts" in str(info.value.__cause__)


def test_unserializable_output_names_node_output_and_type() -> None:
    @node(serializers={"result": "json"})
    def lock():
        return threading.Lock()

    with Workflow("unser") as wf:
        lock()
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    cause = info.value.__cause__.original
    assert isinstance(cause, SerializationError)
    assert cause.node == "lock" and cause.output == "result"
    assert "lock" in str(cause)


def test_unknown_backend_from_environment_lists_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "sparkle")
    wf, _ = build(3)
    with pytest.raises(UnknownBackendError) as info:
        wf.execute()
    assert "sparkle" in str(info.value) and "ETHEREALFABRIC_EXECUTION_BACKEND" in str(info.value)
    assert "local" in info.value.known and "processes" in info.value.known


def test_an_unknown_backend_is_refused_when_the_workflow_is_made() -> None:
    """`Workflow(backend=...)` is checked at once (before: only at `execute()`), naming the
    argument, the value, the closest backend and every known one; `execute(backend=...)`
    names itself."""
    with pytest.raises(UnknownBackendError) as info:
        Workflow("typo", backend="thread")
    message = str(info.value)
    assert "Workflow(backend=...)" in message and "'thread'" in message
    assert "did you mean 'threads'?" in message
    assert "local" in info.value.known and "processes" in info.value.known
    assert Workflow("fine", backend=" Threads ").settings["backend"] == " Threads "
    wf, _ = build(3)
    with pytest.raises(UnknownBackendError, match=r"'nope' \(from execute\(backend=\.\.\.\)\)"):
        wf.execute(backend="nope")


def test_home_argument_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "from-env"))
    build(3)[0].execute()
    assert (tmp_path / "from-env" / "journal.db").exists()
    wf, _ = build(3)
    wf.settings["home"] = tmp_path / "explicit"
    wf.execute()
    assert (tmp_path / "explicit" / "journal.db").exists()
    assert not (tmp_path / ".etherealfabric").exists()


class Matrix(Node):
    serializers = {"m": "npy"}  # noqa: RUF012

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.outputs = ["m"]

    def run(self):
        return {"m": np.arange(self.n * self.n, dtype=np.float64).reshape(self.n, self.n)}


class Reduce(Node):
    def __init__(self, m, how):
        super().__init__()
        self.m, self.how = m, how
        self.outputs = ["value"]

    def run(self):
        return {"value": float(getattr(np, self.how)(self.m))}


def test_large_outputs_live_in_the_store_and_small_ones_inline(home: Path) -> None:
    big = Matrix(200)  # 320 KB: above the inline limit
    wf = Workflow("arrays")
    reductions = [wf.add_node(Reduce(big.outputs["m"], how)) for how in ("sum", "max")]
    results = wf.execute()
    assert results[reductions[0]]["value"] == float(np.arange(40000).sum())
    record = results.record("Matrix")["m"]
    assert record["serializer"] == "npy" and not record["inline"]
    obj = home / "objects" / record["digest"][:2] / record["digest"]
    assert obj.exists() and obj.stat().st_size == record["size"]
    assert results.record("Reduce")["value"]["inline"]


def test_warm_results_load_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    from etherealfabric.run._cache import ArtifactCache

    def build_wf() -> tuple[Workflow, list[Node]]:
        big = Matrix(100)
        wf = Workflow("lazy")
        return wf, [wf.add_node(Reduce(big.outputs["m"], h)) for h in ("sum", "min")]

    build_wf()[0].execute()
    loaded: list[str] = []
    original = ArtifactCache.load

    def spy(self, record):
        loaded.append(record["serializer"])
        return original(self, record)

    monkeypatch.setattr(ArtifactCache, "load", spy)
    wf, reds = build_wf()
    results = wf.execute()
    assert results.executed == 0 and loaded == []
    assert results[reds[1]]["value"] == 0.0
    assert loaded == ["json"]  # only the reduction, never the matrix


def test_corrupt_object_is_detected_and_recomputed(home: Path) -> None:
    def run() -> tuple[object, Workflow]:
        big = Matrix(150)
        wf = Workflow("corrupt")
        red = wf.add_node(Reduce(big.outputs["m"], "sum"))
        return red, wf

    red, wf = run()
    record = wf.execute().record("Matrix")["m"]
    path = home / "objects" / record["digest"][:2] / record["digest"]
    path.unlink()
    red, wf = run()
    results = wf.execute()
    assert results.statuses["Matrix"] == "succeeded"  # missing object: recomputed
    assert path.exists()
    assert results[red]["value"] == float(np.arange(150 * 150).sum())


def test_process_backend_gives_the_same_results() -> None:
    wf, out = build(50)
    results = wf.execute(backend="processes", max_workers=2)
    assert results[out] == "sum parity: 1"
    assert results.executed == 3
    again = build(50)[0].execute()
    assert again.cached == 3


def test_event_subscribers_see_the_run() -> None:
    seen: list[tuple[str, str | None]] = []
    wf, _ = build(5)
    wf.execute(subscribers=[lambda e: seen.append((e.kind, e.node))])
    kinds = [k for k, _ in seen]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert ("node_succeeded", "report") in seen
    seen.clear()
    build(5)[0].execute(subscribers=[lambda e: seen.append((e.kind, e.node))])
    assert [k for k, _ in seen].count("node_cached") == 3
