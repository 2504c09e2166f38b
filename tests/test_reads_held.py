"""Paths a node names through a class attribute (inherited by a class node, or of a plain
class) or a config object (a dataclass, a ``SimpleNamespace``) at module level: named like a
global string, so a file native code reads there is checked before each cache hit."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest

from etherealfabric import Node, Workflow, node
from etherealfabric.run import _reads


class BaseLoader(Node):
    PATH = "base.csv"

    def __init__(self) -> None:
        super().__init__()
        self.outputs = ["text"]


class Loader(BaseLoader):  # reads the inherited PATH
    def run(self) -> dict[str, str]:
        return {"text": native_read(self.PATH)}


class OtherLoader(BaseLoader):  # overrides it: only its own counts
    PATH = "other.csv"

    def run(self) -> dict[str, str]:
        return {"text": native_read(self.PATH)}


class Paths:
    SALES = "class.csv"


@dataclasses.dataclass
class Config:
    sales: str = "dataclass.csv"
    nested: types.SimpleNamespace = dataclasses.field(
        default_factory=lambda: types.SimpleNamespace(deep="nested.csv")
    )


CFG = Config()
NS = types.SimpleNamespace(sales="namespace.csv")


def native_read(path: str) -> str:
    """Reads ``path`` as native code would: no audit event (only the name tells)."""
    import subprocess

    return subprocess.run(["cat", path], capture_output=True, text=True, check=True).stdout


def by_class() -> str:
    return native_read(Paths.SALES)


def by_dataclass() -> str:
    return native_read(CFG.sales) + native_read(CFG.nested.deep)


def by_namespace() -> str:
    return native_read(NS.sales)


NAMES = ("base", "other", "class", "dataclass", "nested", "namespace")


@pytest.fixture
def files(tmp_path: Path) -> None:
    for name in NAMES:
        Path(f"{name}.csv").write_text(name)


def test_paths_held_by_class_attributes_and_config_objects_are_named(files: None) -> None:
    assert _reads.named_paths(Loader, (), {}) == ["./base.csv"]
    assert _reads.named_paths(OtherLoader, (), {}) == ["./other.csv"]
    assert _reads.named_paths(by_class, (), {}) == ["./class.csv"]
    assert sorted(_reads.named_paths(by_dataclass, (), {})) == ["./dataclass.csv", "./nested.csv"]
    assert _reads.named_paths(by_namespace, (), {}) == ["./namespace.csv"]


def test_a_file_named_by_an_inherited_attribute_or_a_config_is_checked(
    files: None, home: Path
) -> None:
    with Workflow("held", root=".") as wf:
        outs = [node(by_class)(), node(by_dataclass)(), node(by_namespace)()]
    loader = Loader()
    wf.add_node(loader)
    first = wf.execute()
    assert first.executed == 4 and first[loader]["text"] == "base"
    assert wf.execute().cached == 4
    for name in NAMES:
        Path(f"{name}.csv").write_text(f"{name}!")
    again = wf.execute()
    assert again.executed == 4, "a stale hit: the edited file was not checked"
    assert [again[o] for o in outs] == ["class!", "dataclass!nested!", "namespace!"]
    assert again[loader]["text"] == "base!"
