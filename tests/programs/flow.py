"""A workflow run as a subprocess by the crash and concurrency tests.

    python tests/programs/flow.py [--variant a|b] [--workers N]

Variant ``a`` has 36 nodes: ``source`` (a large array) fans out to ten ``branch:K`` (large
arrays, stored as files in ``objects/``), each followed by a chain ``stats:K`` → ``scale:K``
(small, inline in the journal); ``join`` joins the ten chains; ``mix`` (large) combines two
branches; ``report`` joins ``join`` and ``mix``; ``chain:1`` (large) → ``chain:2`` (small).
Variant ``b`` (22 nodes) shares ``source``, ``branch:0-4``, ``stats:0-4`` and ``scale:0-4``
with ``a`` (same code, same inputs: same keys) and adds ``extra:0-4`` and ``join-b``.

Every node body first appends ``"<label> <pid>"`` to the executions log, then works a little.
Node names are their labels. The environment steers it (read inside the bodies, so it is not
part of any key):

- ``EF_TEST_LOG``: the executions log (required).
- ``EF_TEST_BARRIER``: a folder; write ``ready-<pid>`` there and wait for ``go`` before running.
- ``EF_TEST_BLOCK`` / ``EF_TEST_BLOCK_RELEASE``: the node with that label waits (up to 60 s)
  for the release file to exist.
- ``EF_TEST_SUICIDE``: the node with that label SIGKILLs its own process after logging.
- ``EF_TEST_WORK_SECONDS``: how long each body works (default 0.01 s).

The last line printed is a JSON summary: run id, status, executed and cached counts, and a
summary of every node's output value (arrays by dtype, shape and SHA-256 of their bytes).
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from etherealfabric import Workflow, node

ROWS = 20_000  # float64: 160 kB, well over the 64 KiB inline limit
WORK_SECONDS = 0.01


def _started(label: str) -> None:
    """Log the start of a node body (one O_APPEND write, fsynced), then obey the test's orders."""
    fd = os.open(os.environ["EF_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{label} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.environ.get("EF_TEST_SUICIDE") == label:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("EF_TEST_BLOCK") == label:
        release = Path(os.environ["EF_TEST_BLOCK_RELEASE"])
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(float(os.environ.get("EF_TEST_WORK_SECONDS", WORK_SECONDS)))


@node
def source(label: str, rows: int) -> np.ndarray:
    _started(label)
    return np.sin(np.arange(rows, dtype=np.float64) / 7.0) * 100.0


@node
def branch(label: str, data: np.ndarray, k: int) -> np.ndarray:
    _started(label)
    return data * (k + 1) + np.cos(data + k)


@node
def stats(label: str, values: np.ndarray) -> dict:
    _started(label)
    return {
        "sum": round(float(values.sum()), 6),
        "max": round(float(values.max()), 6),
        "n": int(values.size),
    }


@node
def scale(label: str, summary: dict, factor: float) -> float:
    _started(label)
    return round(summary["sum"] * factor + summary["max"], 6)


@node
def join(label: str, parts: list) -> dict:
    _started(label)
    return {"total": round(sum(parts), 6), "count": len(parts)}


@node
def mix(label: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    _started(label)
    return np.sqrt(np.abs(left * right))


@node
def report(label: str, joined: dict, mixed: np.ndarray) -> dict:
    _started(label)
    return {"total": joined["total"], "mix_mean": round(float(mixed.mean()), 6)}


@node
def thin(label: str, values: np.ndarray) -> np.ndarray:
    _started(label)
    return values[::2] * 2.0


@node
def extra(label: str, values: np.ndarray, k: int) -> list:
    _started(label)
    return [round(float(v), 6) for v in values[k : k + 5]]


def _name(ref, label: str, wf: Workflow):
    wf.add_node(ref.node, name=label)
    return ref


def build(variant: str, workers: int) -> Workflow:
    wf = Workflow(f"flow-{variant}", max_workers=workers)
    with wf:
        src = _name(source("source", ROWS), "source", wf)
        count = 10 if variant == "a" else 5
        branches, scaled = [], []
        for k in range(count):
            b = _name(branch(f"branch:{k}", src, k), f"branch:{k}", wf)
            s = _name(stats(f"stats:{k}", b), f"stats:{k}", wf)
            scaled.append(_name(scale(f"scale:{k}", s, 0.5 + k), f"scale:{k}", wf))
            branches.append(b)
        if variant == "a":
            joined = _name(join("join", scaled), "join", wf)
            mixed = _name(mix("mix", branches[0], branches[9]), "mix", wf)
            _name(report("report", joined, mixed), "report", wf)
            thinned = _name(thin("chain:1", mixed), "chain:1", wf)
            _name(stats("chain:2", thinned), "chain:2", wf)
        else:
            _name(join("join-b", scaled), "join-b", wf)
            for k, b in enumerate(branches):
                _name(extra(f"extra:{k}", b, k), f"extra:{k}", wf)
    return wf


def describe(value: object) -> object:
    """A JSON-able summary of an output value."""
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return {"dtype": str(value.dtype), "shape": list(value.shape), "sha256": digest}
    return value


def wait_at_barrier(folder: Path) -> None:
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("flow.py: nobody opened the barrier within 120 s")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=["a", "b"], default="a")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the tests ask for stacks on a hang
    wf = build(args.variant, args.workers)
    barrier = os.environ.get("EF_TEST_BARRIER")
    if barrier:
        wait_at_barrier(Path(barrier))
    results = wf.execute()
    values = {name: describe(results[name]["result"]) for name in sorted(results.statuses)}
    summary = {
        "run_id": results.run_id,
        "pid": os.getpid(),
        "status": results.status,
        "executed": results.executed,
        "cached": results.cached,
        "statuses": results.statuses,
        "values": values,
    }
    print(json.dumps(summary, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
