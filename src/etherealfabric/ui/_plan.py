"""``plan`` for the web UI: what a run's workflow would do now, asked of the CLI in a child
process.

A plan imports the workflow file (user code), hashes its inputs and looks keys up. The UI
server never imports user code itself: it runs ``etherealfabric plan FILE --json`` (which
writes nothing) in a child process, in the workflow file's folder, with the run's recorded
``--node`` targets and workflow parameters (``-p NAME=VALUE``: the plan of the run's own
parameters), and keeps the answer for a few seconds. Runs started from Python
(``workflow.execute()``) recorded no file and have no plan here (a 404), nor have runs whose
file is gone since (a 404); a planner that fails is an error status with its message (see
:class:`PlanFailed`), never a 200.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import EtherealFabricError

__all__ = ["PlanFailed", "plan_for"]

TIMEOUT = 120.0
KEEP = 10.0
_cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


class PlanFailed(EtherealFabricError):
    """The planner could not plan the run's workflow: ``status`` is the HTTP status to answer
    (422: the workflow file does not plan now, e.g. it no longer imports; 504: planning took
    too long; 500: the planner could not be run or answered no plan)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def plan_for(params: Mapping[str, Any], home: Path) -> dict[str, Any]:
    """The plan of the workflow a run recorded in ``params``; NotFound (a 404) when the run
    recorded no file to plan or its file is gone, :class:`PlanFailed` when the planner fails."""
    from ._views import NotFound

    target = params.get("target")
    if not target:
        raise NotFound(
            "this run was not started by `etherealfabric run FILE`, so no file to plan; "
            "run `etherealfabric plan FILE` on its workflow file instead"
        )
    path = Path(str(target).split(":")[0])
    if not path.is_file():
        raise NotFound(
            f"the workflow file this run was started from, {path}, is gone (moved or deleted), "
            "so there is nothing to plan; run `etherealfabric plan FILE` on where it is now"
        )
    nodes = [str(n) for n in params.get("nodes") or []]
    command = [sys.executable, "-m", "etherealfabric", "plan", str(target), "--json",
               "--home", str(home), *(a for n in nodes for a in ("--node", n)),
               *_param_options(params.get("workflow_params"))]  # fmt: skip
    key = tuple(command)
    with _lock:
        kept = _cache.get(key)
        if kept and time.monotonic() - kept[0] < KEEP:
            return kept[1]
    answer = _ask(command, path.parent)  # (PlanFailed: not kept, the next ask tries again)
    with _lock:
        _cache[key] = (time.monotonic(), answer)
    return answer


def _param_options(values: Any) -> list[str]:
    """``-p NAME=VALUE`` for each workflow parameter the run recorded (as ``cat``'s rerun
    hint writes them: a string as it is, anything else as JSON, which ``-p`` parses)."""
    if not isinstance(values, Mapping):
        return []
    options = []
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        options += ["-p", f"{name}={text}"]
    return options


def _ask(command: list[str], folder: Path) -> dict[str, Any]:
    try:
        done = subprocess.run(
            command, cwd=folder if folder.is_dir() else None, capture_output=True, text=True,
            timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PlanFailed(
            f"planning took over {TIMEOUT:.0f}s; run `etherealfabric plan` instead", 504
        ) from None
    except OSError as exc:
        raise PlanFailed(f"cannot run the planner: {exc}", 500) from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"plan exited with {done.returncode}"
        raise PlanFailed(f"the run's workflow cannot be planned now: {why}", 422)
    try:
        plan = json.loads(done.stdout)
    except ValueError:
        plan = None
    if not isinstance(plan, dict):
        raise PlanFailed("the planner printed no plan (no JSON object)", 500)
    return plan
