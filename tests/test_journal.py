"""The SQLite journal: schema, WAL, runs and node runs, interrupted runs, bad files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etherealfabric.errors import JournalError, RunNotFoundError
from etherealfabric.journal._journal import HOST, SCHEMA_VERSION, Journal


def test_new_journal_uses_wal_and_is_stamped(tmp_path: Path) -> None:
    with Journal(tmp_path / "j" / "journal.db") as journal:
        mode = journal.conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = set(journal.db.table_names())
    assert {"runs", "node_runs", "events", "actions", "blobs", "file_digests"} <= tables
    assert "_sqlite_migrations" in tables
    # reopening an up-to-date journal migrates nothing and keeps the rows
    with Journal(tmp_path / "j" / "journal.db") as journal:
        journal.start_run("r1", workflow="w", backend="local", nodes=1)
    with Journal(tmp_path / "j" / "journal.db") as journal:
        assert journal.get_run("r1")["status"] == "running"


def test_runs_are_listed_newest_first_and_found_by_prefix(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        for i, wf in enumerate(["a", "b", "a"]):
            journal.start_run(f"run-{i}-xyz", workflow=wf, backend="local", nodes=2)
            journal.finish_run(f"run-{i}-xyz", status="succeeded", counts={"executed": i})
            time.sleep(0.01)
        assert [r["id"] for r in journal.list_runs()] == ["run-2-xyz", "run-1-xyz", "run-0-xyz"]
        assert [r["id"] for r in journal.list_runs(workflow="a")] == ["run-2-xyz", "run-0-xyz"]
        assert journal.get_run("run-1")["workflow"] == "b"
        with pytest.raises(RunNotFoundError, match="'nope'"):
            journal.get_run("nope")
        with pytest.raises(RunNotFoundError):
            journal.get_run("run-")  # ambiguous prefix


def test_run_of_a_dead_process_is_marked_interrupted(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(proc.stdout)
    with Journal(tmp_path / "journal.db") as journal, journal.write() as conn:
        conn.execute(
            "INSERT INTO runs (id, workflow, status, started_at, host, pid) VALUES (?,?,?,?,?,?)",
            ("dead", "w", "running", time.time(), HOST, dead_pid),
        )
        conn.execute(
            "INSERT INTO node_runs (run_id, node, attempt, status) VALUES ('dead','n',1,'running')"
        )
        conn.execute(
            "INSERT INTO runs (id, workflow, status, started_at, host, pid) VALUES (?,?,?,?,?,?)",
            ("alive", "w", "running", time.time(), HOST, os.getppid()),
        )
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.mark_interrupted() == ["dead"]
        assert journal.get_run("dead")["status"] == "interrupted"
        assert journal.node_runs("dead")[0]["status"] == "interrupted"
        assert journal.get_run("alive")["status"] == "running"


def test_a_file_that_is_not_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "journal.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not a usable EtherealFabric journal"):
        Journal(bad)
    assert bad.read_bytes().startswith(b"this is not sqlite")  # never overwritten


def test_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(JournalError, match="newer EtherealFabric"):
        Journal(path)


def test_unusable_home_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot open the journal"):
        Journal(blocker / "journal.db")


def test_concurrent_writers_from_processes_never_see_locked_errors(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal(path).close()
    code = (
        "import sys; from etherealfabric.journal._journal import Journal\n"
        "j = Journal(sys.argv[1])\n"
        "for i in range(200):\n"
        "    j.write_batch(events=[(sys.argv[2], float(i), 'node_cached', 'n', None)] * 5)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), f"p{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with Journal(path) as journal:
        total = journal.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert total == 4 * 200 * 5


def test_a_reused_pid_does_not_keep_a_dead_run_or_lease_alive(tmp_path: Path) -> None:
    """pids are reused (fast, in containers): rows remember when their process started."""
    from etherealfabric.journal._journal import PID_START, process_start

    alive_pid = os.getppid()  # a live process, but not the one that wrote the rows
    assert process_start(alive_pid) is not None
    with Journal(tmp_path / "journal.db") as journal, journal.write() as conn:
        conn.execute(
            "INSERT INTO runs (id, workflow, status, started_at, host, pid, pid_start) "
            "VALUES ('old', 'w', 'running', ?, ?, ?, ?)",
            (time.time(), HOST, alive_pid, process_start(alive_pid) + 1),
        )
        conn.execute(
            "INSERT INTO runs (id, workflow, status, started_at, host, pid, pid_start) "
            "VALUES ('live', 'w', 'running', ?, ?, ?, ?)",
            (time.time(), HOST, alive_pid, process_start(alive_pid)),
        )
        conn.execute(
            "INSERT INTO leases (key, node, run_id, host, pid, pid_start, acquired_at) "
            "VALUES ('k1', 'n', 'old', ?, ?, ?, ?)",
            (HOST, os.getpid(), PID_START + 1, time.time()),  # our pid, an earlier process
        )
        conn.execute(
            "INSERT INTO leases (key, node, run_id, host, pid, pid_start, acquired_at) "
            "VALUES ('k2', 'n', 'live', ?, ?, ?, ?)",
            (HOST, alive_pid, process_start(alive_pid), time.time()),
        )
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.mark_interrupted() == ["old"]
        assert journal.get_run("live")["status"] == "running"
        assert journal.acquire_lease("k1", node="n", run_id="new")  # taken over
        assert not journal.acquire_lease("k2", node="n", run_id="new")  # really held
