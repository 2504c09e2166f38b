"""Group commit (issue 14): the journal commits finished nodes in groups, never one transaction
per node, and a run alone in its home leases its nodes without a transaction (the home lease).

A kill loses at most the last group window of finished nodes, which simply run again: a long
cold chain (``programs/chain.py``) is SIGKILLed many times in the middle, and no node whose
success was committed before a kill is ever executed again; the final result is right.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etherealfabric import Workflow, node
from etherealfabric.journal import Journal, _journal
from etherealfabric.journal._connection import ROWS_PER_STATEMENT, insert_rows
from etherealfabric.journal._leases import HOME_LEASE
from etherealfabric.journal._liveness import HOST
from etherealfabric.run import _scheduler
from programs.harness import committed_nodes, flow_env, query, read_log, wait_until

CHAIN = Path(__file__).parent / "programs" / "chain.py"


@node
def leaf(i):
    return i


@node
def inc(x):
    return x + 1


def test_a_cold_chain_commits_in_groups_without_a_lease_transaction_per_node(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_scheduler, "GROUP_SECONDS", 0.5)  # however slow the machine is
    transactions = []
    original = Journal.write

    def counted(self: Journal):  # type: ignore[no-untyped-def]
        if not self.conn.in_transaction:
            transactions.append(1)
        return original(self)

    monkeypatch.setattr(Journal, "write", counted)
    with Workflow("grouped") as wf:
        x = leaf(0)
        for _ in range(299):
            x = inc(x)
        wf.add_node(x.node, name="last")
    results = wf.execute()
    assert (results.executed, results["last"]["result"]) == (300, 299)
    # run row, home lease, groups, release and finish: far fewer than the 600 of a lease and
    # a commit per node
    assert len(transactions) < 40, len(transactions)
    with Journal(home / "journal.db") as journal:
        rows = journal.node_runs(results.run_id)
        assert len(rows) == 300 and {r["status"] for r in rows} == {"succeeded"}
        assert journal._rows("SELECT * FROM leases") == []  # all released at the end


@node
def item(root, i):
    return root + i


@node
def gather(xs):
    return len(xs)


def test_a_commit_writes_its_rows_in_multi_row_statements_and_no_lease_row_per_node(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    connect = _journal.connect

    def traced(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)  # the statements SQLite runs, as run
        return conn

    monkeypatch.setattr(_journal, "connect", traced)
    n = 500
    with Workflow("fan") as wf:
        root = leaf(0)
        wf.add_node(gather([item(root, i) for i in range(n)]).node, name="total")
    results = wf.execute()
    assert (results.executed, results["total"]["result"]) == (n + 2, n)
    # a row per node in node_runs, actions, blobs and events, in a few statements each
    for table in ("node_runs", "actions", "blobs", "events"):
        inserts = [s for s in statements if s.startswith("INSERT") and f"INTO {table} " in s]
        assert 0 < len(inserts) <= 2 * n / ROWS_PER_STATEMENT + 40, (table, len(inserts))
    # alone in its home, the run deletes no lease row per node: the home lease goes at its end
    assert [s for s in statements if s.startswith("DELETE FROM leases WHERE key")] == []
    with Journal(home / "journal.db") as journal:
        rows = journal.node_runs(results.run_id)
        assert len(rows) == n + 2 and {r["status"] for r in rows} == {"succeeded"}
        assert journal._rows("SELECT * FROM leases") == []
        events = journal._rows("SELECT kind, node FROM events WHERE run_id = ? ORDER BY id",
                               (results.run_id,))  # fmt: skip
        # a plain start is its running row (key, start), not an event row as well
        assert [e for e in events if e["kind"] == "node_started"] == []
        done = [e["node"] for e in events if e["kind"] == "node_succeeded"]
        assert len(done) == n + 2 and done[0] == "leaf"  # in the order they happened
        assert rows[0]["node"] == "leaf" and all(r["started_at"] for r in rows)
    rerun = wf.execute()
    assert (rerun.executed, rerun.cached, rerun["total"]["result"]) == (0, n + 2, n)


@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 200, 511, 512, 513, 1300])
def test_insert_rows_writes_every_row_in_order(tmp_path: Path, count: int) -> None:
    with Journal(tmp_path / "journal.db") as journal, journal.write() as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b REAL, c TEXT)")
        rows = [(f"a{i}", i / 2, None if i % 3 else "x") for i in range(count)]
        insert_rows(conn, "INSERT INTO t (a, b, c)", rows)
        assert conn.execute("SELECT a, b, c FROM t ORDER BY id").fetchall() == rows
        # a row's values spelled out, literals among them; a later row replaces an earlier one
        conn.execute("CREATE TABLE u (k TEXT PRIMARY KEY, v TEXT, w INTEGER, x TEXT)")
        pairs = [(f"k{i % 70}", f"v{i}") for i in range(count)]
        insert_rows(conn, "INSERT OR REPLACE INTO u (k, v, w, x)", pairs, "(?1, ?2, 7, ?2)")
        expected = {k: (v, 7, v) for k, v in pairs}
        got = {k: (v, w, x) for k, v, w, x in conn.execute("SELECT * FROM u")}
        assert got == expected
        if count:
            with pytest.raises(ValueError, match="widths"):
                insert_rows(conn, "INSERT INTO t (a, b, c)", [("a", 1.0, "c"), ("a", 1.0)])


def test_the_home_lease_is_given_up_when_another_run_wants_to_compute(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.claim_lease("k1", node="n1", run_id="A") == "home"  # alone
        assert journal.lease_contended("A") is False
        assert journal.claim_lease("k2", node="n2", run_id="B") == ""  # A holds the home
        assert journal.lease_contended("A") is True  # B's presence row says it waits
        journal.share_home("A", {"k1": "n1"})  # A still computes k1
        keys = {r["key"]: r["run_id"] for r in journal._rows("SELECT key, run_id FROM leases")}
        assert keys == {"k1": "A", "*run:A": "A", "*run:B": "B"}
        assert journal.claim_lease("k1", node="n1", run_id="B") == ""  # held by A
        assert journal.claim_lease("k2", node="n2", run_id="B") == "key"
        journal.write_batch(release=["k1"])  # A's result for k1 is committed
        assert journal.claim_lease("k1", node="n1", run_id="B") == "key"
        assert journal.claim_lease("k3", node="n3", run_id="A") == "key"  # not the home: B is on
        journal.release_leases("B")  # B ended
        assert journal.claim_lease("k4", node="n4", run_id="A") == "home"  # alone again


def test_a_home_lease_of_a_dead_process_blocks_no_one(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Journal(tmp_path / "journal.db") as journal, journal.write() as conn:
        conn.execute(
            "INSERT INTO leases (key, run_id, host, pid, acquired_at, expires_at) "
            "VALUES (?,?,?,?,?,?)",
            (HOME_LEASE, "dead-run", HOST, dead.pid, time.time(), time.time() + 60),
        )
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.claim_lease("k", node="n", run_id="live") == "home"


def _start(home: Path, log: Path, out: Path, n: int) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, str(CHAIN), str(n)], env=flow_env(home, log), stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.slow
def test_sigkill_in_a_long_cold_chain_never_reruns_committed_nodes(tmp_path: Path) -> None:
    n, kills = 1500, 8
    home, log = tmp_path / "home", tmp_path / "executions.log"
    journal = home / "journal.db"
    rng = random.Random(14)
    committed_at: dict[str, int] = {}  # node -> how many kills had happened when it was seen
    killed = 0
    while killed < kills:
        before = len(read_log(log))
        target = before + rng.randint(5, 150)
        proc = _start(home, log, tmp_path / f"out-{killed}", n)
        wait_until(lambda t=target: len(read_log(log)) >= t, timeout=120, proc=proc)
        if proc.poll() is not None:
            pytest.fail(f"the chain ended before kill {killed + 1}: {proc.returncode}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
        killed += 1
        for name in committed_nodes(journal):
            committed_at.setdefault(name, killed)
    final = subprocess.run(
        [sys.executable, str(CHAIN), str(n)], env=flow_env(home, log), capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert final.stdout.strip().splitlines()[-1] == str(n - 1)
    # which process ran each node, in order; the pids in order of start
    executions = read_log(log)
    pids = list(dict.fromkeys(pid for _, pid in executions))
    assert len(pids) == kills + 1
    wrongful = [
        (label, pid)
        for label, pid in executions
        if label in committed_at and pids.index(pid) >= committed_at[label]
    ]
    assert wrongful == [], f"{len(wrongful)} committed nodes executed again: {wrongful[:10]}"
    assert len(committed_at) > kills, "the kills committed nothing: the test tests nothing"
    # every node ran, and each at most once per process
    labels = [label for label, _ in executions]
    assert set(labels) == {f"step:{k}" for k in range(n)}
    assert len(executions) == len(set(executions))
    runs = query(journal, "SELECT status FROM runs ORDER BY started_at")
    assert [r["status"] for r in runs] == ["interrupted"] * kills + ["succeeded"]
