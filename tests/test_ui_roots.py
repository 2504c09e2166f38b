"""The web UI over a journal whose ``events`` or ``actions`` table reads from a wrong root page,
over HTTP on a real server, with the journal of real runs (a mapped workflow): garbage over the
root page, a schema forged to point the table at another table's root, two tables' roots
swapped. Each is a 503 on every route naming the damaged journal (they showed a run without its
maps, or someone else's cache records, as if nothing were wrong)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from etherealfabric.errors import DamagedJournalError
from etherealfabric.journal import browse
from test_ui import UiServer
from test_ui_gates import answer
from test_ui_items import mapped_runs


def roots(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0"))


def garbage(path: Path, table: str, _other: str) -> None:
    size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as file:
        file.seek((roots(path)[table] - 1) * size)
        file.write(b"\xee" * size)


def empty(path: Path, table: str, _other: str) -> None:
    """Forge an empty leaf page over ``table``'s root page (a b-tree without rows, valid to
    SQLite); ``table`` may be an index."""
    size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    kind = 0x0A if table.startswith(("events_", "sqlite_autoindex")) else 0x0D
    page = bytes([kind, 0, 0, 0, 0, (size >> 8) & 0xFF, size & 0xFF, 0]).ljust(size, b"\0")
    with open(path, "r+b") as file:
        file.seek((roots(path)[table] - 1) * size)
        file.write(page)


def point(path: Path, table: str, other: str) -> None:
    """Forge the schema: ``table`` read from ``other``'s root page."""
    _schema(path, {table: roots(path)[other]})


def swap(path: Path, table: str, other: str) -> None:
    found = roots(path)
    _schema(path, {table: found[other], other: found[table]})


def _schema(path: Path, pages: dict[str, int]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema=ON")
    for name, page in pages.items():
        conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = ?", (page, name))
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home, _warm, partial = mapped_runs(tmp_path_factory.mktemp("roots"))
    conn = sqlite3.connect(home / "journal.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()  # now: closed later by the GC, it deleted its -wal while a test copied it
    return home, partial


def test_an_intact_journal_passes_the_check(made: tuple[Path, str]) -> None:
    reader = browse.open_reader(made[0] / "journal.db")
    assert reader is not None
    reader.close()


CASES = [
    (garbage, "events", ""), (garbage, "actions", ""),
    (empty, "events", ""), (empty, "actions", ""), (empty, "events_run", ""),
    (empty, "sqlite_autoindex_actions_1", ""),
    (point, "events", "node_runs"), (point, "actions", "runs"),
    (swap, "events", "node_runs"), (swap, "actions", "runs"), (swap, "events", "actions"),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "table", "other"), CASES, ids=range(len(CASES)))
def test_a_table_read_from_a_wrong_root_page_is_a_503_everywhere(
    made: tuple[Path, str],
    tmp_path: Path,
    damage: Callable[[Path, str, str], None],
    table: str,
    other: str,
) -> None:
    home = tmp_path / "home"
    shutil.copytree(made[0], home, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    damage(home / "journal.db", table, other)
    with pytest.raises(DamagedJournalError, match="damaged"):
        browse.open_reader(home / "journal.db")
    run = made[1]
    server = UiServer(home)
    try:
        for route in ("/api/runs", f"/api/runs/{run}", f"/api/runs/{run}/nodes/clean",
                      f"/api/runs/{run}/items/clean", f"/api/runs/{run}/graph", "/api/cache",
                      f"/runs/{run}", f"/runs/{run}/nodes/clean"):  # fmt: skip
            status, body = answer(server, route)
            assert status == 503, (route, status, body[:300])
            assert str(home / "journal.db") in body and "damaged" in body, body[:300]
            assert "Traceback" not in body
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr
