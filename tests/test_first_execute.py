"""The one-off cost of a process's first ``execute`` (issue 14): what it imports.

Almost all of what the first execute costs more than the second is importing the run
machinery. A warm run of plain values (a new process, every node cached) must not import the
stdlib modules only rare paths need: ``socket`` and ``random`` (asked about only when a value
or a function's code could hold one, i.e. when they are imported already), ``shutil`` (and
with it ``bz2`` and ``lzma``: clearing a declared output folder), ``signal`` (the process
backend's), ``concurrent.futures.thread`` (the shared store's prefetch) and ``glob`` (a path
pattern read natively). Nor, when nothing has to run, the engine's parts that only running
a node needs: the worker, the task builder, the output capture, the hand-overs... (the
scheduler imports them when the first node of a run is submitted). Nor, even in a cold
run, the parts that only some values or settings need (issue 15). Each check runs in a
fresh interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

#: stdlib modules a warm run of plain values has no use for
AVOIDABLE = (
    "socket",
    "random",
    "shutil",
    "bz2",
    "lzma",
    "signal",
    "concurrent.futures.thread",
    "glob",
)

#: the run machinery only running a node needs (a cold run imports them, a warm one does not)
EXECUTION_ONLY = (
    *(
        f"etherealfabric.run.{name}"
        for name in ("_worker", "_messages", "_tasks", "_capture", "_handover", "_inline", "_lost")
    ),
    "etherealfabric.store._loading",  # (values are loaded only for a node that runs)
)

#: the engine's parts only some values or settings need, imported where they are used (issue
#: 15): pandas/pyarrow/polars hashers, library callables that hold user functions, paths in
#: parameters or read constants, parameters other than plain scalars, a shared store's leases
RARE_VALUES_ONLY = tuple(
    f"etherealfabric.{name}"
    for name in (
        "hashing._frames",
        "hashing._held",
        "hashing._paths",
        "hashing._values",
        "store._leases",
    )
)

PROGRAM = r"""
import json, sys
from etherealfabric import Workflow, node

@node
def leaf(i):
    return i

@node
def step(x):
    return x + 1

with Workflow("first-execute") as wf:
    x = leaf(0)
    for _ in range(5):
        x = step(x)
results = wf.execute()
print(json.dumps({"executed": results.executed, "cached": results.cached,
                  "modules": sorted(sys.modules)}))
"""


def _run(home: Path) -> dict[str, object]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home), "ETHEREALFABRIC_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_a_warm_first_execute_imports_no_rare_path_stdlib_module(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cold = _run(home)
    warm = _run(home)
    assert (cold["executed"], warm["executed"], warm["cached"]) == (6, 0, 6)
    for report in (cold, warm):
        modules = report["modules"]
        assert isinstance(modules, list)
        assert sorted(set(AVOIDABLE) & set(modules)) == []


def test_a_warm_run_imports_no_part_that_only_running_a_node_needs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cold = _run(home)
    warm = _run(home)
    assert (cold["executed"], warm["executed"]) == (6, 0)
    cold_modules, warm_modules = cold["modules"], warm["modules"]
    assert isinstance(cold_modules, list) and isinstance(warm_modules, list)
    assert sorted(set(EXECUTION_ONLY) - set(cold_modules)) == []  # (the names are real)
    assert sorted(set(EXECUTION_ONLY) & set(warm_modules)) == []


def test_a_cold_run_of_plain_values_imports_no_part_that_only_rarer_values_need(
    tmp_path: Path,
) -> None:
    cold = _run(tmp_path / "home")
    assert cold["executed"] == 6
    modules = cold["modules"]
    assert isinstance(modules, list)
    assert all(importlib.util.find_spec(name) for name in RARE_VALUES_ONLY)  # (real names)
    assert sorted(set(RARE_VALUES_ONLY) & set(modules)) == []
