"""The SQLite journal: schema, WAL, runs and node runs, interrupted runs, bad files."""

from __future__ import annotations

import ast
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etherealfabric.errors import JournalError, RunNotFoundError
from etherealfabric.journal import Journal
from etherealfabric.journal._liveness import HOST
from etherealfabric.journal._schema import MIGRATIONS, SCHEMA_VERSION
from etherealfabric.states import NodeStatus, RunStatus


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
        "import sys; from etherealfabric.journal import Journal\n"
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
    from etherealfabric.journal._liveness import PID_START, process_start

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


def test_a_journal_of_an_older_schema_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    """Migrations are recorded under one name for good: a schema-1 journal gets 2 and 3 only."""
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    path = tmp_path / "journal.db"
    old = Migrations("etherealfabric.journal")
    name, first = MIGRATIONS[0]
    old(name=name)(first)
    db = Database(path)
    old.apply(db)
    db.execute(
        "INSERT INTO runs (id, workflow, status, started_at) VALUES ('r0', 'w', 'succeeded', 1)"
    )
    db.execute("PRAGMA user_version=1")
    db.conn.commit()
    db.close()
    with Journal(path) as journal:
        assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert journal.get_run("r0")["status"] == "succeeded"
        assert "pid_start" in journal.db["leases"].columns_dict
        applied = [r["name"] for r in journal.db["_sqlite_migrations"].rows]
    assert applied == [n for n, _ in MIGRATIONS]


def test_interrupted_runs_stop_only_their_unfinished_nodes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    with Journal(tmp_path / "journal.db") as journal, journal.write() as conn:
        conn.execute(
            "INSERT INTO runs (id, workflow, status, started_at, host, pid) VALUES (?,?,?,?,?,?)",
            ("dead", "w", "running", time.time(), HOST, int(proc.stdout)),
        )
        conn.executemany(
            "INSERT INTO node_runs (run_id, node, attempt, status) VALUES ('dead', ?, 1, ?)",
            [("a", "succeeded"), ("b", "retrying"), ("c", "running"), ("d", "cached")],
        )
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.mark_interrupted() == ["dead"]
        assert journal.mark_interrupted() == []  # once only
        run = journal.get_run("dead")
        assert RunStatus(run["status"]) is RunStatus.INTERRUPTED
        assert run["finished_at"] is not None
        statuses = {r["node"]: NodeStatus(r["status"]) for r in journal.node_runs("dead")}
    assert statuses == {
        "a": NodeStatus.SUCCEEDED,
        "b": NodeStatus.INTERRUPTED,
        "c": NodeStatus.INTERRUPTED,
        "d": NodeStatus.CACHED,
    }


def test_a_run_that_ends_unsuccessfully_leaves_no_node_running(tmp_path: Path) -> None:
    # a Ctrl-C may land between a node's end and its row: the run's end settles the row
    with Journal(tmp_path / "journal.db") as journal:
        for run_id in ("ok", "stopped"):
            journal.start_run(run_id, workflow="w", backend="local", nodes=4)
            with journal.write() as conn:
                conn.executemany(
                    "INSERT INTO node_runs (run_id, node, attempt, status) VALUES (?, ?, 1, ?)",
                    [(run_id, "a", "succeeded"), (run_id, "b", "running"),
                     (run_id, "c", "retrying"), (run_id, "d", "failed")],
                )  # fmt: skip
        journal.finish_run("stopped", status=RunStatus.CANCELLED, counts={"executed": 2})
        journal.finish_run("ok", status=RunStatus.SUCCEEDED, counts={"executed": 2})
        stopped = {r["node"]: r["status"] for r in journal.node_runs("stopped")}
        ok = {r["node"]: r["status"] for r in journal.node_runs("ok")}
    assert stopped == {"a": "succeeded", "b": "cancelled", "c": "cancelled", "d": "failed"}
    assert ok == {"a": "succeeded", "b": "running", "c": "retrying", "d": "failed"}  # untouched


def test_runs_are_filtered_by_status_and_start(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        journal.start_run("early", workflow="w", backend="local", nodes=1)
        journal.finish_run("early", status=RunStatus.FAILED, counts={"failed": 1})
        time.sleep(0.02)
        middle = time.time()
        journal.start_run("late", workflow="w", backend="local", nodes=1)
        journal.finish_run("late", status=RunStatus.SUCCEEDED, counts={"executed": 1})
        assert [r["id"] for r in journal.list_runs(since=middle)] == ["late"]
        assert [r["id"] for r in journal.list_runs(status="failed")] == ["early"]
        assert [r["id"] for r in journal.list_runs(limit=1)] == ["late"]
        assert journal.get_run("early")["failed"] == 1
        assert journal.get_run("late")["status"] == "succeeded"  # stored as the enum's value


def test_the_journal_keeps_the_cache_index_and_file_digests(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        assert journal.get_action("k") is None and journal.get_blob("d") is None
        journal.write_batch(
            blobs=[("d", b"bytes")], actions=[("k", "n", '{"outputs": {}}', None, time.time())]
        )
        assert journal.get_action("k") == {"outputs": {}}
        assert journal.get_blob("d") == b"bytes"
        journal.delete_action("k")
        journal.delete_blob("d")
        assert journal.get_action("k") is None and journal.get_blob("d") is None
        journal.put("/x", 3, 10, 7, 12, "abc")
        assert journal.get("/x", 3, 10, 7, 12) == "abc"
        assert journal.get("/x", 3, 11, 7, 12) is None  # touched since: hash again
        assert journal.get("/x", 3, 10, 7, 13) is None  # rewritten, mtime put back: again


def test_opening_an_up_to_date_journal_imports_no_sqlite_utils(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal(path).close()
    code = (
        "import sys; from etherealfabric.journal import Journal\n"
        "Journal(sys.argv[1]).close()\n"
        "print('sqlite_utils' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


_SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|PRAGMA\s|"
    r"CREATE\s+(TABLE|INDEX))\b",
    re.IGNORECASE | re.DOTALL,
)


def test_only_the_journal_layer_speaks_sql() -> None:
    package = Path(__file__).resolve().parents[1] / "src" / "etherealfabric"
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "journal":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(d) for d in _docstrings(tree)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("sqlite3", "sqlite_utils") for n in names):
                    found.append(f"{path.name}:{node.lineno} imports SQLite")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and _SQL.search(node.value)
            ):
                found.append(f"{path.name}:{node.lineno} {node.value[:60]!r}")
    assert found == []
    assert not hasattr(Journal, "query")  # no public door for other layers' SQL


def _docstrings(tree: ast.AST) -> list[ast.AST]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.append(body[0].value)
    return found


def test_an_interrupt_right_after_begin_leaves_no_open_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C landing between BEGIN IMMEDIATE and the block used to leave a transaction open:
    later writes joined it and nothing was ever committed (a cancelled run stayed 'running')."""
    from etherealfabric.journal import _connection

    real_retry = _connection.retry
    calls = {"n": 0}

    def interrupted_once(fn):  # type: ignore[no-untyped-def]
        result = real_retry(fn)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return result

    with Journal(tmp_path / "journal.db") as journal:
        monkeypatch.setattr(_connection, "retry", interrupted_once)
        with pytest.raises(KeyboardInterrupt), journal.write():
            pass
        assert not journal.conn.in_transaction
        monkeypatch.setattr(_connection, "retry", real_retry)
        journal.start_run("r1", workflow="w", backend="local", nodes=1)
    with Journal(tmp_path / "journal.db") as again:
        assert again.get_run("r1")["status"] == "running"


def test_a_new_journal_is_built_unsynced_beside_then_opened_at_its_own_sync_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new journal is built in a side file with ``synchronous=OFF`` and no rollback journal,
    switched to WAL there (``journal/_create.py``); the journal's own connection then sets its
    ``synchronous`` (NORMAL; a durable journal keeps FULL) before anything else."""
    statements: list[tuple[str, str]] = []
    connect = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        name = Path(str(args[0])).name
        conn.set_trace_callback(lambda sql: statements.append((name, sql)))
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    for durable, level in ((False, 1), (True, 2)):
        statements.clear()
        with Journal(tmp_path / f"j{durable}" / "journal.db", durable=durable) as journal:
            assert journal.conn.execute("PRAGMA synchronous").fetchone()[0] == level
            assert journal.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        pragmas = [
            (name, s) for name, s in statements
            if s.startswith(("PRAGMA synchronous", "PRAGMA journal"))
        ]  # fmt: skip
        side = [s for name, s in pragmas if name.startswith(".journal.db.new-")]
        assert side == [
            "PRAGMA synchronous=OFF", "PRAGMA journal_mode=OFF", "PRAGMA journal_mode=WAL"
        ]  # fmt: skip
        own = [s for name, s in pragmas if name == "journal.db"]
        assert own[:2] == [
            f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}",
            "PRAGMA journal_mode=WAL",
        ]
        assert sorted(p.name for p in (tmp_path / f"j{durable}").iterdir()) == ["journal.db"]


def test_a_run_shorter_than_a_checkpoint_tick_opens_no_checkpoint_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background checkpointer connects at its first tick: a short run opens (and syncs)
    nothing more; a longer one is checkpointed as before."""
    from etherealfabric.journal import _checkpoint

    with Journal(tmp_path / "journal.db") as journal:
        opened: list[object] = []
        connect = sqlite3.connect
        monkeypatch.setattr(
            sqlite3, "connect", lambda *a, **k: opened.append(a) or connect(*a, **k)
        )
        journal.start_checkpoints()
        journal.start_run("r1", workflow="w", backend="local", nodes=1)
        journal.stop_checkpoints()
        assert opened == []
        monkeypatch.setattr(_checkpoint, "EVERY_SECONDS", 0.01)
        journal.start_checkpoints()
        journal.start_run("r2", workflow="w", backend="local", nodes=1)
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            time.sleep(0.01)
        journal.stop_checkpoints()
        assert len(opened) == 1
