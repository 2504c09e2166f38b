"""Files and folders a node *names* (a string in its code or its arguments) and that native
code reads, unseen by Python's audit events (``pd.read_parquet``, a program the node starts):
checked before each cache hit like the files it opens through Python (run/_reads.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import Workflow, node, untracked
from etherealfabric.journal import Journal
from etherealfabric.run import _readcheck, _reads


def records(home: Path) -> dict[str, dict[str, Any]]:
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute("SELECT node, record FROM actions").fetchall()
    return {node: json.loads(record) for node, record in rows}


def write_sales(path: str, values: list[int], **options: Any) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"region": [f"r{v % 2}" for v in values], "amount": values})
    frame.to_parquet(path, index=False, **options)


@node
def total_sales() -> int:
    import pandas as pd

    return int(pd.read_parquet("sales.parquet").amount.sum())  # pyarrow opens it in C++


@node
def doubled(n: int) -> int:
    return 2 * n


def test_a_parquet_file_named_in_the_code_and_edited_runs_the_node_again(
    tmp_path: Path, home: Path
) -> None:
    write_sales("sales.parquet", [1, 2, 3])
    with Workflow("parquet", root=".") as wf:
        out = doubled(total_sales())
    first = wf.execute()
    assert (first[out], first.executed) == (12, 2)
    assert list(records(home)["total_sales"]["reads"]) == ["./sales.parquet"]
    assert wf.execute().cached == 2

    write_sales("sales.parquet", [1, 2, 3, 4])
    second = wf.execute()
    assert (second[out], second.executed) == (20, 2)
    assert sorted(wf.plan().cached) == ["doubled", "total_sales"]  # the new result, cached


def test_a_path_argument_read_by_a_program_the_node_starts(tmp_path: Path, home: Path) -> None:
    """The file is read by ``wc``, another process: its name, an argument, says which."""
    Path("lines.txt").write_text("a\nb\n")

    @node
    def count_lines(path: str) -> int:
        done = subprocess.run(["wc", "-l", path], capture_output=True, text=True, check=True)
        return int(done.stdout.split()[0])

    with Workflow("program", root=".") as wf:
        out = count_lines("lines.txt")
    assert wf.execute()[out] == 2
    assert wf.execute().cached == 1
    Path("lines.txt").write_text("a\nb\nc\n")
    again = wf.execute()
    assert (again[out], again.executed) == (3, 1)


def test_a_module_the_node_starts_as_a_program_with_dash_m(tmp_path: Path, home: Path) -> None:
    """``python -m tools.prep``: the module's file is read by that program; editing it runs
    the node again (a script started by its path was; one started by module name was not)."""
    Path("tools").mkdir()
    Path("tools", "__init__.py").write_text("")
    Path("tools", "prep.py").write_text("import sys\nprint(int(sys.argv[1]) * 3)\n")

    @node
    def prep() -> int:
        command = [sys.executable, "-m", "tools.prep", "5"]
        return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    with Workflow("dash-m", root=".") as wf:
        out = prep()
    assert wf.execute()[out] == 15
    reads = records(home)["prep"]["reads"]
    assert os.path.join(".", "tools", "prep.py") in reads
    assert os.path.join(".", "tools.prep") not in reads  # a module name, not a missing file
    assert wf.execute().cached == 1
    Path("tools", "prep.py").write_text("import sys\nprint(int(sys.argv[1]) * 4)\n")
    again = wf.execute()
    assert (again[out], again.executed) == (20, 1)


def test_a_partitioned_dataset_folder_gains_a_partition(tmp_path: Path, home: Path) -> None:
    """A folder named with a suffix (``sales.parquet/``, as Spark and pyarrow write datasets) is
    checked as a tree: a new partition file is a change, as an edited one is."""
    write_sales("sales.parquet", [1, 2, 3], partition_cols=["region"])
    with Workflow("dataset", root=".") as wf:
        out = total_sales()
    assert wf.execute()[out] == 6
    reads = records(home)["total_sales"]["reads"]
    assert list(reads) == ["./sales.parquet/"] and "tree" in reads["./sales.parquet/"]
    assert wf.execute().cached == 1

    write_sales("more.parquet", [10])
    os.rename("more.parquet", os.path.join("sales.parquet", "region=r0", "more.parquet"))
    again = wf.execute()
    assert (again[out], again.executed) == (16, 1)
    assert wf.execute().cached == 1


def test_named_paths_that_are_not_checked(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Left out: a path in an untracked() call, a folder named without a trailing separator or
    a suffix (as a tree: its listing is checked), a folder with more entries than are checked,
    strings that name nothing."""
    monkeypatch.setattr(_reads, "MAX_READS", 3)
    Path("data").mkdir()
    (Path("data") / "x.txt").write_text("x")
    Path("big.d").mkdir()
    for i in range(5):
        (Path("big.d") / f"{i}.txt").write_text(str(i))
    Path("history.txt").write_text("1\n")

    @node
    def names(tag: str) -> int:
        with untracked("history.txt"):  # read by a program: not part of the result
            subprocess.run(["cat", "history.txt"], capture_output=True, check=True)
        return len(os.listdir("data")) + len(os.listdir("big.d")) + len(tag)

    with Workflow("left-out", root=".") as wf:
        out = names("not a file.txt")
    with caplog.at_level(logging.WARNING, logger="etherealfabric.files"):
        assert wf.execute()[out] == 6 + len("not a file.txt")
    # (the listing of data/ is checked: os.listdir is seen; big.d's is too long, and says so)
    assert list(records(home)["names"]["reads"]) == ["./data/"]
    assert "node 'names' names the folder" in caplog.text and "big.d" in caplog.text  # said
    assert "node 'names' lists the folder" in caplog.text
    Path("history.txt").write_text("2\n")
    assert wf.execute().cached == 1


def test_a_forged_folder_entry_is_bounded_and_refuses_the_hit(tmp_path: Path) -> None:
    """A record naming "/" as a folder it read is not walked beyond MAX_READS entries: the
    hit is refused (the node runs), never a walk of the whole disk."""
    forged = {"reads": {os.sep: {"tree": "0" * 32}, "missing/": {"tree": "0" * 32}}}
    assert _readcheck.changed_read(forged, root=str(tmp_path), file_cache=None) == os.sep
    missing = {"reads": {"missing/": {}}}
    assert _readcheck.changed_read(missing, root=str(tmp_path), file_cache=None) is None


def test_named_paths_of_a_class_node_and_of_list_arguments(tmp_path: Path) -> None:
    Path("a.csv").write_text("a")
    Path("b.csv").write_text("b")
    Path("ds.parquet").mkdir()

    class Loader:
        def run(self) -> str:
            return "a.csv"

    found = _reads.named_paths(
        Loader,
        ([("b.csv",), 3, "nothing.csv"],),  # nested, as in a list of (path, ...) pairs
        {"x": Path("ds.parquet"), "y": {"inner": str(tmp_path / "a.csv")}},
    )
    assert sorted(found) == sorted(  # relative to the working folder, as named; or absolute
        ["./a.csv", "./b.csv", "./ds.parquet/", str(tmp_path / "a.csv")]
    )
    assert _reads.named_paths(lambda: ".", (".", "..", "~", os.sep), {}) == []


RAN: list[str] = []


@node
def report(name: str) -> str:
    RAN.append(name)
    folder = Path("out/")  # names the folder it writes into
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.txt").write_text(f"report {name}\n")
    return name


def test_a_named_folder_the_node_writes_into_is_not_one_it_reads(home: Path) -> None:
    def flow() -> Any:
        with Workflow("writers", root=".") as wf:
            wf.add_dependency(report("a"), report("b"))  # b writes after a
        return wf.execute()

    flow()
    assert RAN == ["a", "b"] and sorted(os.listdir("out")) == ["a.txt", "b.txt"]
    assert not any("reads" in r for r in records(home).values())
    RAN.clear()
    warm = flow()  # b's file in out/ is no change for a
    assert (warm.executed, RAN) == (0, [])


# -- paths named by a global, a default, or a folder without a suffix ---------------------------

FLOW = """
import pandas as pd
from etherealfabric import Workflow, node
import settings

SALES = "sales.parquet"  # a module-level constant, as most projects write one


@node
def by_constant():
    return int(pd.read_parquet(SALES)["a"].sum())


@node
def by_module_attribute():
    return int(pd.read_parquet(settings.SALES_PQ)["a"].sum())


@node
def by_default(path="sales.parquet"):
    return int(pd.read_parquet(path)["a"].sum())


@node
def by_folder():
    return int(pd.read_parquet("data/pq")["a"].sum())


@node
def by_folder_argument(folder):
    return int(pd.read_parquet(folder)["a"].sum())


with Workflow("named") as wf:
    by_constant(); by_module_attribute(); by_default(); by_folder(); by_folder_argument("data/pq")
"""
NODES = ("by_constant", "by_module_attribute", "by_default", "by_folder", "by_folder_argument")


def cli(folder: Path, home: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(folder / home)}
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_paths_in_globals_defaults_and_plain_folders_through_the_cli(tmp_path: Path) -> None:
    """In fresh CLI processes: after the data changes, the home that ran the nodes before gets
    what a fresh home computes (each result was a stale hit when only the node's own constants
    and received arguments counted)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "settings.py").write_text('SALES_PQ = "data/sales.parquet"\n')
    (tmp_path / "data" / "pq").mkdir(parents=True)

    def write(value: int) -> None:
        frame = pd.DataFrame({"a": [value, 1]})
        frame.to_parquet(tmp_path / "sales.parquet")
        frame.to_parquet(tmp_path / "data" / "sales.parquet")
        frame.to_parquet(tmp_path / "data" / "pq" / "part-0.parquet")

    def results(home: str) -> dict[str, str]:
        return {n: cli(tmp_path, home, "cat", "latest", n).stdout.strip() for n in NODES}

    write(1)
    cli(tmp_path, "same", "run", "-q", "flow.py")
    assert results("same") == dict.fromkeys(NODES, "2")
    write(2)
    cli(tmp_path, "same", "run", "-q", "flow.py")
    cli(tmp_path, "fresh", "run", "-q", "flow.py")
    assert results("same") == results("fresh") == dict.fromkeys(NODES, "3")
    warm = json.loads(cli(tmp_path, "same", "run", "flow.py", "--json").stdout)
    assert warm["executed"] == 0 and warm["cached"] == len(NODES)


def test_a_default_replaced_by_an_argument_is_not_named(tmp_path: Path) -> None:
    Path("a.csv").write_text("a")
    Path("b.csv").write_text("b")

    def load(path: str = "a.csv", *, other: str = "b.csv") -> None: ...

    assert _reads.named_paths(load, (), {}) == ["./a.csv", "./b.csv"]
    assert _reads.named_paths(load, ("b.csv",), {}) == ["./b.csv"]
    assert _reads.named_paths(load, (), {"path": "x", "other": "y"}) == []


SOURCE = "in.csv"


def test_a_rebound_global_names_its_new_path(tmp_path: Path) -> None:
    """A notebook cell rebinding the global: the next graph build's texts follow it."""
    global SOURCE
    from etherealfabric.hashing._fingerprint import recheck_bindings

    Path("in.csv").write_text("1")
    Path("other.csv").write_text("2")

    def read() -> str:
        return SOURCE

    assert _reads.named_paths(read, (), {}) == ["./in.csv"]
    SOURCE = "other.csv"
    try:
        recheck_bindings()
        assert _reads.named_paths(read, (), {}) == ["./other.csv"]
    finally:
        SOURCE = "in.csv"


def test_a_folder_the_node_writes_into_natively_is_not_read(tmp_path: Path, home: Path) -> None:
    """A named folder is checked only when nothing in it changed while the node ran: one it
    writes into (by native code, unseen; even named "out/") is its output, and another node
    writing there later is no change for it."""
    Path("results/out").mkdir(parents=True)
    Path("data/pq").mkdir(parents=True)
    (Path("data/pq") / "part-0.txt").write_text("1")

    @node
    def export(name: str) -> str:
        source, target = "data/pq", "results/out"  # neither says it is a folder
        subprocess.run(["cp", "-r", source, os.path.join(target, name)], check=True)
        subprocess.run(["cp", "-r", source, f"out/{name}"], check=True)
        return name

    with Workflow("exports", root=".") as wf:
        wf.add_dependency(export("a"), export("b"))  # b writes after a
    Path("out").mkdir()
    assert wf.execute().executed == 2
    reads = {n: list(r["reads"]) for n, r in records(home).items()}
    assert reads == {"export": ["./data/pq/"], "export-2": ["./data/pq/"]}, reads
    assert wf.execute().cached == 2
    (Path("data/pq") / "part-1.txt").write_text("2")  # a new partition: both run again
    assert wf.execute().executed == 2
    assert wf.execute().cached == 2


def count_parts(how: str) -> int:
    """Reads the dataset folder ``raw/`` natively (a program: no audit event), then writes a
    progress marker in it, untracked."""
    folder = "raw/"  # named
    done = subprocess.run(f"cat {folder}part-*", shell=True, capture_output=True, text=True)
    if how == "block":
        with untracked(), open("raw/_progress", "w") as marker:
            marker.write(str(RAN))
    else:
        with untracked("raw/_progress"):
            subprocess.run("date +%N > raw/_progress", shell=True, check=True)  # natively
    RAN.append(how)
    return len(done.stdout.split())


@pytest.mark.parametrize("how", ["block", "path"])
def test_an_untracked_marker_written_in_a_named_folder_keeps_it_a_read(
    how: str, home: Path
) -> None:
    """The folder still counts as read (not as the node's output), without the marker: a new
    partition runs the node again, a marker rewritten by someone else does not."""
    Path("raw").mkdir()
    Path("raw/part-0").write_text("1 2\n")
    with Workflow("marker", root=".") as wf:
        out = node(count_parts)(how)
    assert wf.execute()[out] == 2
    assert records(home)["count_parts"]["reads"]["./raw/"]["skip"] == ["_progress"]
    assert wf.execute().cached == 1
    Path("raw/_progress").write_text("someone else's")
    assert wf.execute().cached == 1
    Path("raw/part-1").write_text("3 4 5\n")
    again = wf.execute()
    assert (again[out], again.executed) == (5, 1), "a stale hit: the new partition was ignored"


def test_a_glob_pattern_read_natively_is_checked(tmp_path: Path, home: Path) -> None:
    """``pl.read_csv("data/*.csv")``: polars expands the pattern and reads the files in Rust,
    unseen; the pattern names them. A file edited, and a file added, were stale hits."""
    pl = pytest.importorskip("polars")
    Path("data").mkdir()
    Path("data/a.csv").write_text("x\n1\n")
    Path("data/b.csv").write_text("x\n2\n")
    Path("data/nested").mkdir()
    Path("data/nested/c.csv").write_text("x\n4\n")

    @node
    def total() -> int:
        return int(pl.read_csv("data/*.csv")["x"].sum())

    @node
    def deep_total() -> int:  # a recursive pattern, from a global
        return int(pl.scan_csv(DEEP).select(pl.col("x").sum()).collect().item())

    with Workflow("pattern", root=".") as wf:
        flat, deep = total(), deep_total()
    first = wf.execute()
    assert (first[flat], first[deep]) == (3, 7)
    assert wf.execute().cached == 2
    Path("data/b.csv").write_text("x\n20\n")  # edited
    second = wf.execute()
    assert (second[flat], second[deep], second.executed) == (21, 25, 2)
    assert wf.execute().cached == 2
    Path("data/d.csv").write_text("x\n100\n")  # added
    third = wf.execute()
    assert (third[flat], third[deep], third.executed) == (121, 125, 2)
    Path("data/nested/deeper").mkdir()
    Path("data/nested/deeper/e.csv").write_text("x\n1000\n")  # added two folders down
    fourth = wf.execute()
    assert (fourth[flat], fourth[deep], fourth.executed) == (121, 1125, 1)
    assert wf.execute().cached == 2
    # a text that is a pattern matching nothing (a regular expression, a message) names nothing
    assert _reads.named_paths(lambda: "[0-9]+ rows.csv matched", (), {}, since=0.0) == []


DEEP = "data/**/*.csv"


SALES_OF_HELPER = "helper_sales.parquet"


def _load_sales() -> Any:
    import pandas as pd

    return pd.read_parquet(SALES_OF_HELPER)  # a data-loading helper: pyarrow opens it


def _load_literal() -> Any:
    import pandas as pd

    return pd.read_parquet("helper_literal.parquet")


def _helper_of_helper() -> Any:
    return _load_literal()


@node
def sales_through_helpers() -> int:
    return int(_load_sales().amount.sum() + _helper_of_helper().amount.sum())


def test_files_a_called_helper_names_are_the_nodes(tmp_path: Path, home: Path) -> None:
    """A helper the node calls (and what that calls) reads a parquet file natively by a path
    in its global or its code: it was a stale hit after the file changed, since only the
    node's own code's texts counted."""
    write_sales(SALES_OF_HELPER, [1, 2])
    write_sales("helper_literal.parquet", [10])
    assert set(_reads.named_paths(sales_through_helpers, (), {})) == {
        "./helper_sales.parquet", "./helper_literal.parquet",
    }  # fmt: skip
    with Workflow("helpers", root=".") as wf:
        out = sales_through_helpers()
    assert wf.execute()[out] == 13
    assert wf.execute().cached == 1
    write_sales(SALES_OF_HELPER, [1, 2, 3])
    assert wf.execute()[out] == 16
    write_sales("helper_literal.parquet", [20])
    assert wf.execute()[out] == 26


@dataclasses.dataclass
class SalesConfig:
    sales: str
    scale: int = 1


class SalesLoader:
    def __init__(self, path: str) -> None:
        self.path = path


@node
def sales_of_config(cfg: Any, loader: Any) -> int:
    import pandas as pd

    first = pd.read_parquet(cfg.sales).amount.sum() * cfg.scale
    return int(first + pd.read_parquet(loader.path).amount.sum())


def test_paths_in_a_config_object_argument_are_named(tmp_path: Path, home: Path) -> None:
    """A dataclass or an object of yours passed as an argument, holding the path: the key has
    the path's text only, so editing the file pyarrow reads was a stale hit."""
    write_sales("cfg_sales.parquet", [1, 2])
    write_sales("loader_sales.parquet", [10])
    with Workflow("configs", root=".") as wf:
        out = sales_of_config(SalesConfig("cfg_sales.parquet"), SalesLoader("loader_sales.parquet"))
    assert wf.execute()[out] == 13
    assert wf.execute().cached == 1
    write_sales("cfg_sales.parquet", [1, 2, 3])
    assert wf.execute()[out] == 16
    write_sales("loader_sales.parquet", [20])
    assert wf.execute()[out] == 26


class SalesRepository:
    def load(self) -> Any:
        import pandas as pd

        return pd.read_parquet("repo_sales.parquet")


REPOSITORY = SalesRepository()


@node
def sales_of_repository(repository: Any) -> int:
    return int(REPOSITORY.load().amount.sum() + repository.load().amount.sum())


def test_a_path_in_the_methods_of_an_object_the_node_uses_is_named(tmp_path: Path) -> None:
    """A global instance (``REPOSITORY.load()``) or an argument of a class of yours whose
    method names the file: the class's code texts are the node's."""
    write_sales("repo_sales.parquet", [1, 2])
    assert _reads.named_paths(sales_of_repository, (None,), {}) == ["./repo_sales.parquet"]
    assert _reads.named_paths(lambda r: r, (SalesRepository(),), {}) == ["./repo_sales.parquet"]
    with Workflow("repository", root=".") as wf:
        out = sales_of_repository(SalesRepository())
    assert wf.execute()[out] == 6
    assert wf.execute().cached == 1
    write_sales("repo_sales.parquet", [1, 2, 3])
    assert wf.execute()[out] == 12


def _shell_count() -> str:
    done = subprocess.run("cat shell_data.csv", shell=True, capture_output=True, text=True)
    return done.stdout.strip()


shell_count = node(_shell_count)


def test_a_path_in_a_shell_command_or_a_query_is_named(tmp_path: Path) -> None:
    """A path among the words of a command a shell runs (or of a query a database reads):
    the whole text names no file, so the file's edits were stale hits."""
    Path("shell_data.csv").write_text("1")
    missing: list[str] = []
    assert _reads.named_paths(_shell_count, (), {}, missing=missing) == ["./shell_data.csv"]
    query = "SELECT * FROM 'shell_*.csv' WHERE x > 1.5"
    assert "./shell_data.csv" in _reads.named_paths(doubled, (query,), {})
    _reads.named_paths(doubled, ("cat nothing/there.csv",), {}, missing=missing)
    assert missing == []  # a word of a text is never one looked for
    with Workflow("shell", root=".") as wf:
        out = shell_count()
    assert wf.execute()[out] == "1"
    assert wf.execute().cached == 1
    Path("shell_data.csv").write_text("2")
    assert wf.execute()[out] == "2"
