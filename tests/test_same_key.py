"""Two nodes of one run with the same key: the work is done once (run/_samekey.py).

``[transform(df, name) for name in names]`` with a repeated name, or two class nodes built
alike, have equal keys. Before, both were ready at once and both ran: the run's own leases
could not keep them apart. Every node body appends a line to an executions log, so the tests
count who really computed what, on a backend with threads and one with processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from etherealfabric import Node, Workflow, node
from etherealfabric.errors import RunFailedError

BACKENDS = ["threads", "processes"]


def _log(path: str, what: str) -> None:
    with open(path, "a") as f:
        f.write(f"{what}\n")


@node
def slow_double(x: int, log: str) -> int:
    _log(log, f"double {x}")
    time.sleep(0.3)  # the copies are all ready while the first one runs
    return 2 * x


@node
def add(xs: list[int]) -> int:
    return sum(xs)


@node
def fails(x: int, log: str) -> int:
    _log(log, f"fails {x}")
    time.sleep(0.2)
    raise ValueError(f"no good: {x}")


class Square(Node):
    def __init__(self, x: int, log: str) -> None:
        super().__init__()
        self.x, self.log = x, log
        self.outputs = ["y"]

    def run(self) -> dict[str, int]:
        _log(self.log, f"square {self.x}")
        time.sleep(0.3)
        return {"y": self.x * self.x}


def executions(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_keys_compute_once(tmp_path: Path, backend: str) -> None:
    log = str(tmp_path / "executions.log")
    with Workflow("twins") as wf:
        parts = [slow_double(x, log) for x in [1, 2, 1, 2, 1, 2, 1]]
        result = add(parts)
    results = wf.execute(backend=backend, max_workers=4)
    assert results[result] == 2 * (1 + 2 + 1 + 2 + 1 + 2 + 1)
    assert sorted(executions(Path(log))) == ["double 1", "double 2"]
    assert results.executed == 3  # double 1, double 2 and the sum
    assert results.cached == 5
    assert [results[p] for p in parts] == [2, 4, 2, 4, 2, 4, 2]


def test_class_nodes_built_alike_compute_once(tmp_path: Path) -> None:
    log = str(tmp_path / "executions.log")
    wf = Workflow("class-twins")
    squares = [wf.add_node(Square(3, log)) for _ in range(3)]
    results = wf.execute(max_workers=3)
    assert executions(Path(log)) == ["square 3"]
    assert [results[s]["y"] for s in squares] == [9, 9, 9]
    # the journal says which ran and which took the result
    statuses = sorted(s.value for s in results.statuses.values())
    assert statuses == ["cached", "cached", "succeeded"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failure_lets_the_waiting_nodes_run_on_their_own(tmp_path: Path, backend: str) -> None:
    """A failed first node hands nothing over: the others run (and here fail) themselves,
    each with its own error, and nothing is cached."""
    log = str(tmp_path / "executions.log")
    with Workflow("failing-twins") as wf:
        [fails(7, log) for _ in range(3)]
    with pytest.raises(RunFailedError):
        wf.execute(backend=backend, max_workers=3, keep_going=True)
    assert executions(Path(log)) == ["fails 7"] * 3
    results = wf.execute(backend=backend, max_workers=3, keep_going=True, raise_on_error=False)
    assert [s.value for s in results.statuses.values()] == ["failed"] * 3
    assert executions(Path(log)) == ["fails 7"] * 6  # failures are never cached


def test_fail_fast_cancels_the_waiting_nodes(tmp_path: Path) -> None:
    log = str(tmp_path / "executions.log")
    with Workflow("fail-fast-twins") as wf:
        [fails(7, log) for _ in range(3)]
    results = wf.execute(max_workers=3, raise_on_error=False)
    assert executions(Path(log)) == ["fails 7"]
    assert sorted(s.value for s in results.statuses.values()) == [
        "cancelled",
        "cancelled",
        "failed",
    ]


def test_a_second_run_finds_every_copy_cached(tmp_path: Path) -> None:
    log = str(tmp_path / "executions.log")
    with Workflow("twins-again") as wf:
        add([slow_double(5, log) for _ in range(4)])
    assert wf.execute().executed == 2
    again = wf.execute()
    assert (again.executed, again.cached) == (0, 5)
    assert executions(Path(log)) == ["double 5"]
