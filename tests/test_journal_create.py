"""A new journal is built whole beside its final path and linked into place (journal/_create.py).

Concurrent first runs on one empty home (threads, processes) all end up on one journal; a
creator SIGKILLed at any moment leaves no journal or a complete one, never half of one under
the real name, and its side file goes with the next creator or ``cache gc``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from etherealfabric.journal import Journal
from etherealfabric.journal._create import (
    create_journal,
    remove_stale_side_files,
    side_file,
    stale_side_files,
)
from etherealfabric.journal._gc import collect_garbage
from etherealfabric.journal._liveness import PID_START
from etherealfabric.journal._schema import SCHEMA_VERSION
from etherealfabric.store import LocalStore

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["ETHEREALFABRIC_HOME"] = str(home)
    return env


def _sides(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".journal.db.new-"))


def _check_complete(path: Path) -> None:
    """``path`` is a whole journal: WAL in its header, the current schema, intact."""
    assert path.read_bytes()[18:20] == b"\x02\x02"  # WAL (read and write versions)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == (
            SCHEMA_VERSION
        )
    finally:
        conn.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- concurrent creators ---------------------------------------------------------------------
RACER = r"""
import os, sys, time
from pathlib import Path
from etherealfabric import Workflow, node

@node
def base():
    return 20

@node
def add(x, k):
    return x + k

with Workflow("race") as wf:
    add(base(), int(sys.argv[2]))
barrier = Path(sys.argv[1])
(barrier / f"ready-{os.getpid()}").touch()
while not (barrier / "go").exists():
    time.sleep(0.001)
print(wf.execute().run_id)
"""


def test_four_processes_started_together_on_an_empty_home_share_one_journal(
    tmp_path: Path,
) -> None:
    home, barrier = tmp_path / "home", tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), str(k)],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (home / "journal.db").exists()  # nobody opened it before the start
    (barrier / "go").touch()
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        run_ids.append(out.strip().splitlines()[-1])
    _check_complete(home / "journal.db")
    assert _sides(home) == []
    with Journal(home / "journal.db", read_only=True) as journal:
        rows = journal._rows("SELECT id, status FROM runs")
    assert sorted(r["id"] for r in rows) == sorted(run_ids)
    assert {r["status"] for r in rows} == {"succeeded"}


def test_threads_creating_one_journal_at_once_all_open_it(tmp_path: Path) -> None:
    path = tmp_path / "home" / "journal.db"
    start = threading.Barrier(6)
    made: list[bool] = []
    errors: list[BaseException] = []

    def create(k: int) -> None:
        try:
            start.wait()
            made.append(create_journal(path))
            with Journal(path) as journal, journal.write() as conn:
                conn.execute("INSERT INTO blobs VALUES (?, x'00')", (str(k),))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert made.count(True) == 1  # one link won; the others opened its journal
    _check_complete(path)
    with Journal(path) as journal:
        assert journal._value("SELECT count(*) FROM blobs") == 6
    assert _sides(path.parent) == []


# -- creators killed mid-build ----------------------------------------------------------------
CREATOR = r"""
import sys
from itertools import count
from pathlib import Path
from etherealfabric.journal import Journal
root = Path(sys.argv[1])
print("ready", flush=True)
for i in count():
    Journal(root / str(i) / "journal.db").close()
"""


def test_a_creator_killed_at_any_moment_leaves_no_journal_or_a_whole_one(
    tmp_path: Path,
) -> None:
    """A process that creates journal after journal, SIGKILLed at random moments: each home
    holds a complete journal or none; a normal run then opens each one, removing the side
    files of the killed creator. Rounds go on until a kill has landed mid-build."""
    rng = random.Random(14)
    left_side = False
    for round_ in range(40):
        root = tmp_path / f"r{round_}"
        proc = subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(root)],
            env=_env(tmp_path / "unused"), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.3))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        for home in sorted(p for p in root.iterdir()) if root.exists() else []:
            left_side |= bool(_sides(home))
            existed = (home / "journal.db").exists()
            if existed:
                _check_complete(home / "journal.db")
            with Journal(home / "journal.db") as journal:  # made, or opened as it is
                assert journal.schema == SCHEMA_VERSION
            _check_complete(home / "journal.db")
            if not existed:  # the next creator removed the killed one's side files
                assert _sides(home) == []
            remove_stale_side_files(home / "journal.db")  # as `cache gc` does
            assert _sides(home) == []
            _check_complete(home / "journal.db")  # (a side file killed before its unlink
            # was a second name of the journal: removing it leaves the journal whole)
        if left_side and round_ >= 4:
            break
    assert left_side, "no kill landed while a journal was being built"


def test_side_files_of_dead_creators_go_with_the_next_creator(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dead = home / f".journal.db.new-{_dead_pid()}-0-1"
    dead.write_bytes(b"half a journal")
    dead.with_name(dead.name + "-wal").write_bytes(b"x")
    live = home / f".journal.db.new-{os.getpid()}-{PID_START or 0}-1"  # this process: alive
    live.write_bytes(b"being built")
    other = home / ".journal.db.new-notapid"  # not a side file's name: never touched
    other.write_bytes(b"?")
    with Journal(home / "journal.db") as journal:
        assert journal.schema == SCHEMA_VERSION
    _check_complete(home / "journal.db")
    assert _sides(home) == sorted([live.name, other.name])


def test_cache_gc_removes_side_files_of_dead_creators(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Journal(home / "journal.db"):
        pass
    dead = home / f".journal.db.new-{_dead_pid()}-0-1"
    dead.write_bytes(b"0123456789")
    live = side_file(home / "journal.db")  # this thread's name: a creator still going
    live.write_bytes(b"x")
    assert stale_side_files(home / "journal.db") == [(dead, 10)]
    store = LocalStore(home)
    with Journal(home / "journal.db") as journal:
        dry = collect_garbage(journal, store, dry_run=True)
        assert dry.temp_files_removed == 1 and dead.exists()
        report = collect_garbage(journal, store)
    assert report.temp_files_removed == 1 and report.bytes_freed >= 10
    assert _sides(home) == [live.name]


def test_a_home_without_hard_links_creates_the_journal_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``os.link`` is refused (a file system without hard links), the journal is made
    in place as before; no side file is left."""

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    path = tmp_path / "home" / "journal.db"
    with Journal(path) as journal:
        assert journal.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    _check_complete(path)
    assert _sides(path.parent) == []


def _schema(path: Path) -> dict[str, object]:
    """Every table's columns, indexes (their columns, uniqueness, partial condition) and the
    migrations recorded: what a journal's schema means, whatever its statements' spacing."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        indexes = conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
        return {
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "columns": {t: conn.execute(f'PRAGMA table_info("{t}")').fetchall() for t in tables},
            "indexes": {t: sorted(conn.execute(f'PRAGMA index_list("{t}")')) for t in tables},
            "index_columns": {
                name: conn.execute(f'PRAGMA index_xinfo("{name}")').fetchall()
                for name, _, _ in indexes
            },
            "index_sql": indexes,
            "migrations": conn.execute(
                "SELECT id, migration_set, name FROM _sqlite_migrations ORDER BY id"
            ).fetchall(),
        }
    finally:
        conn.close()


def test_a_journal_made_whole_has_the_schema_the_migrations_make(tmp_path: Path) -> None:
    """A new journal is made from one script (``_schema._FRESH``), not by replaying the
    migrations: it must mean exactly what they make in an empty file."""
    whole = tmp_path / "a" / "journal.db"
    with Journal(whole):
        pass
    in_place = tmp_path / "b" / "journal.db"
    in_place.parent.mkdir()
    sqlite3.connect(in_place).close()  # an empty file: migrated where it is, step by step
    with Journal(in_place):
        pass
    made = _schema(whole)
    assert made == _schema(in_place)
    assert made["version"] == SCHEMA_VERSION and len(made["migrations"]) == SCHEMA_VERSION  # type: ignore[arg-type]
