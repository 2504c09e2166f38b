"""Reads the audit hook of run/_reads.py once missed, each a stale cache hit found by the
user-level sweep: folders a node lists (run/_folders.py), paths that come from upstream nodes,
``.py`` files read as data, SQLite databases (and their ``-wal`` file), ``/dev/shm``."""

from __future__ import annotations

import glob
import json
import logging
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import Workflow, node, untracked
from etherealfabric.journal import Journal


def records(home: Path) -> dict[str, dict[str, Any]]:
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute("SELECT node, record FROM actions").fetchall()
    return {node: json.loads(record) for node, record in rows}


def _by_glob() -> list[str]:
    return glob.glob("data/*.csv")


def _by_listdir() -> list[str]:
    return [os.path.join("data", n) for n in os.listdir("data") if n.endswith(".csv")]


def _by_scandir() -> list[str]:
    with os.scandir("data") as entries:
        return [e.path for e in entries if e.name.endswith(".csv")]


def _by_path_glob() -> list[str]:
    return [str(p) for p in Path("data").glob("*.csv")]


def _by_iterdir() -> list[str]:
    return [str(p) for p in Path("data").iterdir() if p.suffix == ".csv"]


@pytest.mark.parametrize(
    "find",
    [_by_glob, _by_listdir, _by_scandir, _by_path_glob, _by_iterdir],
    ids=lambda f: f.__name__,
)
def test_a_file_added_to_or_removed_from_a_listed_folder_runs_the_node_again(
    tmp_path: Path, home: Path, find: Callable[[], list[str]]
) -> None:
    pd = pytest.importorskip("pandas")
    Path("data").mkdir()
    Path("data/a.csv").write_text("v\n1\n2\n")
    Path("data/b.csv").write_text("v\n10\n")

    @node
    def total() -> int:
        return int(sum(pd.read_csv(p).v.sum() for p in find()))

    with Workflow("listed", root=".") as wf:
        out = total()
    assert wf.execute()[out] == 13
    reads = records(home)["total"]["reads"]
    assert sorted(reads) == ["./data/", "./data/a.csv", "./data/b.csv"]
    # listed through a pattern: its listing (the files it read are checked one by one); named
    # by the bare word handed to Path() or os.listdir(): its tree, whatever reads in it (a
    # native reader too: run/_pathcalls.py)
    assert set(reads["./data/"]) == ({"listing"} if find is _by_glob else {"tree"})
    assert wf.execute().cached == 1
    Path("data/notes.md").touch()  # (a file the node's filter leaves out is a change too)
    assert wf.execute()[out] == 13

    Path("data/c.csv").write_text("v\n100\n")
    added = wf.execute()
    assert (added[out], added.executed) == (113, 1)
    assert wf.execute().cached == 1
    os.remove("data/b.csv")
    removed = wf.execute()
    assert (removed[out], removed.executed) == (103, 1)
    assert wf.execute().cached == 1


def test_a_path_an_upstream_node_returns_is_named_by_its_consumer(
    tmp_path: Path, home: Path
) -> None:
    """``total`` gets the path from ``locate``: pyarrow opens it in C++, unseen; the value the
    node received names it."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    Path("data").mkdir()
    pd.DataFrame({"amount": [1, 2, 3]}).to_parquet("data/sales.parquet")

    @node
    def locate() -> str:
        return os.path.join("data", "sales" + ".parquet")  # built: no constant names it

    @node
    def total(path: str) -> int:
        return int(pd.read_parquet(path).amount.sum())

    with Workflow("upstream", root=".") as wf:
        out = total(locate())
    assert wf.execute()[out] == 6
    assert list(records(home)["total"]["reads"]) == ["./data/sales.parquet"]
    assert wf.execute().cached == 2
    pd.DataFrame({"amount": [1, 2, 3, 4]}).to_parquet("data/sales.parquet")
    again = wf.execute()
    assert (again[out], again.executed) == (10, 1)  # locate stays cached
    assert wf.execute().cached == 2


@pytest.mark.parametrize("how", ["runpy", "spec", "text"])
def test_a_python_file_read_as_data_is_checked(tmp_path: Path, home: Path, how: str) -> None:
    Path("configs").mkdir()
    Path("configs/exp.py").write_text("RATE = 2\n")

    @node
    def rate(name: str) -> int:
        path = os.path.join("configs", name + ".py")
        if how == "runpy":
            import runpy

            return int(runpy.run_path(path)["RATE"])
        if how == "spec":
            import importlib.util

            spec = importlib.util.spec_from_file_location("exp_config", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return int(module.RATE)
        with open(path) as fh:  # read as text
            return int(fh.read().split("=")[1])

    with Workflow("config", root=".") as wf:
        out = rate("exp")
    assert wf.execute()[out] == 2
    # (importlib makes the path absolute: then it is noted relative to the root)
    assert [r.removeprefix("./") for r in records(home)["rate"]["reads"]] == ["configs/exp.py"]
    assert wf.execute().cached == 1
    Path("configs/exp.py").write_text("RATE = 3\n")
    again = wf.execute()
    assert (again[out], again.executed) == (3, 1)


def test_a_module_the_node_imports_is_code_not_a_read(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing opens the module's source and lists its folder: neither is a read."""
    name = f"helper_{uuid.uuid4().hex[:8]}"
    Path(f"{name}.py").write_text("FACTOR = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    @node
    def scaled(n: int) -> int:
        import importlib

        return n * int(importlib.import_module(name).FACTOR)

    with Workflow("imports", root=".") as wf:
        out = scaled(2)
    assert wf.execute()[out] == 6
    assert "reads" not in records(home)["scaled"]
    Path("other.txt").write_text("a new file in the module's folder\n")
    assert wf.execute().cached == 1


@pytest.fixture
def database() -> Iterator[sqlite3.Connection]:
    """data.db in WAL mode, with rows, held open (so its -wal file is not checkpointed)."""
    conn = sqlite3.connect("data.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.execute("INSERT INTO t VALUES (1), (2)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield conn
    conn.close()


def test_a_sqlite_database_and_its_wal_file_are_checked(
    tmp_path: Path, home: Path, database: sqlite3.Connection
) -> None:
    @node
    def summed(name: str) -> int:
        conn = sqlite3.connect(f"{name}.db")  # built: SQLite opens it in C
        try:
            return int(conn.execute("SELECT sum(v) FROM t").fetchone()[0])
        finally:
            conn.close()

    with Workflow("sqlite", root=".") as wf:
        out = summed("data")
    assert wf.execute()[out] == 3
    entry = records(home)["summed"]["reads"]["./data.db"]
    assert set(entry) == {"digest", "size", "wal"}
    assert wf.execute().cached == 1

    database.execute("INSERT INTO t VALUES (10)")  # committed to data.db-wal only
    assert os.path.getsize("data.db-wal") > 0
    in_wal = wf.execute()
    assert (in_wal[out], in_wal.executed) == (13, 1)
    assert wf.execute().cached == 1

    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # now in data.db: the same rows
    database.execute("DELETE FROM t WHERE v = 1")
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpointed = wf.execute()
    assert (checkpointed[out], checkpointed.executed) == (12, 1)


def test_a_file_in_dev_shm_is_data(tmp_path: Path, home: Path) -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    shared = Path("/dev/shm") / f"ef-test-{uuid.uuid4().hex}.txt"
    shared.write_text("5\n")
    try:

        @node
        def read_shared(path: str) -> int:
            with open(path) as fh:
                return int(fh.read())

        with Workflow("shm", root=".") as wf:
            out = read_shared(str(shared))
        assert wf.execute()[out] == 5
        assert list(records(home)["read_shared"]["reads"]) == [str(shared)]
        assert wf.execute().cached == 1
        shared.write_text("6\n")
        again = wf.execute()
        assert (again[out], again.executed) == (6, 1)
    finally:
        shared.unlink()


def test_a_file_the_node_only_names_is_said_so_when_it_changes(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file the node writes through another program (unseen) and names: checked like a
    read, but the log says it names it."""

    @node
    def make() -> int:
        subprocess.run(["sh", "-c", 'echo 1 > "$0"', "inter.txt"], check=True)
        return 1

    with Workflow("names", root=".") as wf:
        make()
    wf.execute()
    assert records(home)["make"]["reads"]["./inter.txt"]["named"] is True
    Path("inter.txt").write_text("edited\n")
    with caplog.at_level(logging.INFO, logger="etherealfabric.run"):
        assert wf.execute().executed == 1
    assert "'./inter.txt', a file it names, changed since its cached result" in caplog.text


def test_listings_left_out(tmp_path: Path, home: Path) -> None:
    """Not a read: the listing of an untracked() folder, of a ``writes=`` output folder, of a
    temporary folder gone when the node is done; nor a database the node creates."""
    Path("inbox").mkdir()
    Path("inbox/a.txt").write_text("a")

    @node(writes=["out/"])
    def tidy(name: str) -> int:
        import tempfile

        with untracked("inbox"):
            count = len(os.listdir("inbox"))
        os.makedirs("out", exist_ok=True)
        Path("out/result.txt").write_text("r")
        count += len(os.listdir("out"))
        with tempfile.TemporaryDirectory() as scratch:
            count += len(os.listdir(scratch))
        conn = sqlite3.connect(f"{name}.db")  # created here: its own output
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.commit()
        conn.close()
        return count

    with Workflow("left-out", root=".") as wf:
        out = tidy("made")
    assert wf.execute()[out] == 2
    assert "reads" not in records(home)["tidy"]
    Path("inbox/b.txt").write_text("b")
    assert wf.execute().cached == 1


def test_a_secret_that_names_a_file_is_not_recorded(tmp_path: Path, home: Path) -> None:
    """Arguments are looked at as the node received them, but never a secret's value: it
    would be written in the record."""
    from etherealfabric import Secret

    Path("hunter2.key").write_text("k")

    @node
    def login(token: str) -> int:
        return len(token)

    with Workflow("secret", root=".") as wf:
        out = login(Secret("hunter2.key"))
    assert wf.execute()[out] == len("hunter2.key")
    assert "hunter2" not in json.dumps(records(home)["login"])


def test_a_long_list_of_paths_from_upstream(tmp_path: Path, home: Path) -> None:
    """Of many texts (looked up by listing their folders, not a stat each), the ones naming
    files count, read by another program here."""
    Path("data").mkdir()
    for i in range(3):
        Path(f"data/f{i}.txt").write_text(f"{i}\n")

    @node
    def candidates() -> list[str]:
        return [os.path.join("data", f"f{i}.txt") for i in range(100)] + ["x.5", "a b.c"] * 50

    @node
    def joined(paths: list[str]) -> str:
        existing = [p for p in paths if os.path.exists(p)]
        return subprocess.run(["cat", *existing], capture_output=True, text=True).stdout

    with Workflow("many", root=".") as wf:
        out = joined(candidates())
    assert wf.execute()[out] == "0\n1\n2\n"
    reads = records(home)["joined"]["reads"]
    assert sorted(p for p, r in reads.items() if "missing" not in r) == [
        f"./data/f{i}.txt" for i in range(3)
    ]  # and those not there, but for the texts that are no file names
    assert sorted(p for p, r in reads.items() if r == {"missing": True}) == sorted(
        f"./data/f{i}.txt" for i in range(3, 100)
    )
    Path("data/f1.txt").write_text("one\n")
    again = wf.execute()
    assert (again[out], again.executed) == ("0\none\n2\n", 1)
    Path("data/f50.txt").write_text("50\n")  # one not there appears
    again = wf.execute()
    assert (again[out], again.executed) == ("0\none\n2\n50\n", 1)


@pytest.mark.parametrize("timeout", [None, 60], ids=["worker", "killable-child"])
def test_listings_and_databases_on_the_process_backend(
    tmp_path: Path, home: Path, timeout: int | None
) -> None:
    Path("data").mkdir()
    Path("data/a.txt").write_text("1\n")
    conn = sqlite3.connect("n.db")
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.execute("INSERT INTO t VALUES (5)")
    conn.commit()
    conn.close()

    @node(timeout=timeout)
    def tally(name: str) -> int:
        files = sum(int(Path(p).read_text()) for p in glob.glob("data/*.txt"))
        db = sqlite3.connect(f"{name}.db")
        try:
            return files + int(db.execute("SELECT sum(v) FROM t").fetchone()[0])
        finally:
            db.close()

    with Workflow("procs", root=".") as wf:
        out = tally("n")
    backend: dict[str, Any] = {"backend": "processes", "max_workers": 1}
    assert wf.execute(**backend)[out] == 6
    assert sorted(records(home)["tally"]["reads"]) == ["./data/", "./data/a.txt", "./n.db"]
    assert wf.execute(**backend).cached == 1
    Path("data/b.txt").write_text("10\n")
    assert wf.execute(**backend)[out] == 16
    conn = sqlite3.connect("n.db")
    conn.execute("INSERT INTO t VALUES (100)")
    conn.commit()
    conn.close()
    again = wf.execute(**backend)
    assert (again[out], again.executed) == (116, 1)
