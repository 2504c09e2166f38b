"""An action record in the journal whose output names no serializer, or one nobody registered
(an edit by hand, a damaged journal): the record is a miss with a warning naming the node and
the key, and the node runs again; never a failure of the node that loads it, never wrong data.
Real runs against a real home; the journal's SQLite file is edited as a user would."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from etherealfabric import Workflow, node

CALLS: list[str] = []


@node
def make(n: int) -> list[int]:
    CALLS.append("make")
    return list(range(n))


@node
def total(xs: list[int], tag: str) -> int:
    CALLS.append("total")
    return sum(xs)


def _flow(home: Path, tag: str) -> tuple[Workflow, object]:
    with Workflow("serializers", home=home) as wf:
        out = total(make(5), tag)
    return wf, out


def _edit(home: Path, node_name: str, serializer: object) -> None:
    with sqlite3.connect(home / "journal.db") as db:
        [(key, text)] = db.execute(
            "SELECT key, record FROM actions WHERE node = ?", (node_name,)
        ).fetchall()
        record = json.loads(text)
        record["outputs"]["result"]["serializer"] = serializer
        db.execute("UPDATE actions SET record = ? WHERE key = ?", (json.dumps(record), key))
    db.close()


@pytest.mark.parametrize("serializer", [None, "nope", ""], ids=["null", "unknown", "empty"])
def test_an_upstream_record_naming_no_known_serializer_runs_its_node_again(
    tmp_path: Path, serializer: object, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    CALLS.clear()
    wf, _ = _flow(home, "first")
    assert wf.execute().executed == 2
    _edit(home, "make", serializer)
    CALLS.clear()
    wf, out = _flow(home, "second")  # total runs, and loads make's output
    with caplog.at_level(logging.WARNING):
        results = wf.execute()
    assert results[out] == 10
    assert sorted(CALLS) == ["make", "total"]
    said = [r.getMessage() for r in caplog.records if "action record" in r.getMessage()]
    assert said and "'make'" in said[0] and "cache key" in said[0], said
    CALLS.clear()
    assert _flow(home, "second")[0].execute().cached == 2  # the new record is sound


@pytest.mark.parametrize("serializer", [None, "nope"], ids=["null", "unknown"])
def test_a_final_record_naming_no_known_serializer_runs_its_node_again(
    tmp_path: Path, serializer: object
) -> None:
    home = tmp_path / "home"
    wf, out = _flow(home, "final")
    wf.execute()
    _edit(home, "total", serializer)
    CALLS.clear()
    wf, out = _flow(home, "final")
    results = wf.execute()
    assert CALLS == ["total"]
    assert results[out] == 10


LATE_FLOW = """
from etherealfabric import Serializer, Workflow, node, register_serializer


class Thing:
    def __init__(self, n):
        self.n = n


class ThingSerializer(Serializer):
    name = "thing"

    def dump(self, value, fp):
        fp.write(str(value.n).encode())

    def load(self, fp):
        return Thing(int(fp.read()))


@node
def make() -> Thing:
    register_serializer(ThingSerializer(), types=(Thing,))  # too late: only when make runs
    print("make ran", flush=True)
    return Thing(3)


@node
def use(t: Thing) -> int:
    return t.n


with Workflow("late") as workflow:
    use(make())
"""


def test_a_serializer_registered_inside_node_code_says_to_register_it_before_the_run(
    tmp_path: Path,
) -> None:
    """The record of make names a serializer the next process does not know until make runs:
    every run refuses the hit and runs make again. The first run warns as make's output is
    written, every later one as the hit is refused: naming the serializer, the node and the
    key, and saying where to register it. Real CLI processes."""
    import os
    import subprocess
    import sys

    (tmp_path / "flow.py").write_text(LATE_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")

    def run(command: str = "run") -> subprocess.CompletedProcess[str]:
        got = subprocess.run(
            [sys.executable, "-m", "etherealfabric", command, "flow.py", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        return got

    first = run()
    assert json.loads(first.stdout)["executed"] == 2
    with sqlite3.connect(tmp_path / "home" / "journal.db") as db:
        [(key,)] = db.execute("SELECT key FROM actions WHERE node = 'make'").fetchall()
    db.close()
    [said] = [line for line in first.stderr.splitlines() if "'thing'" in line]  # at once
    for part in ("'make'", key, "register_serializer(", "before the run", "workflow module"):
        assert part in said, (part, said)
    planned = json.loads(run("plan").stdout)["nodes"][0]  # plan says why make will run
    assert planned["node"] == "make" and "'thing'" in planned["reason"], planned
    assert "register_serializer(" in planned["reason"], planned
    second = run()
    assert "make ran" in second.stderr + second.stdout, "make's hit was refused: it runs again"
    said, wrote = (  # the hit refused, then (make registers it again) the output written
        line for line in second.stderr.splitlines() if "'thing'" in line
    )
    assert "recomputing" in said and "wrote its output" in wrote, (said, wrote)
    for part in ("'make'", key, "register_serializer(", "before the run", "workflow module"):
        assert part in said, (part, said)
    explained = subprocess.run(  # explain says why make ran again, not "missing or corrupt"
        [sys.executable, "-m", "etherealfabric", "explain", json.loads(second.stdout)["run_id"],
         "make"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    assert "'thing'" in explained.stdout and "missing or corrupt" not in explained.stdout
