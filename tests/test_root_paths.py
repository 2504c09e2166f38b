"""Absolute paths in parameters: keyed relative to the workflow's root, or warned about.

Two checkouts of one project in different folders share a home (as teammates share a store):
a node whose parameter is an absolute path inside its checkout must get the same key in both.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from etherealfabric import Workflow, node
from etherealfabric.hashing._paths import RootRelative, relative_to_root
from etherealfabric.hashing._values import hash_value

RUNS: list[Any] = []


@node
def describe(path: Any, options: Any = None) -> str:
    RUNS.append(path)
    return f"would write {Path(path).name}"


def run(root: Path, home: Path, path: Any, **settings: Any) -> Any:
    with Workflow("paths", root=root, home=home) as wf:
        describe(path, options={"extra": [path]})
    return wf.execute(**settings)


@pytest.fixture(autouse=True)
def _clear() -> None:
    RUNS.clear()


@pytest.mark.parametrize("as_type", [str, Path])
def test_an_absolute_path_inside_the_root_is_keyed_relative_to_it(
    tmp_path: Path, as_type: Any
) -> None:
    alice, bob = tmp_path / "alice" / "proj", tmp_path / "bob" / "proj"
    home = tmp_path / "home"
    run(alice, home, as_type(alice / "out" / "report.md"))
    again = run(bob, home, as_type(bob / "out" / "report.md"))
    assert again.cached == 1 and len(RUNS) == 1
    # the node still got its own absolute path
    assert len(RUNS) == 1 and RUNS[0] == as_type(alice / "out" / "report.md")
    other = run(bob, home, as_type(bob / "out" / "other.md"))
    assert other.executed == 1


def test_a_str_and_a_path_to_the_same_file_stay_different_keys(tmp_path: Path) -> None:
    root = str(tmp_path)
    as_str = relative_to_root(f"{root}/a/b.txt", root)
    as_path = relative_to_root(Path(root) / "a" / "b.txt", root)
    assert isinstance(as_str, RootRelative) and as_str.path == "a/b.txt"
    assert hash_value(as_str) != hash_value(as_path)
    assert hash_value(as_str) != hash_value("a/b.txt")  # not the relative text itself


def test_only_paths_inside_the_root_are_rewritten(tmp_path: Path) -> None:
    root = str(tmp_path / "proj")
    value = {"in": [f"{root}/x"], "sibling": f"{root}-old/x", "rel": "x", "n": 3}
    rewritten = relative_to_root(value, root)
    assert isinstance(rewritten["in"][0], RootRelative)
    assert rewritten["sibling"] == f"{root}-old/x"
    assert rewritten["rel"] == "x" and rewritten["n"] == 3
    assert relative_to_root(PurePosixPath("/elsewhere"), root) == PurePosixPath("/elsewhere")


def test_a_path_outside_the_root_warns_once_with_a_shared_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", "s" * 32)
    outside = tmp_path / "elsewhere" / "out.md"
    outside.parent.mkdir()
    root = tmp_path / "proj"
    settings = {"store": str(tmp_path / "team")}
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        run(root, tmp_path / "home", str(outside), **settings)
        run(root, tmp_path / "home", str(outside), **settings)
    said = [r.getMessage() for r in caplog.records if "absolute path" in r.getMessage()]
    # one warning per parameter that holds it (options holds it nested), none the second time
    assert len(said) == 2, said
    assert "parameter 'path'" in said[0] and "parameter 'options'" in said[1]
    assert "node 'describe'" in said[0] and str(outside) in said[0]
    assert "File(...)" in said[0] and "relative to the root" in said[0]


def test_no_warning_without_a_shared_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "elsewhere" / "x.md"
    outside.parent.mkdir()
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        run(tmp_path / "proj", tmp_path / "home", str(outside))
    assert "absolute path" not in caplog.text


def test_declaring_other_files_changes_the_key(tmp_path: Path) -> None:
    def body() -> int:
        for name in ("a.txt", "b.txt"):
            (tmp_path / name).write_text(name)
        return 1

    one = node(name="w", writes=["a.txt"])(body)
    two = node(name="w", writes=["a.txt", "b.txt"])(body)
    for fn, expected in ((one, 1), (two, 1), (one, 0)):
        with Workflow("writes-key", root=tmp_path, home=tmp_path / "home") as wf:
            fn()
        assert wf.execute().executed == expected
