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
