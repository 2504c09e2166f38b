"""The journal migrates itself without sqlite-utils (issue 14), in sqlite-utils' own format.

sqlite-utils' ``sqlite_utils.db`` imports pandas, numpy and pyarrow when they are installed:
a run must not pay that (nor load them) unless the workflow's own values need them. The
journal's migrations are applied with sqlite3 and recorded in ``_sqlite_migrations`` exactly as
sqlite-utils records them, so its ``Migrations`` sees the same state on journals made either way.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from etherealfabric.journal import Journal
from etherealfabric.journal._schema import (
    MIGRATION_SCRIPTS,
    MIGRATIONS,
    SCHEMA_VERSION,
    sqlite_utils_migrations,
)

NAMES = [name for name, _ in MIGRATION_SCRIPTS]
HEAVY = ("pandas", "numpy", "pyarrow", "sqlite_utils")

PROGRAM = r"""
import json, sys
from etherealfabric import Workflow, node

@node
def leaf(i):
    return {"n": i, "text": "x" * 100}

@node
def step(x):
    return {"n": x["n"] + 1, "text": x["text"]}

def build():
    with Workflow("light") as wf:
        x = leaf(0)
        for _ in range(20):
            x = step(x)
    return wf

first, second = build().execute(), build().execute()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"executed": first.executed, "cached": second.cached, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


def _run(home: Path) -> dict[str, object]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home), "ETHEREALFABRIC_LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_whole_run_cold_then_warm_loads_no_heavy_package(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cold = _run(home)  # creates the journal, runs 21 nodes, then runs them warm
    assert cold == {"executed": 21, "cached": 21, "heavy": []}
    warm = _run(home)  # an existing journal, a fresh process
    assert warm == {"executed": 0, "cached": 21, "heavy": []}


def _sqlite_utils_view(path: Path) -> tuple[list[str], list[str], list[str]]:
    db = Database(path)
    try:
        migrations = sqlite_utils_migrations()
        applied = migrations.applied(db)
        for row in applied:  # sqlite-utils' applied_at: str() of an aware UTC datetime
            assert datetime.datetime.fromisoformat(row.applied_at).tzinfo is not None
        return (
            [m.name for m in applied],
            [m.name for m in migrations.pending(db)],
            [m.name for m in Migrations("another.set").applied(db)],
        )
    finally:
        db.close()


def _bookkeeping_schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = '_sqlite_migrations' "
            "ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def _schema(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "_sqlite_migrations"
        ]
        return {t: conn.execute(f'PRAGMA table_info("{t}")').fetchall() for t in sorted(tables)}
    finally:
        conn.close()


def test_a_new_journal_is_recorded_as_sqlite_utils_records_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal(path).close()
    assert _sqlite_utils_view(path) == (NAMES, [], [])

    # the same bookkeeping table, index and tables as sqlite-utils' own path makes
    reference = tmp_path / "reference.db"
    db = Database(reference)
    sqlite_utils_migrations().apply(db)
    db.close()
    assert _bookkeeping_schema(path) == _bookkeeping_schema(reference)
    assert _schema(path) == _schema(reference)

    # sqlite-utils applying the set again finds nothing to do and changes nothing
    db = Database(path)
    sqlite_utils_migrations().apply(db)
    db.close()
    assert _sqlite_utils_view(path) == (NAMES, [], [])


def test_a_journal_made_by_sqlite_utils_is_migrated_on_by_sqlite3(tmp_path: Path) -> None:
    """An older journal (the previous code path: sqlite-utils' Migrations, schema 2) gets the
    remaining migrations recorded after the ones sqlite-utils recorded, in order."""
    path = tmp_path / "journal.db"
    old = Migrations("etherealfabric.journal")
    for name, fn in MIGRATIONS[:2]:
        old(name=name)(fn)
    db = Database(path)
    old.apply(db)
    db.execute(
        "INSERT INTO leases (key, run_id, host, pid, acquired_at) VALUES ('k', 'r', 'h', 1, 0)"
    )
    db.execute("PRAGMA user_version=2")
    db.conn.commit()
    db.close()
    with Journal(path) as journal:
        assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {r[1] for r in journal.conn.execute("PRAGMA table_info(leases)")}
        assert {"pid_start", "expires_at"} <= columns
        assert journal.conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 1
    assert _sqlite_utils_view(path) == (NAMES, [], [])


def test_a_journal_stamped_old_but_fully_recorded_runs_nothing_twice(tmp_path: Path) -> None:
    """Recorded names, not the version stamp, decide what runs (a stamp lost or older)."""
    path = tmp_path / "journal.db"
    Journal(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=0")
    conn.commit()
    conn.close()
    Journal(path).close()  # would fail on CREATE TABLE runs if 0001 ran again
    assert _sqlite_utils_view(path) == (NAMES, [], [])


def test_a_bookkeeping_table_of_another_shape_is_left_to_sqlite_utils(tmp_path: Path) -> None:
    """A ``_sqlite_migrations`` without sqlite-utils' ``id`` key (written by another tool) is
    converted by sqlite-utils itself, and the journal still migrates."""
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATION_SCRIPTS[0][1])
    conn.execute(
        "CREATE TABLE _sqlite_migrations (migration_set TEXT, name TEXT, applied_at TEXT, "
        "PRIMARY KEY (migration_set, name))"
    )
    conn.execute(
        "INSERT INTO _sqlite_migrations VALUES ('etherealfabric.journal', '0001_initial', ?)",
        (str(datetime.datetime.now(datetime.timezone.utc)),),
    )
    conn.commit()
    conn.close()
    with Journal(path) as journal:
        assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _sqlite_utils_view(path) == (NAMES, [], [])
