"""A global rebound in the same process changes the keys of the nodes that read it.

In a notebook, a cell that rebinds ``THRESHOLD = 0.7`` or redefines a helper, then executes the
workflow again, must not get the result computed with the old value: the code fingerprint is
memoized per function, and each graph build checks that the names it read are still bound to
the objects it hashed (``hashing/_fingerprint.py``, ``recheck_bindings``).
"""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from etherealfabric import Workflow, node
from etherealfabric.errors import FingerprintWarning

THRESHOLD = 0.5
WEIGHTS = np.arange(4, dtype=np.float64)


def helper(x):
    return x + 1


@node
def scaled(x):
    return x * THRESHOLD


@node
def helped(x):
    return helper(x)


@node
def weighted(x):
    return float((WEIGHTS * x).sum())


def _run(fn, home: Path):  # type: ignore[no-untyped-def]
    with Workflow("rebinding") as wf:
        fn(10)
    results = wf.execute(home=home)
    return results.executed, results[wf.nodes[-1]]["result"]


def test_a_rebound_global_changes_the_key_and_rebinding_it_back_hits(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sys.modules[__name__]
    assert _run(scaled, home) == (1, 5.0)
    assert _run(scaled, home) == (0, 5.0)  # nothing rebound: cached
    monkeypatch.setattr(module, "THRESHOLD", 0.7)  # a notebook cell: THRESHOLD = 0.7
    assert _run(scaled, home) == (1, 7.0)
    monkeypatch.setattr(module, "THRESHOLD", 0.5)  # and back: the first result again
    assert _run(scaled, home) == (0, 5.0)


def test_a_redefined_helper_changes_the_key_of_the_nodes_that_call_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(helped, home) == (1, 11)
    namespace: dict[str, object] = {}
    exec("def helper(x):\n    return x + 2\n", namespace)  # a cell defining it again
    monkeypatch.setattr(sys.modules[__name__], "helper", namespace["helper"])
    with pytest.warns(FingerprintWarning, match=r"no source for \?\.helper"):  # keyed by bytecode
        assert _run(helped, home) == (1, 12)


def test_a_rebound_array_is_not_kept_alive_by_the_fingerprint(home: Path) -> None:
    module = sys.modules[__name__]
    original = module.WEIGHTS
    try:
        module.WEIGHTS = old = np.ones(4)  # (not monkeypatch: its undo would hold the array)
        assert _run(weighted, home) == (1, 40.0)
        gone = weakref.ref(old)
        del old
        module.WEIGHTS = np.full(4, 2.0)
        gc.collect()
        assert gone() is None  # the fingerprint held the array weakly
        assert _run(weighted, home) == (1, 80.0)
    finally:
        module.WEIGHTS = original


LOOKUP = {"a": 1.0, "tags": ["x"]}
ITEMS = [1, 2]
BIG = list(range(20_000))  # more than MAX_CHECKED values: as first analysed in the process


@node
def priced(x):
    return x * LOOKUP["a"] + sum(ITEMS) + len(LOOKUP["tags"])


@node
def summed(x):
    return x + sum(BIG)


def test_a_small_global_changed_in_place_changes_the_key(home: Path) -> None:
    """A notebook cell ``LOOKUP["a"] = 2.0`` (not a rebinding: the same dict) then a run got
    the result computed with the old content from the cache: small containers of plain values
    are checked again at each run (``hashing/_bindings.py``)."""
    assert _run(priced, home) == (1, 14.0)
    assert _run(priced, home) == (0, 14.0)
    LOOKUP["a"] = 2.0
    try:
        assert _run(priced, home) == (1, 24.0)
        ITEMS.append(3)
        assert _run(priced, home) == (1, 27.0)
        LOOKUP["tags"].append("y")  # nested: a list inside the dict
        assert _run(priced, home) == (1, 28.0)
        assert _run(priced, home) == (0, 28.0)
    finally:
        LOOKUP["a"], LOOKUP["tags"] = 1.0, ["x"]
        ITEMS.pop()
    assert _run(priced, home) == (0, 14.0)  # back as it was: the first result, from the cache
    before = _run(summed, home)
    BIG.append(1)  # too large to be checked at each run: documented
    try:
        assert _run(summed, home) == (0, before[1])
    finally:
        BIG.pop()


SEEN: list[int] = []


@node
def noted(x):
    SEEN.append(x)  # the node changes a global it reads: no change for the next run
    return len(SEEN) * 0 + x


def test_a_global_the_nodes_change_themselves_is_no_change(home: Path) -> None:
    assert _run(noted, home) == (1, 10)
    assert _run(noted, home) == (0, 10)  # SEEN grew during the first run: still a hit
    SEEN[:] = [99]
    assert _run(noted, home) == (1, 10)  # changed between runs (a notebook cell): a miss
    SEEN.clear()
    assert _run(noted, home) == (0, 10)  # as when first keyed: that run's result
