"""What each extra node of a cold run costs once everything is imported (issue 15), counted
in Python function calls: a count that a busy machine does not change, unlike a time.

The calls of a run of N nodes minus those of a run of fewer nodes, over the difference, are
each node's calls (the scheduler's, the worker's, the journal recorder's, in every thread).
Group commits, lease polls and heartbeats are timed: their windows are widened here so that
both runs commit once, at their end, and the count depends on the work only. The budgets are
a few percent above what the code makes; an added layer per node shows as a failure here."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from etherealfabric import Workflow, node
from etherealfabric.run import _inline, _scheduler
from etherealfabric.run._inline import Settled
from etherealfabric.run._texts import _held_texts, argument_strings, defaults_used

#: Python calls per node of a cold run of trivial nodes, a chain and a fan-out (the code made
#: 254 and 300 when these were set; before issue 15's second pass, 309 and 352; 259 and 310 on
#: 2026-12-07, where a busy CI machine counted 314.7 for the fan-out: its threads' waits loop
#: more, so the fan-out's budget has a little more room)
CHAIN_BUDGET, FANOUT_BUDGET = 268, 320


@node
def leaf(i: int) -> int:
    return i


@node
def step(x: int) -> int:
    return x + 1


@node
def item(root: int, i: int) -> int:
    return root + i


@node
def gather(xs: list[int]) -> int:
    return len(xs)


def _workflow(shape: str, n: int) -> Workflow:
    with Workflow(f"{shape}-{n}") as wf:
        if shape == "chain":
            x = leaf(0)
            for _ in range(n - 1):
                x = step(x)
        else:
            root = leaf(0)
            gather([item(root, i) for i in range(n)])
    return wf


def _calls(shape: str, n: int, home: Path) -> int:
    """The Python calls, in every thread, of a cold run of ``n`` nodes in ``home``."""
    wf = _workflow(shape, n)
    count = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            count[0] += 1

    threading.setprofile(profile)  # (the pool's threads start in the run)
    sys.setprofile(profile)
    try:
        results = wf.execute(home=home, log_level="WARNING")
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert results.executed == (n if shape == "chain" else n + 2)
    return count[0]


@pytest.mark.parametrize(("shape", "budget"), [("chain", CHAIN_BUDGET), ("fanout", FANOUT_BUDGET)])
def test_each_node_of_a_cold_run_makes_few_python_calls(
    shape: str, budget: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GROUP_SECONDS", "FLUSH_SECONDS", "LEASE_POLL_SECONDS", "LEASE_RENEW_SECONDS"):
        monkeypatch.setattr(_scheduler, name, 3600.0)
    monkeypatch.setattr(_inline, "INLINE_SECONDS", 3600.0)  # a slow machine's nodes too
    _calls(shape, 3, tmp_path / "imports")  # imports, and each definition's first run
    per_node = []
    for round_ in range(2):  # (the first makes the journal's statements of each size)
        few = _calls(shape, 20, tmp_path / f"few{round_}")
        many = _calls(shape, 120, tmp_path / f"many{round_}")
        per_node.append((many - few) / 100)
    assert per_node[-1] <= budget, f"{per_node[-1]:.1f} Python calls per node (budget {budget})"


def test_argument_texts_of_numbers_and_bytes_are_none_without_looking_at_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = (1, 2.5, True, None, 1j, b"data.csv")
    assert [t for v in values for t in _held_texts(v)] == []  # what the general path finds

    def looked_at(value: object, depth: int = 0) -> Any:
        raise AssertionError(f"{value!r} was looked at")

    monkeypatch.setattr("etherealfabric.run._texts._held_texts", looked_at)
    assert argument_strings(values, {"n": 3, "raw": b"x"}) == []


def test_argument_texts_of_mixed_values_are_the_general_paths() -> None:
    args, kwargs = (1, "data/sales.csv", [2, "b.parquet"], None), {"n": 3, "out": "x.txt"}
    general = [t for v in (*args, *kwargs.values()) for t in _held_texts(v)]
    assert argument_strings(args, kwargs) == general == ["data/sales.csv", "b.parquet", "x.txt"]


def test_defaults_used_without_defaults_and_with_them() -> None:
    def plain(a: int, b: int) -> int:
        return a + b

    def with_defaults(a: int, path: str = "x.csv", *, mode: str = "r") -> str:
        return path + mode

    assert defaults_used(plain, (1,), {}) == []
    assert defaults_used(with_defaults, (1,), {}) == ["x.csv", "r"]
    assert defaults_used(with_defaults, (1, "y.csv"), {"mode": "w"}) == []


def test_a_settled_inline_future_gives_its_result_or_error_to_callbacks() -> None:
    seen: list[object] = []
    future = Settled()
    future.add_done_callback(seen.append)  # before it is settled: called when it is
    assert seen == []
    with pytest.raises(RuntimeError):
        future.result()
    future.settle(None, ValueError("boom"))
    assert seen == [future]
    with pytest.raises(ValueError, match="boom"):
        future.result()
    future.add_done_callback(seen.append)  # after: at once
    assert seen == [future, future]
