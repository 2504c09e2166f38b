"""Folders a node names through pathlib (``DATA = Path("./data")``, ``Path("data").glob(...)``)
or hands to a function that lists or joins paths (``os.listdir("data")``), read by native code
(``pd.read_parquet``, which the audit hook does not see): named paths, checked before each
cache hit (run/_reads.py, run/_pathcalls.py). pathlib normalizes ``"./data"`` to the bare word
``data``, which, as a plain string, is never a path: these were stale hits."""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from etherealfabric.run import _reads
from etherealfabric.run._pathcalls import path_arguments, path_text


def _write(folder: Path, name: str, values: list[int]) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"v": values}).to_parquet(folder / name)


def _run(ef: Callable[..., Any], cwd: Path) -> dict[str, Any]:
    done = ef(cwd, "run", "flow.py", "--json", ETHEREALFABRIC_HOME=str(cwd / "home"))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _result(ef: Callable[..., Any], cwd: Path) -> str:
    done = ef(cwd, "cat", "latest", "total", ETHEREALFABRIC_HOME=str(cwd / "home"))
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip())


HEAD = """\
import glob
import os
import pathlib
from pathlib import Path

import pandas as pd

from etherealfabric import Workflow, node
"""
TAIL = """
with Workflow("pathlib") as wf:
    total()
"""

#: the node ``total`` reads data/a.parquet (and data/b.parquet when it lists the folder)
READS = {
    "global ./data": 'DATA = Path("./data")\n\n@node\ndef total():\n'
    '    return int(pd.read_parquet(DATA / "a.parquet")["v"].sum())\n',
    "global data": 'DATA = Path("data")\n\n@node\ndef total():\n'
    '    return int(pd.read_parquet(DATA / "a.parquet")["v"].sum())\n',
    "global data/": 'DATA = Path("data/")\n\n@node\ndef total():\n'
    '    return int(pd.read_parquet(DATA / "a.parquet")["v"].sum())\n',
    "global pathlib.Path": 'DATA = pathlib.Path("data")\n\n@node\ndef total():\n'
    '    return int(pd.read_parquet(DATA.joinpath("a.parquet"))["v"].sum())\n',
    "default": '@node\ndef total(data=Path("data")):\n'
    '    return int(pd.read_parquet(data / "a.parquet")["v"].sum())\n',
    "closure": 'def make():\n    data = Path("data")\n\n    @node\n    def total():\n'
    '        return int(pd.read_parquet(data / "a.parquet")["v"].sum())\n\n'
    "    return total\n\ntotal = make()\n",
    "inline Path": "@node\ndef total():\n"
    '    return int(pd.read_parquet(Path("data") / "a.parquet")["v"].sum())\n',
    "Path glob": "@node\ndef total():\n    return int(sum(pd.read_parquet(f)['v'].sum()"
    ' for f in Path("data").glob("*.parquet")))\n',
    "os.listdir": "@node\ndef total():\n    return int(sum(pd.read_parquet(os.path.join("
    '"data", f))["v"].sum() for f in os.listdir("data")))\n',
    "os.scandir": "@node\ndef total():\n    return int(sum(pd.read_parquet(e.path)['v'].sum()"
    ' for e in os.scandir("data")))\n',
    "os.walk": "@node\ndef total():\n    return int(sum(pd.read_parquet(os.path.join(top, f))"
    '["v"].sum() for top, _, files in os.walk("data") for f in files))\n',
}

LISTS = {"Path glob", "os.listdir", "os.scandir", "os.walk"}


@pytest.mark.parametrize("case", list(READS))
def test_a_parquet_file_read_through_a_pathlib_folder_is_checked_through_the_cli(
    tmp_path: Path, ef: Callable[..., Any], case: str
) -> None:
    """In fresh CLI processes, as a user runs it: after a parquet file in ``data/`` is
    rewritten, the node runs again and gives the new sum (it was a stale hit: the old one)."""
    (tmp_path / "flow.py").write_text(HEAD + "\n\n" + READS[case] + TAIL)
    _write(tmp_path / "data", "a.parquet", [1, 2, 3])
    listed = 4 if case in LISTS else 0  # (b.parquet: the cases that read the whole folder)
    if listed:
        _write(tmp_path / "data", "b.parquet", [4])
    assert _run(ef, tmp_path)["executed"] == 1
    assert _result(ef, tmp_path) == str(6 + listed)
    assert _run(ef, tmp_path)["cached"] == 1  # nothing changed: a hit

    time.sleep(0.01)
    _write(tmp_path / "data", "a.parquet", [1, 2, 30])
    again = _run(ef, tmp_path)
    assert (again["executed"], _result(ef, tmp_path)) == (1, str(33 + listed))
    assert _run(ef, tmp_path)["cached"] == 1


def test_a_file_added_to_a_folder_a_pathlib_glob_lists_is_a_change(
    tmp_path: Path, ef: Callable[..., Any]
) -> None:
    (tmp_path / "flow.py").write_text(HEAD + "\n\n" + READS["Path glob"] + TAIL)
    _write(tmp_path / "data", "a.parquet", [1, 2, 3])
    assert _run(ef, tmp_path)["executed"] == 1
    _write(tmp_path / "data", "b.parquet", [40])
    assert (_run(ef, tmp_path)["executed"], _result(ef, tmp_path)) == (1, "46")


def test_path_text_makes_a_bare_word_a_relative_path() -> None:
    assert path_text(Path("./data")) == path_text(Path("data")) == os.path.join(".", "data")
    assert path_text(Path("data/x.parquet")) == os.path.join("data", "x.parquet")
    assert path_text(PurePosixPath("/abs/data")) == "/abs/data"
    assert path_text(Path("sales.parquet")) == "sales.parquet"
    assert path_text(Path(".")) == "."  # (never a named path: run/_reads.py's _NOT_PATHS)


DATA = Path("./data")
WORD = "data"
ITEMS = {"data": 1}


def _pathlib_global() -> Path:
    return DATA / "x.parquet"


def _path_call() -> object:
    return Path("data").glob("*.parquet")


def _listing() -> object:
    return os.listdir(WORD)  # a global's text, handed to a function that takes a path


def _bare_words(text: str) -> object:
    return text.join("data"), ITEMS["data"], {"data": WORD}, "data".upper()


def _built(name: str) -> object:  # (a path built only: maybe returned, or written)
    return os.path.join("data", name), Path(__file__).parent / "data"


def test_named_paths_of_pathlib_values_and_path_calls(tmp_path: Path) -> None:
    """Unit level: a pathlib global names its folder whatever its text; a bare word handed to
    ``Path(...)`` or ``os.listdir`` is a path; a bare word anywhere else is not."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.parquet").write_bytes(b"x")
    later = time.time() + 60  # (nothing in the folder changed since the node "started")
    folder = os.path.join(".", "data") + os.sep
    for fn in (_pathlib_global, _path_call, _listing):
        assert folder in _reads.named_paths(fn, (), {}, since=later), fn
    assert list(path_arguments(_path_call)) == [os.path.join(".", "data")]
    assert list(path_arguments(_bare_words)) == list(path_arguments(_built)) == []
    assert _reads.named_paths(_bare_words, ("x",), {}, since=later) == []


def _globbed() -> object:
    return glob.glob("data"), glob.iglob("data")


def test_a_bare_word_given_to_glob_is_a_path() -> None:
    assert list(path_arguments(_globbed)) == [os.path.join(".", "data")] * 2
