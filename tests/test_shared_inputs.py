"""Sibling nodes reading one output at the same time never see each other's changes.

On the threads backend a loaded value can serve several consumers of one process. A frame is
loaded once and every consumer gets its own frame object over the shared data; a value that
a node could change in place (a user's object, a model) is loaded for each consumer.
Each test makes the two consumers overlap for certain: the reader starts, the mutator changes
its input only then, and the reader looks at its own input only after that.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from etherealfabric import Workflow, node

SEEN: list[Any] = []


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared: the two consumers did not overlap")
        time.sleep(0.005)


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


@node
def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(n, dtype="f8"), "b": np.ones(n), "c": np.zeros(n)})


@node
def mutate(df: pd.DataFrame, flags: str) -> float:
    SEEN.append(df)
    _wait_for(os.path.join(flags, "reader-started"))
    df["a"] = -1.0  # a whole column
    df.loc[0, "b"] = 99.0  # one cell
    del df["c"]
    df["new"] = 1
    _touch(os.path.join(flags, "mutated"))
    return float(df["a"].sum())


@node
def read(df: pd.DataFrame, flags: str) -> tuple[list[str], float, float]:
    SEEN.append(df)
    _touch(os.path.join(flags, "reader-started"))
    _wait_for(os.path.join(flags, "mutated"))
    return list(df.columns), float(df["a"].sum()), float(df["b"].iloc[0])


class Basket:
    def __init__(self, items: list[int]) -> None:
        self.items = items


@node
def basket(n: int) -> Basket:
    return Basket(list(range(n)))


@node
def add_to(b: Basket, flags: str) -> int:
    _wait_for(os.path.join(flags, "reader-started"))
    b.items.append(100)
    b.items[0] = -5
    _touch(os.path.join(flags, "mutated"))
    return len(b.items)


@node
def look_at(b: Basket, flags: str) -> list[int]:
    _touch(os.path.join(flags, "reader-started"))
    _wait_for(os.path.join(flags, "mutated"))
    return list(b.items)


def _hold(df: pd.DataFrame, flags: str, me: str, other: str) -> int:
    SEEN.append(df)
    _touch(os.path.join(flags, me))
    _wait_for(os.path.join(flags, other))
    return len(df)


@node
def hold_one(df: pd.DataFrame, flags: str) -> int:
    return _hold(df, flags, "one", "two")


@node
def hold_two(df: pd.DataFrame, flags: str) -> int:
    return _hold(df, flags, "two", "one")


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


@pytest.mark.parametrize("n", [100, 300_000])  # inline in the journal, and an object
def test_a_frame_changed_by_one_consumer_is_unchanged_for_its_sibling(
    tmp_path: Path, n: int
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    with Workflow("shared-frame", home=tmp_path / "home") as wf:
        df = frame(n)
        mutate(df, str(flags))
        read(df, str(flags))
    results = wf.execute(backend="threads", max_workers=2)
    assert results["mutate"]["result"] == -float(n)
    columns, total, first_b = results["read"]["result"]
    assert columns == ["a", "b", "c"]
    assert total == float(np.arange(n).sum())
    assert first_b == 1.0
    # both held the frame at once: two frame objects, one copy of the data under
    # copy-on-write (pandas 3), whatever the mutator did to its own
    assert len(SEEN) == 2 and SEEN[0] is not SEEN[1]
    again = results["frame"]["result"]
    assert list(again.columns) == ["a", "b", "c"] and again["b"].iloc[0] == 1.0


def test_frames_loaded_at_once_share_their_data(tmp_path: Path) -> None:
    """Own frame objects, one copy of the data (pandas 3's copy-on-write; a deep copy each
    without it)."""

    flags = tmp_path / "flags"
    flags.mkdir()
    with Workflow("shared-data", home=tmp_path / "home") as wf:
        df = frame(300_000)
        hold_one(df, str(flags))
        hold_two(df, str(flags))
    wf.execute(backend="threads", max_workers=2)
    first, second = SEEN
    assert first is not second
    shared = np.shares_memory(first["a"].to_numpy(), second["a"].to_numpy())
    assert shared == (int(pd.__version__.split(".")[0]) >= 3)


def test_a_users_object_changed_by_one_consumer_is_unchanged_for_its_sibling(
    tmp_path: Path,
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    with Workflow("shared-object", home=tmp_path / "home") as wf:
        b = basket(5)
        add_to(b, str(flags))
        look_at(b, str(flags))
    results = wf.execute(backend="threads", max_workers=2)
    assert results["add_to"]["result"] == 6
    assert results["look_at"]["result"] == [0, 1, 2, 3, 4]


# -- literal arguments -------------------------------------------------------------------------------
@node
def tweak(cfg: dict[str, Any], flags: str) -> int:
    _wait_for(os.path.join(flags, "reader-started"))
    cfg["lr"] = 99
    cfg["layers"].append(64)
    _touch(os.path.join(flags, "mutated"))
    return len(cfg["layers"])


@node
def use(cfg: dict[str, Any], flags: str) -> tuple[float, list[int]]:
    _touch(os.path.join(flags, "reader-started"))
    _wait_for(os.path.join(flags, "mutated"))
    return cfg["lr"], list(cfg["layers"])


@node
def scale(a: np.ndarray) -> float:
    with contextlib.suppress(ValueError):  # read-only: an input array is shared
        a *= 2
    return float(a.sum())


def test_a_literal_changed_by_one_node_is_unchanged_for_its_sibling_and_the_script(
    tmp_path: Path,
) -> None:
    """Literal arguments are each task's own: the sibling, the user's script and the cached
    results all keep the value the keys were computed from."""
    config = {"lr": 0.1, "layers": [8, 16]}
    array = np.arange(4.0)

    flags = tmp_path / "flags"
    flags.mkdir()

    def build() -> Workflow:
        with Workflow("shared-literal", home=tmp_path / "home") as wf:
            tweak(config, str(flags))
            use(config, str(flags))
            scale(array)
        return wf

    results = build().execute(backend="threads", max_workers=2)
    assert results["tweak"]["result"] == 3
    assert results["use"]["result"] == (0.1, [8, 16])
    assert results["scale"]["result"] == 6.0
    assert config == {"lr": 0.1, "layers": [8, 16]}
    assert array.tolist() == [0.0, 1.0, 2.0, 3.0] and array.flags.writeable
    again = build().execute(backend="threads", max_workers=2)
    assert (again.executed, again.cached) == (0, 3)
