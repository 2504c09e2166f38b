"""Seeing what a run did and why: plan, explain, graph, status, logs, cache verify, runs --since,
run --quiet/--metrics-port and resume, on real journals from real runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etherealfabric.cli import main
from etherealfabric.cli._loader import load_workflow
from etherealfabric.journal._journal import Journal
from etherealfabric.observe._dryrun import DryRun
from etherealfabric.observe._explain import explain_node
from etherealfabric.plan import _plan as plan_module
from etherealfabric.plan._keys import KeyInfo, node_key
from etherealfabric.plan._plan import Plan, make_plan
from etherealfabric.run._cache import ArtifactCache
from etherealfabric.states import PlanAction

FLOW = """
from etherealfabric import Workflow, node

SCALE = {scale}

def helper(x):
    return {helper}

@node
def numbers(n):
    print("making", n, "numbers")
    return list(range(n))

@node(version={version!r})
def total(xs, lr):
    return sum(helper(x) for x in xs) * lr

@node
def report(value):
    return f"total={{value}}"

with Workflow("inspect") as workflow:
    report(total(numbers({n}), lr={lr}))
"""
BASE = {"scale": 2, "helper": "x * SCALE", "version": "1", "n": 10, "lr": 0.5}


def write(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(FLOW.format(**{**BASE, **changes}))
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str, expect: int = 0) -> dict[str, Any]:
    code, out, err = invoke("run", *args, "--json")
    assert code == expect, err
    data: dict[str, Any] = json.loads(out)
    return data


def explain_json(run_id: str, node: str) -> dict[str, Any]:
    code, out, err = invoke("explain", run_id, node, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- explain ------------------------------------------------------------------------------------
def test_explain_first_run_says_no_previous_run(tmp_path: Path) -> None:
    first = run_json(str(write(tmp_path)))
    found = explain_json(first["run_id"], "numbers")
    assert found["verdict"] == "executed" and found["reason"] == "no_previous_run"
    code, out, _ = invoke("explain", first["run_id"], "numbers")
    assert code == 0 and "no previous run" in out and "ran (succeeded)" in out


def test_explain_unchanged_rerun_is_cached_with_the_run_that_computed_it(tmp_path: Path) -> None:
    first = run_json(str(write(tmp_path)))
    second = run_json(str(write(tmp_path)))
    assert second["cached"] == 3
    found = explain_json(second["run_id"], "total")
    assert found["verdict"] == "cached" and found["previous_run"] == first["run_id"]
    code, out, _ = invoke("explain", second["run_id"][:-2], "total")  # a unique prefix works
    assert code == 0 and f"cached: same key as run {first['run_id']}" in out


@pytest.mark.parametrize(
    ("edit", "node", "expected"),
    [
        ({"helper": "SCALE * x + 0"}, "total", ["code: flow.helper changed"]),
        ({"scale": 3}, "total", ["code: flow.SCALE changed"]),
        ({"lr": 0.25}, "total", ["param lr: 0.5 → 0.25"]),
        ({"version": "2"}, "total", ["version: '1' → '2'"]),
        ({"n": 11}, "numbers", ["param n: 10 → 11"]),
    ],
    ids=["helper-code", "module-constant", "param", "version", "param-of-source"],
)
def test_explain_names_the_part_of_the_key_that_changed(
    tmp_path: Path, edit: dict[str, Any], node: str, expected: list[str]
) -> None:
    first = run_json(str(write(tmp_path)))
    second = run_json(str(write(tmp_path, **edit)))
    found = explain_json(second["run_id"], node)
    assert found["reason"] == "changed" and found["previous_run"] == first["run_id"]
    assert [c["text"] for c in found["changes"]] == expected
    code, out, _ = invoke("explain", second["run_id"], node)
    assert code == 0 and f"compared with run {first['run_id']}" in out
    assert all(f"- {text}" in out for text in expected)


def test_explain_names_the_changed_input_with_its_digests(tmp_path: Path) -> None:
    run_json(str(write(tmp_path)))
    second = run_json(str(write(tmp_path, n=11)))
    found = explain_json(second["run_id"], "total")
    (change,) = found["changes"]
    assert change["part"] == "input" and change["name"] == "xs"
    assert change["text"].startswith("input xs: numbers.result changed (")
    old, new = change["old"].split("@")[1][:8], change["new"].split("@")[1][:8]
    assert f"({old} → {new})" in change["text"]


def test_early_cutoff_is_explained_as_cached(tmp_path: Path) -> None:
    """helper's edit yields the same total: report is cached, with the first run's key."""
    first = run_json(str(write(tmp_path)))
    second = run_json(str(write(tmp_path, helper="SCALE * x")))
    assert second["nodes"] == {"numbers": "cached", "total": "succeeded", "report": "cached"}
    found = explain_json(second["run_id"], "report")
    assert found["verdict"] == "cached" and found["previous_run"] == first["run_id"]


def test_explain_a_rerun_because_the_cached_bytes_were_lost(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, n=20000)  # numbers' output is stored as a file
    first = run_json(str(path))
    for obj in stored_objects(home):
        obj.unlink()
    second = run_json(str(path))
    assert second["nodes"]["numbers"] == "succeeded"
    found = explain_json(second["run_id"], "numbers")
    assert found["reason"] == "same_key" and found["previous_run"] == first["run_id"]
    assert "cached result was missing or corrupt" in found["detail"]


DOWN_SOURCE = """
from pathlib import Path
from etherealfabric import Workflow, node

@node
def fetch(marker):
    tries = Path(marker)
    count = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(count))
    if count == 1:
        raise ConnectionError("the source is down")
    return count

with Workflow("down") as workflow:
    fetch(MARKER)
"""


def test_explain_a_rerun_after_a_failure_says_it_failed(tmp_path: Path) -> None:
    """A node that failed and ran again with the same key was not 'missing or corrupt'."""
    path = tmp_path / "down.py"
    path.write_text(f"MARKER = {str(tmp_path / 'tries')!r}\n{DOWN_SOURCE}")
    first = run_json(str(path), expect=1)
    second = run_json(str(path))
    assert second["nodes"]["fetch"] == "succeeded"
    found = explain_json(second["run_id"], "fetch")
    assert found["reason"] == "previous_failed" and found["previous_run"] == first["run_id"]
    assert "where it failed" in found["detail"] and "the source is down" in found["detail"]
    assert "missing or corrupt" not in found["detail"]


def test_explain_node_python_api(tmp_path: Path, home: Path) -> None:
    run_json(str(write(tmp_path)))
    second = run_json(str(write(tmp_path, lr=2)))
    with Journal(home / "journal.db") as journal:
        explanation = explain_node(journal, second["run_id"], "total")
    assert explanation.verdict == "executed"
    assert [str(c) for c in explanation.changes] == ["param lr: 0.5 → 2"]
    assert explanation.to_dict()["summary"] == "param lr: 0.5 → 2"
    assert str(explanation).splitlines()[0] == (
        f"total in run {second['run_id']} (workflow 'inspect'): ran (succeeded)"
    )


def test_explain_of_a_node_that_did_not_run(tmp_path: Path) -> None:
    path = tmp_path / "fails.py"
    path.write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\ndef bad():\n    raise ValueError('no')\n"
        "@node\ndef after(x):\n    return x\n"
        "with Workflow('fails') as workflow:\n    after(bad())\n"
    )
    failed = run_json(str(path), expect=1)
    found = explain_json(failed["run_id"], "after")
    assert found["verdict"] == "not_run" and found["reason"] == "upstream_failed"
    assert "'bad' failed" in found["detail"]
    found = explain_json(failed["run_id"], "bad")
    assert found["verdict"] == "executed" and "ValueError: no" in found["error"]


def test_explain_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    first = run_json(str(write(tmp_path)))
    code, _, err = invoke("explain", first["run_id"], "nope")
    one_line_error(code, err, "has no node 'nope'; its nodes: numbers, total, report")
    code, _, err = invoke("explain", "no-such-run", "total")
    one_line_error(code, err, "no run 'no-such-run'")


# -- plan ---------------------------------------------------------------------------------------
def plan_json(path: Path) -> dict[str, Any]:
    code, out, err = invoke("plan", str(path), "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_plan_before_and_after_a_run(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path)
    before = plan_json(path)
    assert before["to_run"] == ["numbers", "total", "report"] and before["cached"] == []
    assert before["estimate"] is None and before["unestimated"] == before["to_run"]
    assert not home.exists(), "a dry run creates nothing"
    code, out, _ = invoke("plan", str(path))
    assert code == 0 and "will run" in out and "estimated duration: unknown" in out

    first = run_json(str(path))
    after = plan_json(path)
    assert after["to_run"] == [] and after["cached"] == ["numbers", "total", "report"]
    assert after["nodes"][0]["reason"] == f"same key as run {first['run_id']}"
    assert after["estimate"] == 0

    edited = plan_json(write(tmp_path, lr=0.125))
    assert edited["cached"] == ["numbers"] and edited["to_run"] == ["total", "report"]
    total, report = edited["nodes"][1], edited["nodes"][2]
    assert total["changes"] == ["param lr: 0.5 → 0.125"]
    assert total["reason"] == f"param lr: 0.5 → 0.125 (since run {first['run_id']})"
    assert report["reason"] == "upstream 'total' runs first"
    assert isinstance(total["estimate"], float) and isinstance(report["estimate"], float)
    assert edited["estimate"] == pytest.approx(total["estimate"] + report["estimate"])
    code, out, _ = invoke("runs", "--json")
    assert len(json.loads(out)) == 1, "plan ran nothing"


def test_plan_estimate_is_the_median_of_past_executions(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path)
    for lr in (1, 2, 3):
        run_json(str(write(tmp_path, lr=lr)))
    with sqlite3.connect(home / "journal.db") as db:
        rows = db.execute(
            "SELECT run_id FROM node_runs WHERE node='total' ORDER BY started_at"
        ).fetchall()
        for (run_id,), duration in zip(rows, (1.0, 5.0, 2.0), strict=True):
            db.execute(
                "UPDATE node_runs SET duration=? WHERE run_id=? AND node='total'",
                (duration, run_id),
            )
    planned = plan_json(write(tmp_path, lr=4))
    assert planned["nodes"][1]["estimate"] == 2.0
    assert path.exists()


def test_plan_with_a_lost_object_says_so_and_changes_nothing(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, n=20000)  # numbers' output is stored as a file
    first = run_json(str(path))
    (obj,) = stored_objects(home)
    obj.unlink()
    planned = plan_json(path)
    assert planned["to_run"] == ["numbers", "total", "report"]
    assert planned["nodes"][0]["reason"] == (
        f"same key as run {first['run_id']}, but its cached result is gone"
    )
    with sqlite3.connect(home / "journal.db") as db:
        assert db.execute("SELECT count(*) FROM actions").fetchone() == (3,), "nothing forgotten"


def test_plan_entries_carry_the_key_and_record_they_computed(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workflow.plan() computes each key once and looks it up once; entries keep both."""
    first = run_json(str(write(tmp_path)))
    keyed: list[str] = []
    looked_up: list[str] = []
    real_lookup = ArtifactCache.lookup

    def counting_key(spec: Any, *args: Any, **kwargs: Any) -> KeyInfo:
        keyed.append(spec.name)
        return node_key(spec, *args, **kwargs)

    def counting_lookup(self: ArtifactCache, key: str) -> dict[str, Any] | None:
        looked_up.append(key)
        return real_lookup(self, key)

    monkeypatch.setattr(plan_module, "node_key", counting_key)
    monkeypatch.setattr(ArtifactCache, "lookup", counting_lookup)
    planned = load_workflow(str(write(tmp_path, lr=0.125))).plan()
    assert keyed == ["numbers", "total"], "report waits for total: no key, and none twice"
    assert len(looked_up) == len(set(looked_up)) == 2

    numbers, total, report = planned.nodes
    assert isinstance(planned, DryRun) and isinstance(planned.plan, Plan)
    assert numbers.entry is planned.plan["numbers"] and numbers.action is PlanAction.CACHED
    assert numbers.entry.record is not None and numbers.entry.outputs is not None
    assert numbers.entry.record["outputs"] == numbers.entry.outputs
    assert numbers.key == looked_up[0] == first_key(home, first["run_id"], "numbers")
    assert total.action is PlanAction.RUN and total.entry.record is None
    assert total.entry.key_info is not None and total.key == looked_up[1]
    assert total.entry.key_info.components()["params"].keys() == {"xs", "lr"}
    assert [str(c) for c in total.changes] == ["param lr: 0.5 → 0.125"]
    assert report.entry.key_info is None and report.key is None
    assert report.reason == report.entry.reason == "upstream 'total' runs first"
    assert planned.to_run == planned.plan.to_run == ["total", "report"]
    assert planned.cached == planned.plan.cached == ["numbers"]
    assert planned["total"] is total


def first_key(home: Path, run_id: str, node: str) -> str:
    with sqlite3.connect(home / "journal.db") as db:
        (key,) = db.execute(
            "SELECT cache_key FROM node_runs WHERE run_id=? AND node=?", (run_id, node)
        ).fetchone()
    return str(key)


def test_make_plan_without_a_cache_keys_only_the_sources(tmp_path: Path) -> None:
    graph = load_workflow(str(write(tmp_path))).build()
    asked: list[str] = []

    def lookup(key: str) -> dict[str, Any] | None:
        asked.append(key)
        return None

    plan = make_plan(graph, lookup)
    assert plan.workflow == "inspect" and len(plan) == 3
    assert [e.node for e in plan] == ["numbers", "total", "report"]
    assert plan.to_run == ["numbers", "total", "report"] and plan.cached == []
    numbers = plan["numbers"]
    assert numbers.action is PlanAction.RUN and numbers.reason == "no cached result for its key"
    assert numbers.key_info is not None and asked == [numbers.key]
    assert numbers.record is None and numbers.outputs is None
    assert plan["total"].reason == "upstream 'numbers' runs first"
    assert plan["total"].key_info is None
    with pytest.raises(KeyError):
        plan["nope"]


def test_plan_of_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    code, _, err = invoke("plan", "missing.py")
    one_line_error(code, err, "no such workflow file")


# -- graph --------------------------------------------------------------------------------------
SHAPES = """
from etherealfabric import Workflow, node

@node
def a():
    return 1

@node
def b(x, fail):
    if fail:
        raise ValueError("boom")
    return x

@node
def c(x):
    return x

@node
def d():
    return 0

with Workflow("shapes") as workflow:
    first = a()
    c(b(first, fail=FAIL))
    workflow.add_dependency(first, d())
"""


def shapes(tmp_path: Path, fail: bool) -> Path:
    path = tmp_path / "shapes.py"
    path.write_text(f"FAIL = {fail}\n{SHAPES}")
    return path


def test_graph_mermaid_and_dot_without_a_run(tmp_path: Path) -> None:
    path = shapes(tmp_path, fail=False)
    code, out, _ = invoke("graph", str(path))
    assert code == 0
    assert out.splitlines()[0] == "flowchart TD"
    assert '    n0["a"]' in out and '    n3["d"]' in out
    assert "n0 --> n1" in out and "n1 --> n2" in out and "n0 -.-> n3" in out
    assert "classDef" not in out
    code, out, _ = invoke("graph", str(path), "--format", "dot")
    assert code == 0 and out.startswith('digraph "shapes" {')
    assert '"a" -> "b";' in out and '"a" -> "d" [style=dashed];' in out


def test_graph_colours_nodes_by_their_status_in_a_run(tmp_path: Path) -> None:
    # --keep-going: d (beside the failing b) runs whichever of the two the pool starts first
    failed = run_json(str(shapes(tmp_path, fail=True)), "--keep-going", expect=1)
    path = shapes(tmp_path, fail=False)
    code, out, _ = invoke("graph", str(path), "--format", "dot", "--run", failed["run_id"])
    assert code == 0
    assert '"a" [label="a (succeeded)", fillcolor="#c8e6c9"' in out
    assert '"b" [label="b (failed)", fillcolor="#ffcdd2"' in out
    assert '"c" [label="c (upstream_failed)", fillcolor="#ffe0b2"' in out
    assert '"a" -> "d" [style=dashed];' in out

    fixed = run_json(str(path))
    code, out, _ = invoke("graph", str(path), "--format", "mermaid", "--run", fixed["run_id"])
    assert code == 0
    assert '    n0["a (cached)"]' in out and '    n1["b (succeeded)"]' in out
    assert "    classDef cached fill:#cfd8dc,stroke:#1565c0,color:#000" in out
    assert "    class n0,n3 cached" in out and "    classDef succeeded fill:#c8e6c9" in out
    code, out, _ = invoke("graph", str(path), "--format", "json", "--run", fixed["run_id"])
    data = json.loads(out)
    assert {"from": "a", "to": "d", "kind": "order"} in data["edges"]
    assert {"node": "a", "status": "cached"} in data["nodes"]


def test_graph_of_a_run_of_another_workflow_is_refused(tmp_path: Path) -> None:
    other = run_json(str(write(tmp_path)))
    code, _, err = invoke("graph", str(shapes(tmp_path, fail=False)), "--run", other["run_id"])
    one_line_error(code, err, "is a run of workflow 'inspect', not 'shapes'")


# -- status of a live run -----------------------------------------------------------------------
LIVE = """
import os, time
from etherealfabric import Workflow, node

@node
def gate(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return "open"

@node
def quick():
    # Finishes while gate waits. Today the scheduler commits a node's "running" row only
    # when some result arrives, so this makes gate's row visible.
    time.sleep(0.2)
    return 1

with Workflow("live") as workflow:
    gate(GATE)
    quick()
"""


def status_json(*args: str) -> tuple[int, dict[str, Any] | None]:
    code, out, _ = invoke("status", *args, "--json")
    return code, (json.loads(out) if out.strip() else None)


def start_live_run(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", str(path), "--max-workers", "4"],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_running(proc: subprocess.Popen[str], node: str) -> dict[str, Any]:
    """Poll ``status --json`` until ``node`` is the one running node of the latest run."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Path(".etherealfabric/journal.db").exists():
            _, state = status_json()
            if state and [r["node"] for r in state["running"]] == [node]:
                return state
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{node} never showed up as running")


def test_status_follows_a_run_executing_in_another_process(tmp_path: Path) -> None:
    gate_file = tmp_path / "gate-open"
    path = tmp_path / "live.py"
    path.write_text(f"GATE = {str(gate_file)!r}\n{LIVE}")
    proc = start_live_run(path)
    try:
        state = wait_until_running(proc, "gate")
        assert state["status"] == "running" and state["finished_at"] is None
        assert state["running"][0]["elapsed"] >= 0 and state["running"][0]["attempt"] == 1
        assert state["counts"]["running"] == 1 and state["pid"] == proc.pid
        code, out, _ = invoke("status")
        assert code == 0 and "running for" in out and "running: gate (attempt 1)" in out
    finally:
        gate_file.touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    code, final = status_json()
    assert code == 0 and final is not None
    assert final["status"] == "succeeded" and final["counts"] == {"succeeded": 2}
    assert final["running"] == [] and final["finished_at"] is not None


def test_status_of_a_failed_run_exits_1_and_without_runs_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = invoke("status")
    one_line_error(code, err, "no journal")
    first = run_json(str(write(tmp_path)))
    path = tmp_path / "fails.py"
    path.write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\ndef bad():\n    raise ValueError('no')\n"
        "with Workflow('fails') as workflow:\n    bad()\n"
    )
    failed = run_json(str(path), expect=1)
    code, state = status_json()
    assert code == 1 and state is not None and state["id"] == failed["run_id"]
    assert state["counts"] == {"failed": 1} and "ValueError: no" in state["error"]
    code, state = status_json(first["run_id"])
    assert code == 0 and state is not None and state["counts"] == {"succeeded": 3}
    code, state = status_json("--workflow", "inspect")
    assert code == 0 and state is not None and state["id"] == first["run_id"]
    code, _, err = invoke("status", "--workflow", "inspekt")  # a typo: not "no runs yet"
    one_line_error(code, err, "no runs of workflow 'inspekt'; workflows that ran: fails, inspect")
    code, _, err = invoke("runs", "--limit", "-1")
    assert code == 2 and "-1 is not in the range" in err


# -- logs ---------------------------------------------------------------------------------------
FLAKY = """
import logging
from pathlib import Path
from etherealfabric import Workflow, node

@node(retries=1)
def flaky(marker):
    tries = Path(marker)
    count = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(count))
    logging.getLogger("flow").warning("try %d", count)
    if count == 1:
        raise RuntimeError("first try fails")
    return count

with Workflow("flaky") as workflow:
    flaky(MARKER)
"""


def test_logs_print_each_attempts_captured_output(tmp_path: Path) -> None:
    path = tmp_path / "flaky.py"
    path.write_text(f"MARKER = {str(tmp_path / 'tries')!r}\n{FLAKY}")
    first = run_json(str(path))
    code, out, _ = invoke("logs", first["run_id"], "flaky")
    assert code == 0
    assert "== flaky attempt 1 (retrying) ==" in out and "== flaky attempt 2 (succeeded) ==" in out
    one, two = out.split("== flaky attempt 2")
    assert "try 1" in one and "try 2" in two and "try 1" not in two
    code, out, _ = invoke("logs", first["run_id"], "flaky", "--attempt", "2", "--json")
    (attempt,) = json.loads(out)
    assert attempt["attempt"] == 2 and "try 2" in attempt["output"]

    second = run_json(str(path))
    code, out, _ = invoke("logs", second["run_id"], "flaky")
    assert code == 0 and "no output captured (cached: it did not run in this run)" in out
    code, _, err = invoke("logs", first["run_id"], "flaky", "--attempt", "3")
    one_line_error(code, err, "has no attempt 3")
    code, _, err = invoke("logs", first["run_id"], "other")
    one_line_error(code, err, "has no node 'other'; its nodes: flaky")


# -- cache verify -------------------------------------------------------------------------------
def stored_objects(home: Path) -> list[Path]:
    return [p for p in (home / "objects").glob("??/*") if not p.name.startswith(".")]


def verify(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = invoke("cache", "verify", *args, "--json")
    assert code in (0, 1), err
    data: dict[str, Any] = json.loads(out)
    return code, data


def test_cache_verify_finds_and_fixes_a_corrupt_object(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, n=20000)  # a list large enough to be stored as a file
    run_json(str(path))
    code, clean = verify()
    assert code == 0 and clean["problems"] == [] and clean["objects"] == 1
    assert clean["records"] == 3
    code, out, _ = invoke("cache", "verify")
    assert code == 0 and "0 problem(s)" in out

    (obj,) = stored_objects(home)
    data = bytearray(obj.read_bytes())
    data[10] ^= 0xFF
    obj.write_bytes(bytes(data))

    code, out, _ = invoke("cache", "verify")
    assert code == 1 and f"corrupt object {obj.name}" in out and str(obj) in out
    assert "(node numbers, output result, key " in out and "cache verify --fix" in out
    code, found = verify()
    assert code == 1 and found["remaining"] == 2
    assert {(p["kind"], p["where"], p["node"]) for p in found["problems"]} == {
        ("corrupt_object", "store", None),
        ("corrupt_object", "journal", "numbers"),
    }
    key = next(p["key"] for p in found["problems"] if p["key"])

    code, fixed = verify("--fix")
    assert code == 0 and fixed["remaining"] == 0
    assert all(p["fixed"] for p in fixed["problems"])
    assert not obj.exists()
    with Journal(home / "journal.db") as journal:
        assert journal.get_action(key) is None
    code, again = verify()
    assert code == 0 and again["problems"] == []
    rerun = run_json(str(path))
    assert rerun["nodes"]["numbers"] == "succeeded"


def test_cache_verify_reports_a_missing_object(tmp_path: Path, home: Path) -> None:
    run_json(str(write(tmp_path, n=20000)))
    (obj,) = stored_objects(home)
    obj.unlink()
    code, found = verify()
    assert code == 1
    assert [(p["kind"], p["node"]) for p in found["problems"]] == [("missing_object", "numbers")]
    code, _ = verify("--fix")
    assert code == 0
    assert verify()[0] == 0


def test_cache_verify_without_a_journal_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = invoke("cache", "verify")
    one_line_error(code, err, "no journal")


# -- runs --since -------------------------------------------------------------------------------
def test_runs_since(tmp_path: Path, home: Path) -> None:
    old = run_json(str(write(tmp_path)))
    new = run_json(str(write(tmp_path)))
    three_days = time.time() - 3 * 86400
    with sqlite3.connect(home / "journal.db") as db:
        db.execute(
            "UPDATE runs SET started_at=?, finished_at=? WHERE id=?",
            (three_days, three_days + 1, old["run_id"]),
        )
    for since in ("2d", "36h", (dt.datetime.now() - dt.timedelta(days=1)).isoformat()):
        code, out, _ = invoke("runs", "--since", since, "--json")
        assert code == 0 and [r["id"] for r in json.loads(out)] == [new["run_id"]], since
    code, out, _ = invoke("runs", "--since", "1w", "--workflow", "inspect", "--json")
    assert [r["id"] for r in json.loads(out)] == [new["run_id"], old["run_id"]]
    code, out, _ = invoke("runs", "--since", "1w", "--status", "failed", "--json")
    assert json.loads(out) == []
    code, _, err = invoke("runs", "--since", "yesterday")
    one_line_error(code, err, "cannot read --since 'yesterday'")


# -- run --quiet / --metrics-port ---------------------------------------------------------------
def test_run_shows_progress_unless_quiet(tmp_path: Path) -> None:
    path = write(tmp_path)
    code, _, err = invoke("run", str(path))
    assert code == 0 and "[1/3] numbers done in" in err
    code, _, err = invoke("run", str(write(tmp_path, lr=3)), "--quiet")
    assert code == 0 and "[1/3]" not in err and "[3/3]" not in err
    assert "run " in err and "succeeded" in err  # the summary


SCRAPE = """
from pathlib import Path
from urllib.request import urlopen
from etherealfabric import Workflow, node

@node
def scrape(url, out):
    Path(out).write_text(urlopen(url, timeout=10).read().decode())
    return 1

with Workflow("scrape") as workflow:
    scrape(URL, OUT)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_run_serves_metrics_while_it_lasts(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "scraped.txt"
    path = tmp_path / "scrape.py"
    url = f"http://127.0.0.1:{port}/metrics"
    path.write_text(f"URL = {url!r}\nOUT = {str(out)!r}\n{SCRAPE}")
    code, _, err = invoke("run", str(path), "--metrics-port", str(port), "--quiet")
    assert code == 0, err
    assert f"metrics: {url}" in err
    assert "etherealfabric" in out.read_text()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # closed with the run


# -- resume -------------------------------------------------------------------------------------
RESUMABLE = """
from pathlib import Path
from etherealfabric import Workflow, node

@node
def first():
    return 1

@node
def second(x, ready):
    if not Path(ready).exists():
        raise RuntimeError("not ready")
    return x + 1

with Workflow("resumable") as workflow:
    second(first(), READY)
"""


def test_resume_reruns_a_failed_run_with_its_recorded_parameters(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = tmp_path / "ready"
    path = tmp_path / "resumable.py"
    path.write_text(f"READY = {str(ready)!r}\n{RESUMABLE}")
    failed = run_json("resumable.py", "--node", "second", expect=1)
    code, out, _ = invoke("show", failed["run_id"], "--json")
    params = json.loads(out)["run"]["params"]
    assert params["target"] == str(path.resolve()) and params["nodes"] == ["second"]

    ready.touch()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded target is absolute
    code, out, err = invoke("resume", failed["run_id"], "--home", str(home), "--json")
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["status"] == "succeeded" and resumed["resumed_from"] == failed["run_id"]
    assert resumed["nodes"] == {"first": "cached", "second": "succeeded"}
    code, out, _ = invoke("show", resumed["run_id"], "--home", str(home), "--json")
    assert json.loads(out)["run"]["resumed_from"] == failed["run_id"]

    code, out, _ = invoke("resume", resumed["run_id"], "--home", str(home))
    assert code == 0
    assert out.strip() == f"run {resumed['run_id']} already succeeded; nothing to resume"
    # with --json: that run's own summary, in the shape `run --json` printed it
    code, out, err = invoke("resume", resumed["run_id"], "--home", str(home), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again == {k: v for k, v in resumed.items() if k != "resumed_from"} | {"resumed": False}
    assert (again["workflow"], again["status"], again["executed"]) == ("resumable", "succeeded", 1)


def test_resume_an_interrupted_run(tmp_path: Path) -> None:
    """A run whose process was killed is marked interrupted, and resume finishes it."""
    gate_file = tmp_path / "gate-open"
    path = tmp_path / "live.py"
    path.write_text(f"GATE = {str(gate_file)!r}\n{LIVE}")
    proc = start_live_run(path)
    try:
        state = wait_until_running(proc, "gate")
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    code, killed = status_json(state["id"])
    assert code == 1 and killed is not None and killed["status"] == "interrupted"
    gate_file.touch()
    code, out, err = invoke("resume", state["id"], "--json")
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["nodes"] == {"gate": "succeeded", "quick": "cached"}


def test_resume_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "script.py"
    path.write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\ndef bad():\n    raise ValueError('no')\n"
        "with Workflow('script') as workflow:\n    bad()\n"
        "workflow.execute(raise_on_error=False)\n"
    )
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stderr
    code, out, _ = invoke("runs", "--json")
    (script_run,) = json.loads(out)
    code, _, err = invoke("resume", script_run["id"])
    one_line_error(code, err, "does not record its workflow file")
    code, _, err = invoke("resume", "no-such-run")
    one_line_error(code, err, "no run 'no-such-run'")


# -- diff_components (pure) ---------------------------------------------------------------------
def test_diff_components_added_removed_and_rewired() -> None:
    from etherealfabric.observe._explain import diff_components

    old = {
        "kind": "m.f", "code": "1", "code_parts": {"m.f": "a", "m.gone": "b"},
        "version": None, "params": {"k": "h1", "x": "h2"}, "params_repr": {"k": "1"},
        "inputs": {"x": ["up.out@" + "0" * 32]},
    }  # fmt: skip
    new = {
        "kind": "m.f", "code": "2", "code_parts": {"m.f": "a", "m.new": "c"},
        "version": "3", "params": {"j": "h3", "x": "h4"}, "params_repr": {"j": "'a'"},
        "inputs": {"x": ["other.out@" + "1" * 32]},
    }  # fmt: skip
    assert [str(c) for c in diff_components(old, new)] == [
        "code: m.new added",
        "code: m.gone removed",
        "version: none → '3'",
        "param j: added ('a')",
        "param k: removed (was 1)",
        "input x: now reads other.out instead of up.out",
    ]
    assert diff_components(old, old) == []


# -- help ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [["plan"], ["explain"], ["graph"], ["status"], ["logs"], ["resume"], ["cache", "verify"]],
)
def test_every_command_has_help(command: list[str]) -> None:
    code, out, _ = invoke(*command, "--help")
    assert code == 0 and "Usage:" in out


ORDERED_FLOW = """
from etherealfabric import File, Workflow, node

@node
def write(v):
    with open("data.txt", "w") as f:
        f.write(str(v))
    return v

@node
def read(f):
    return open(f).read()

@node
def note(text):
    return text

with Workflow("ordered", params={"v": 1}) as wf:
    w = write(wf.params.v)
    r = read(File("data.txt"))
    n = note("constant")
    wf.add_dependency(w, r)
    wf.add_dependency(w, n)
"""


def _ef(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env={**env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_plan_says_may_run_when_a_node_ordered_first_runs_and_it_reads_a_file(
    tmp_path: Path,
) -> None:
    """``read`` reads data.txt, which ``write`` (ordered before it, not an input) rewrites:
    plan said ``cached`` while the run then executed it. ``note`` reads no file: cached."""
    (tmp_path / "flow.py").write_text(ORDERED_FLOW)
    (tmp_path / "data.txt").write_text("1")
    assert _ef(tmp_path, "run", "flow.py").returncode == 0
    plan = _ef(tmp_path, "plan", "flow.py", "-p", "v=2", "--json")
    assert plan.returncode == 0, plan.stderr
    nodes = {n["node"]: n for n in json.loads(plan.stdout)["nodes"]}
    assert (nodes["write"]["action"], nodes["write"]["maybe"]) == ("run", False)
    assert (nodes["read"]["action"], nodes["read"]["maybe"]) == ("run", True)
    assert nodes["read"]["reason"] == (
        "may run: 'write', ordered before it, runs first and may rewrite data.txt, which it "
        "reads (cached if the content stays the same)"
    )
    assert (nodes["note"]["action"], nodes["note"]["maybe"]) == ("cached", False)
    text = _ef(tmp_path, "plan", "flow.py", "-p", "v=2").stdout
    assert "1 cached, 2 will run (1 of them may not: see 'may run')" in text
    assert "│ read  │ may run" in text
    ran = json.loads(_ef(tmp_path, "run", "flow.py", "-p", "v=2", "--json").stdout)
    assert ran["nodes"] == {"write": "succeeded", "read": "succeeded", "note": "cached"}
    again = json.loads(_ef(tmp_path, "plan", "flow.py", "-p", "v=2", "--json").stdout)
    assert {n["node"]: n["action"] for n in again["nodes"]} == dict.fromkeys(
        ("write", "read", "note"), "cached"
    )
