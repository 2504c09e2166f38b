"""Data files a node opens by a path written in its code (``pd.read_csv("data.csv")``,
``open("threshold.txt")``): noted while it runs, checked before each cache hit, so an edited
file re-runs the node instead of serving the result computed from the old content."""

from __future__ import annotations

import glob
import inspect
import json
import logging
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import File, Workflow, node, untracked
from etherealfabric.journal import Journal
from etherealfabric.run import _reads


@node
def above(threshold_file: str) -> int:
    """Counts the rows of data.csv above the number in ``threshold_file`` (both read by path)."""
    import pandas as pd

    with open(threshold_file) as fh:
        threshold = float(fh.read())
    return int((pd.read_csv("data.csv").v > threshold).sum())


@node
def doubled(n: int) -> int:
    return 2 * n


def flow() -> tuple[Workflow, Any]:
    with Workflow("reads", root=".") as wf:
        out = doubled(above("threshold.txt"))
    return wf, out


def records(home: Path) -> dict[str, dict[str, Any]]:
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute("SELECT node, record FROM actions").fetchall()
    return {node: json.loads(record) for node, record in rows}


def test_an_edited_file_that_a_node_read_runs_it_again(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("pandas")
    Path("data.csv").write_text("v\n1\n2\n")
    Path("threshold.txt").write_text("1\n")
    wf, out = flow()
    first = wf.execute()
    assert (first[out], first.executed) == (2, 2)
    reads = records(home)["above"]["reads"]
    assert sorted(reads) == ["./data.csv", "./threshold.txt"]  # as opened: from the cwd
    assert reads["./data.csv"]["size"] == len("v\n1\n2\n")

    assert wf.execute().cached == 2  # nothing changed

    Path("data.csv").write_text("v\n1\n2\n5\n")  # a new row above the threshold
    with caplog.at_level(logging.INFO, logger="etherealfabric.cache"):
        second = wf.execute()
    assert (second[out], second.executed) == (4, 2)
    assert "'./data.csv', a file it read, changed since its cached result" in caplog.text

    os.utime("threshold.txt", (1_600_000_000, 1_600_000_000))  # touched: same content
    Path("data.csv").write_text("v\n1\n2\n5\n")  # rewritten with the same bytes
    third = wf.execute()
    assert (third[out], third.cached) == (4, 2)

    Path("threshold.txt").write_text("3\n")  # one row above 3, as in the first run
    fourth = wf.execute()
    assert (fourth[out], fourth.executed, fourth.cached) == (2, 1, 1)  # doubled(1): cached


def test_a_read_file_deleted_on_this_machine_runs_the_node_again(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An optional file the node reads when it is there (``overrides.csv``), deleted since: the
    node runs again and takes the other branch (before, the old result was served)."""
    Path("overrides.txt").write_text("100\n")

    @node
    def settings() -> int:
        if os.path.exists("overrides.txt"):
            return int(Path("overrides.txt").read_text())
        return 1

    with Workflow("optional", root=".") as wf:
        out = settings()
    assert wf.execute()[out] == 100
    assert records(home)["settings"]["read_on"] == os.uname().nodename
    assert wf.execute().cached == 1
    os.remove("overrides.txt")
    with caplog.at_level(logging.INFO, logger="etherealfabric.cache"):
        again = wf.execute()
    assert (again[out], again.executed) == (1, 1)
    assert "'./overrides.txt', a file it read, is gone since its cached result" in caplog.text
    assert wf.execute().cached == 1  # (now recorded as not there)


def test_a_file_outside_the_project_handed_between_nodes_then_removed_keeps_the_hits(
    tmp_path: Path, home: Path
) -> None:
    """A node writes a file outside the project, the next reads it, a third removes it: the
    reader's absolute read being gone is no change (it would run again and fail)."""
    (tmp_path / "proj").mkdir()
    spool = str(tmp_path / "spool.txt")

    @node
    def fetch() -> str:
        Path(spool).write_text("42")
        return spool

    @node
    def parse(path: str) -> int:
        return int(Path(path).read_text())

    @node
    def cleanup(value: int, path: str) -> int:
        os.remove(path)
        return value

    def build() -> Workflow:
        with Workflow("handoff", root=str(tmp_path / "proj")) as wf:
            path = fetch()
            cleanup(parse(path), path)
        return wf

    assert build().execute()["cleanup"]["result"] == 42
    assert not os.path.exists(spool)
    again = build().execute()
    assert again.cached == 3 and again["cleanup"]["result"] == 42


def test_a_file_read_on_another_machine_that_is_not_here_keeps_the_hit(
    tmp_path: Path, home: Path
) -> None:
    """A teammate sharing the store without the raw data still gets the result: the record
    was made on another machine (its ``read_on``)."""
    Path("threshold.txt").write_text("7\n")

    @node
    def read_number() -> int:
        return int(Path("threshold.txt").read_text())

    with Workflow("gone", root=".") as wf:
        out = read_number()
    assert wf.execute()[out] == 7
    with Journal(home / "journal.db") as journal:  # as if fetched from a teammate's store
        ((key, text),) = journal.conn.execute("SELECT key, record FROM actions").fetchall()
        record = json.loads(text)
        record["read_on"] = "a-teammates-laptop"
        journal.conn.execute(
            "UPDATE actions SET record = ? WHERE key = ?", (json.dumps(record), key)
        )
        journal.conn.commit()
    os.remove("threshold.txt")
    again = wf.execute()
    assert (again[out], again.cached) == (7, 1)
    Path("threshold.txt").write_text("8\n")  # here, with other content: it runs
    third = wf.execute()
    assert (third[out], third.executed) == (8, 1)


def test_a_file_in_the_users_home_folder_is_each_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~/data/x.csv`` outside the root is recorded as ``~/...``: a teammate sharing the store
    (here: another HOME) is checked against her own copy, not served alice's result."""
    for user, value in (("alice", "10\n"), ("bob", "500\n")):
        (tmp_path / user / "data").mkdir(parents=True)
        (tmp_path / user / "data" / "x.csv").write_text(value)
    (tmp_path / "proj").mkdir()

    @node
    def mine() -> int:
        return int(Path(os.path.expanduser("~/data/x.csv")).read_text())

    def run() -> Any:
        with Workflow("home-files", root=str(tmp_path / "proj"), home=tmp_path / "h") as wf:
            mine()
        return wf.execute()

    monkeypatch.setenv("HOME", str(tmp_path / "alice"))
    assert run()["mine"]["result"] == 10
    assert list(records(tmp_path / "h")["mine"]["reads"]) == [os.path.join("~", "data", "x.csv")]
    assert run().cached == 1
    monkeypatch.setenv("HOME", str(tmp_path / "bob"))
    again = run()
    assert (again["mine"]["result"], again.executed) == (500, 1)


def test_a_file_opened_after_the_node_changed_folder_is_the_one_it_read(
    tmp_path: Path, home: Path
) -> None:
    """``os.chdir("sub")`` then ``open("data.csv")`` reads ``sub/data.csv``: that file is the
    one recorded and checked (before, ``./data.csv`` of the starting folder was, not there)."""
    Path("sub").mkdir()
    Path("sub/data.csv").write_text("x\n1\n")

    @node
    def rows() -> int:
        start = os.getcwd()
        os.chdir("sub")
        try:
            return len(Path("data.csv").read_text().splitlines()) - 1
        finally:
            os.chdir(start)

    with Workflow("chdir", root=".") as wf:
        out = rows()
    assert wf.execute()[out] == 1
    assert "sub/data.csv" in records(home)["rows"]["reads"]
    assert wf.execute().cached == 1
    Path("sub/data.csv").write_text("x\n1\n2\n3\n")
    again = wf.execute()
    assert (again[out], again.executed) == (3, 1)


def load_in_threads(folder: str) -> list[int]:
    """A helper reading each file of ``folder`` in a thread pool of its own."""
    from concurrent.futures import ThreadPoolExecutor

    names = sorted(os.listdir(folder))
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda n: int(Path(folder, n).read_text()), names))


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_files_read_in_threads_the_node_starts_are_its_reads(
    tmp_path: Path, home: Path, backend: str
) -> None:
    """``ThreadPoolExecutor().map(read, paths)`` in a helper: the files opened in the pool's
    threads are the node's reads (run/_started.py); before, an edit there was served stale.
    A plain thread started by the node's own code counts too."""
    Path("parts").mkdir()
    for name, value in (("a.txt", "1"), ("b.txt", "5")):
        Path("parts", name).write_text(value)
    Path("extra.txt").write_text("10")

    @node
    def total(folder: str) -> int:
        import threading

        box: list[int] = []
        reader = threading.Thread(target=lambda: box.append(int(Path("extra.txt").read_text())))
        reader.start()
        reader.join()
        return sum(load_in_threads(folder)) + box[0]

    with Workflow("threaded", root=".") as wf:
        out = total("parts")
    assert wf.execute(backend=backend)[out] == 16
    reads = records(home)["total"]["reads"]
    assert {"./parts/b.txt", "./extra.txt"} <= set(reads), reads
    assert wf.execute(backend=backend).cached == 1
    Path("parts", "b.txt").write_text("100")
    again = wf.execute(backend=backend)
    assert (again[out], again.executed) == (111, 1)
    Path("extra.txt").write_text("20")
    third = wf.execute(backend=backend)
    assert (third[out], third.executed) == (121, 1)


def read_number(path: str) -> int:  # stands for a library function (pd.read_csv)
    with open(path) as fh:
        return int(fh.read())


LIBRARY_IN_POOL = """
import os
from concurrent.futures import ThreadPoolExecutor
from etherealfabric import Workflow, node
from numbers_lib import read_number

@node
def load(folder):
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))
    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(read_number, paths))

with Workflow("pools") as wf:
    load("a")
    load("b")
"""


def test_a_library_function_handed_to_a_pool_the_node_made_reads_for_it(
    tmp_path: Path, ef: Any
) -> None:
    """``pool.map(pd.read_csv, paths)``: no user code is on the pool thread's stack, so its
    opens counted for no node and an edit was served stale; the thread was started while the
    node ran, by its code, so it works for it. Two nodes running at once through one helper
    both get their reads (the first one found took them all)."""
    (tmp_path / "numbers_lib").mkdir()
    (tmp_path / "numbers_lib" / "__init__.py").write_text(inspect.getsource(read_number))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for name, value in (("f1", "1"), ("f2", "2"), ("f3", "3")):
            (tmp_path / folder / name).write_text(value)
    (tmp_path / "flow.py").write_text(LIBRARY_IN_POOL)
    env = {"ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    assert json.loads(ef(tmp_path, "run", "flow.py", "--json", **env).stdout)["executed"] == 2
    for folder in ("a", "b"):
        (tmp_path / folder / "f2").write_text("10")
    again = json.loads(ef(tmp_path, "run", "flow.py", "--json", **env).stdout)
    assert again["executed"] == 2, again
    for name in ("load", "load-2"):
        shown = ef(tmp_path, "cat", "latest", name, **env)
        assert shown.stdout.strip() == "14", (name, shown.stderr)


def test_only_data_files_the_node_only_read_are_recorded(tmp_path: Path, home: Path) -> None:
    """Not: a file it wrote (then read back), a declared File input, a declared output,
    library files, /proc; yes: the data file, by absolute path when outside the root."""
    library = [
        p
        for p in glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*"))
        if os.path.isfile(p) and not p.endswith((".py", ".pyc"))
    ]
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("outside the root\n")
    Path("data.txt").write_text("data\n")
    Path("declared.txt").write_text("declared\n")

    @node(writes=["out.txt"])
    def mixed(declared: File, outside: str, library: list[str]) -> int:
        Path("scratch.txt").write_text("scratch\n")
        total = len(Path("scratch.txt").read_text())  # its own file
        total += len(Path(declared).read_text())  # keyed by content already
        total += len(Path("data.txt").read_text())
        total += len(Path(outside).read_text())
        for path in library:
            with open(path, "rb") as fh:
                total += len(fh.read(10))
        total += len(Path("/proc/self/status").read_text()) > 0
        Path("out.txt").write_text("written\n")
        total += len(Path("out.txt").read_text())
        return total

    with Workflow("mixed", root=".") as wf:
        mixed(File("declared.txt"), str(outside), library[:2])
    wf.execute()
    reads = records(home)["mixed"]["reads"]
    assert sorted(reads) == sorted(["./data.txt", str(outside)])


def test_reads_on_the_process_backend(tmp_path: Path, home: Path) -> None:
    Path("n.txt").write_text("5\n")

    @node
    def read_n() -> int:
        with open("n.txt") as fh:
            return int(fh.read())

    with Workflow("procs", root=".") as wf:
        out = read_n()
    assert wf.execute(backend="processes", max_workers=1)[out] == 5
    assert list(records(home)["read_n"]["reads"]) == ["./n.txt"]
    Path("n.txt").write_text("6\n")
    again = wf.execute(backend="processes", max_workers=1)
    assert (again[out], again.executed) == (6, 1)


@pytest.mark.parametrize("kill", [False, True], ids=["thread", "killable-child"])
def test_reads_of_a_node_with_a_timeout(tmp_path: Path, home: Path, kill: bool) -> None:
    """With a timeout the node runs in a thread of its own, or (processes backend) in a
    child process that can be killed: its reads come back all the same."""
    Path("n.txt").write_text("5\n")

    @node(timeout=60)
    def read_n() -> int:
        return int(Path("n.txt").read_text())

    with Workflow("timeouts", root=".") as wf:
        out = read_n()
    backend = {"backend": "processes", "max_workers": 1} if kill else {}
    assert wf.execute(**backend)[out] == 5
    assert list(records(home)["read_n"]["reads"]) == ["./n.txt"]
    Path("n.txt").write_text("6\n")
    assert wf.execute(**backend)[out] == 6


def test_a_file_opened_by_a_relative_path_is_checked_where_the_node_would_read_it(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``open("n.txt")`` reads the file of the working folder: the record says so (``./n.txt``)
    and a run (or ``plan``) from another folder checks the file there, never the first one."""
    for folder, value in (("proj", "1\n"), ("elsewhere", "2\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "n.txt").write_text(value)

    @node
    def read_n() -> int:
        return int(Path("n.txt").read_text())

    def flow() -> Workflow:
        with Workflow("rooted", root=str(tmp_path / "proj"), home=str(home)) as wf:
            read_n()
        return wf

    monkeypatch.chdir(tmp_path / "elsewhere")
    assert flow().execute()["read_n"]["result"] == 2
    assert list(records(home)["read_n"]["reads"]) == ["./n.txt"]

    monkeypatch.chdir(tmp_path / "proj")  # the node would read proj/n.txt: 1, not 2
    (planned,) = flow().plan().to_dict()["nodes"]
    assert planned["action"] == "run"
    assert "'./n.txt', a file it read, changed since its cached result" in planned["reason"]
    again = flow().execute()
    assert (again["read_n"]["result"], again.executed) == (1, 1)
    assert flow().execute().cached == 1

    monkeypatch.chdir(tmp_path)  # no n.txt here: nothing to compare, the node's result stands
    assert flow().execute().cached == 1


def test_an_old_record_naming_a_root_relative_file_is_checked_under_the_root(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records written before reads were noted from the working folder name files relative
    to the root: those are still checked there, wherever the run is started from."""
    (tmp_path / "sub").mkdir()
    Path("sub/n.txt").write_text("1\n")

    @node
    def read_sub() -> int:
        return int(Path(tmp_path / "sub" / "n.txt").read_text())  # absolute: root-relative

    with Workflow("rooted", root=str(tmp_path), home=str(home)) as wf:
        read_sub()
    wf.execute()
    reads = records(home)["read_sub"]["reads"]
    assert [k for k, v in reads.items() if "missing" not in v] == [os.path.join("sub", "n.txt")]
    monkeypatch.chdir(tmp_path / "sub")
    Path("n.txt").write_text("2\n")
    (planned,) = wf.plan().to_dict()["nodes"]
    assert planned["action"] == "run"
    assert "'sub/n.txt', a file it read, changed since its cached result" in planned["reason"]


def test_a_node_that_reads_more_files_than_are_checked_says_so(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_reads, "MAX_READS", 3)
    for i in range(5):
        Path(f"part-{i}.txt").write_text(f"{i}\n")

    @node
    def read_all(n: int) -> int:
        return sum(int(Path(f"part-{i}.txt").read_text()) for i in range(n))

    with Workflow("many", root=".") as wf:
        read_all(5)
    with caplog.at_level(logging.WARNING, logger="etherealfabric.files"):
        wf.execute()
    assert "read more than 3 files; only the first 3 are checked" in caplog.text
    assert len(records(home)["read_all"]["reads"]) == 3


FLOW = """
import pandas as pd
from etherealfabric import Workflow, node

@node
def load():
    return pd.read_csv("data/sales.csv")

@node
def total(df):
    return int(df.amount.sum())

with Workflow("sales") as workflow:
    total(load())
"""


def test_cli_runs_in_fresh_processes_see_an_edited_csv(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    Path("data").mkdir()
    Path("data/sales.csv").write_text("amount\n10\n20\n")
    Path("flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run() -> dict[str, Any]:
        return json.loads(cli("run", "flow.py", "--json"))

    def result(run_id: str) -> str:
        return cli("cat", run_id, "total").strip()

    first = run()
    assert first["executed"] == 2 and result(first["run_id"]) == "30"
    assert run()["cached"] == 2
    Path("data/sales.csv").write_text("amount\n10\n20\n12\n")
    reasons = {
        n["node"]: n["reason"] for n in json.loads(cli("plan", "flow.py", "--json"))["nodes"]
    }
    assert "'./data/sales.csv', a file it read, changed since its cached result" in reasons["load"]
    third = run()
    assert third["executed"] == 2 and result(third["run_id"]) == "42"
    why = json.loads(cli("explain", third["run_id"], "load", "--json"))
    assert why["reason"] == "read_changed"
    assert "'./data/sales.csv', a file it read, changed since its cached result" in why["detail"]


def test_files_opened_in_an_untracked_block_are_not_checked(tmp_path: Path, home: Path) -> None:
    Path("progress.txt").write_text("step 1\n")
    Path("data.txt").write_text("3\n")

    @node
    def work() -> int:
        with untracked():
            Path("progress.txt").read_text()
        return int(Path("data.txt").read_text())

    with Workflow("untracked", root=".") as wf:
        out = work()
    assert wf.execute()[out] == 3
    assert list(records(home)["work"]["reads"]) == ["./data.txt"]
    Path("progress.txt").write_text("step 2\n")
    assert wf.execute().cached == 1


FORGED = """
import json, sqlite3, sys
from etherealfabric import Workflow, node

@node
def value():
    return 41

with Workflow("forged", root=".") as wf:
    out = value()
first = wf.execute()
conn = sqlite3.connect(".etherealfabric/journal.db")
(key, record), = conn.execute("SELECT key, record FROM actions").fetchall()
record = json.loads(record)
record["reads"] = json.loads(sys.argv[1])
with conn:
    conn.execute("UPDATE actions SET record = ? WHERE key = ?", (json.dumps(record), key))
second = wf.execute()
print(json.dumps({"value": second[out], "cached": second.cached}))
"""


@pytest.mark.parametrize(
    "reads,cached",
    [
        ({"fifo": {"digest": "0" * 32, "size": 0}}, 1),  # never opened: no reason to wait
        ({"/dev/zero": {"digest": "0" * 32, "size": 0}}, 1),
        ({"data.txt": "not an entry"}, 0),  # a record that says nothing usable: a miss
        ({"data.txt": {"digest": "0" * 32, "size": 10**12}}, 0),  # another size: no hashing
    ],
    ids=["fifo", "device", "garbage", "size"],
)
def test_a_record_naming_odd_files_never_hangs_nor_hits_wrongly(
    tmp_path: Path, reads: dict[str, Any], cached: int
) -> None:
    os.mkfifo("fifo")
    Path("data.txt").write_text("data\n")
    Path("forged.py").write_text(FORGED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, "forged.py", json.dumps(reads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"value": 41, "cached": cached}
