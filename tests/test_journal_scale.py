"""The journal stays fast with a million ``node_runs`` rows (issue 14): every query that a run,
``show``, ``runs`` and ``cache gc`` make of ``node_runs`` finds its rows through an index.

The journal is filled directly (one ``executemany``: a thousand runs of a thousand nodes, plus
the real runs of a small workflow); the commands then run for real against it while every
statement they send to SQLite is recorded, and the plan SQLite chooses for each statement that
reads ``node_runs`` is asked with ``EXPLAIN QUERY PLAN``: a ``SEARCH ... USING INDEX``, never a
``SCAN`` of the table.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from etherealfabric.cli import main

RUNS, NODES = 1000, 1000  # filler: a million node_runs rows


WORKFLOW = """
from etherealfabric import Workflow, node

@node
def numbers(n):
    return list(range(n))

@node
def total(xs):
    return sum(xs)

with Workflow("scale") as workflow:
    total(numbers(N))
"""


def _fill(path: Path) -> None:
    """A thousand old runs of a thousand-node workflow, straight into the tables."""
    start = time.time() - 10 * 86400
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO runs (id, workflow, status, started_at, finished_at, host, pid) "
            "VALUES (?, 'filler', 'succeeded', ?, ?, 'h', 1)",
            ((f"old-{r:04d}", start + r, start + r + 1) for r in range(RUNS)),
        )

        def rows() -> Iterator[tuple[object, ...]]:
            for r in range(RUNS):
                for n in range(NODES):
                    status = "succeeded" if r % 10 == 0 else "cached"
                    key = f"{r % 10:04d}{n:028x}"
                    yield (f"old-{r:04d}", f"n{n}", 1, status, key, start + r, start + r, 0.001)

        conn.executemany(
            "INSERT INTO node_runs (run_id, node, attempt, status, cache_key, started_at, "
            "finished_at, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
    assert conn.execute("SELECT COUNT(*) FROM node_runs").fetchone()[0] >= RUNS * NODES
    conn.close()


def _aliases(sql: str) -> set[str]:
    """The names ``node_runs`` goes by in ``sql`` (itself and its aliases)."""
    found = {"node_runs"}
    for alias in re.findall(r"\bnode_runs\s+(?:AS\s+)?(\w+)", sql, flags=re.IGNORECASE):
        if alias.upper() not in {"WHERE", "JOIN", "INDEXED", "ON", "GROUP", "ORDER", "SET"}:
            found.add(alias)
    return found


def _scans(conn: sqlite3.Connection, sql: str) -> list[str]:
    """The steps of ``sql``'s plan that scan ``node_runs`` (under any of its names)."""
    names = _aliases(sql)
    plan = _plan(conn, sql)
    return [step for step in plan if re.match(r"SCAN (\w+)", step) and step.split()[1] in names]


def _plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    sql = re.sub(r"\bInf\b", "1e999", sql)  # how a traced statement spells float("inf")
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent to SQLite from now on, as executed (parameters filled in)."""
    statements: list[str] = []
    connect = sqlite3.connect

    def tracing(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracing)
    return statements


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_run_show_runs_plan_explain_and_gc_search_node_runs_by_index(
    home: Path, tmp_path: Path, traced: list[str]
) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("N = 10\n" + WORKFLOW)
    first = json.loads(invoke("run", str(flow), "--json"))
    _fill(home / "journal.db")
    flow.write_text("N = 11\n" + WORKFLOW)  # one node re-runs: a run that writes too
    traced.clear()
    second = json.loads(invoke("run", str(flow), "--json"))
    assert second["executed"] == 2
    runs = json.loads(invoke("runs", "--json"))
    assert [r["id"] for r in runs[:2]] == [second["run_id"], first["run_id"]]
    invoke("runs", "--workflow", "scale", "--json")
    invoke("show", second["run_id"], "--json")
    invoke("show", second["run_id"], "total", "--json")
    invoke("status", "--workflow", "scale", "--json")
    invoke("plan", str(flow), "--json")
    invoke("explain", second["run_id"], "total", "--json")
    invoke("cache", "gc", "--dry-run", "--json")
    invoke("cache", "gc", "--older-than", "0", "--json")  # the filler's records go
    third = json.loads(invoke("run", str(flow), "--json"))
    assert third["executed"] == 0  # what the last runs used is kept

    reads = [s for s in traced if "node_runs" in s and not s.lstrip().upper().startswith("INSERT")]
    assert any("json_each" in s for s in reads)  # the warm run's bulk read is among them
    conn = sqlite3.connect(home / "journal.db")
    if os.environ.get("DUMP"):
        for sql in dict.fromkeys(reads):
            print("==", sql[:400], _plan(conn, sql))
    bad = {sql: steps for sql in dict.fromkeys(reads) if (steps := _scans(conn, sql))}
    conn.close()
    assert bad == {}, "\n\n".join(f"{sql}\n  -> {steps}" for sql, steps in bad.items())


def test_cache_hits_stay_out_of_the_index_of_keys(home: Path, tmp_path: Path) -> None:
    """``node_runs`` is searched by cache key only for the run that computed the key
    (``explain``, ``plan``, rewinds): its index holds succeeded rows alone, so a warm run's
    cache hits (a row per node) add nothing to it, and the question still finds its row."""
    flow = tmp_path / "flow.py"
    flow.write_text("N = 10\n" + WORKFLOW)
    cold = json.loads(invoke("run", str(flow), "--json"))
    warm = json.loads(invoke("run", str(flow), "--json"))
    assert (cold["executed"], warm["executed"]) == (2, 0)
    conn = sqlite3.connect(home / "journal.db")
    try:
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'node_runs_key_succeeded'"
        ).fetchone()[0]
        assert sql.endswith("WHERE status = 'succeeded'")
        try:
            entries = conn.execute(
                "SELECT sum(ncell) FROM dbstat WHERE name = 'node_runs_key_succeeded' "
                "AND pagetype = 'leaf'"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # an SQLite built without dbstat
            entries = None
    finally:
        conn.close()
    if entries is not None:
        assert entries == 2  # the two nodes the cold run computed; not the warm run's hits
    from etherealfabric.journal import Journal
    from etherealfabric.journal._history import producer_of

    with Journal(home / "journal.db", read_only=True) as journal:
        key = journal._value(
            "SELECT cache_key FROM node_runs WHERE run_id = ? AND node = 'total'",
            (warm["run_id"],),
        )
        found = producer_of(journal, key, before=time.time())
    assert found is not None and (found["run_id"], found["node"]) == (cold["run_id"], "total")
