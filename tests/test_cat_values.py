"""``etherealfabric cat`` gives a past result whole, in a fresh process as a user types it: a
frame's or series' index in its JSON (a ``groupby``'s keys), a pickled object whose class lives
in the user's module beside the workflow file, and a ``.npy`` that numpy reads (or exit 2)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cli_runner

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

GROUPED = """
import numpy as np
import pandas as pd
from etherealfabric import Workflow, node

@node
def sales():
    return pd.DataFrame({"store": ["a", "b", "a"], "day": [1, 1, 2], "qty": [1, 2, 3]})

@node
def by_store(df):
    return df.groupby("store")["qty"].sum()

@node
def by_store_df(df):
    return df.groupby("store").agg(total=("qty", "sum"))

@node
def by_two(df):
    return df.groupby(["store", "day"]).agg(total=("qty", "sum"))

@node
def by_two_series(df):
    return df.groupby(["store", "day"])["qty"].sum()

@node
def odd_frame():  # unnamed levels, a level named like a column, NaN and inf
    index = pd.MultiIndex.from_tuples([("x", 1), ("y", 2)], names=[None, "qty"])
    return pd.DataFrame({"qty": [1.5, float("nan")], "level_0": [np.inf, 0.0]}, index)

@node
def dated():
    return pd.Series([1.0, float("-inf")], pd.to_datetime(["2026-01-05", "2026-02-07"]))

@node
def plain():
    return pd.Series([3, 4], name="n")

with Workflow("grouped") as wf:
    s = sales()
    by_store(s), by_store_df(s), by_two(s), by_two_series(s)
    odd_frame(), dated(), plain()
"""


def _strict_json(text: str) -> Any:
    """``text`` parsed as JSON proper: ``NaN`` and ``Infinity`` are refused."""

    def refuse(word: str) -> object:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def _cat(cwd: Path, *args: str, **env: str) -> Any:
    done = cli_runner.ef(cwd, "cat", "latest", *args, **env)
    assert done.returncode == 0, done.stderr
    return _strict_json(done.stdout)


def test_cat_json_keeps_the_index_of_frames_and_series(tmp_path: Path) -> None:
    """A groupby's keys (every level of a MultiIndex) were dropped by --json and -o .json, and
    a series was a bare list of its values: only the table view and a frame's .csv had them."""
    (tmp_path / "flow.py").write_text(GROUPED)
    cli_runner.ran(tmp_path)
    assert _cat(tmp_path, "by_store", "--json") == [
        {"store": "a", "qty": 4},
        {"store": "b", "qty": 2},
    ]
    by_store = [{"store": "a", "total": 4}, {"store": "b", "total": 2}]
    assert _cat(tmp_path, "by_store_df", "--json") == by_store
    by_two = [
        {"store": "a", "day": 1, "total": 1},
        {"store": "a", "day": 2, "total": 3},
        {"store": "b", "day": 1, "total": 2},
    ]
    assert _cat(tmp_path, "by_two", "--json") == by_two
    assert _cat(tmp_path, "by_two_series", "--json") == [
        {"store": r["store"], "day": r["day"], "qty": r["total"]} for r in by_two
    ]
    for node, expected in (("by_store_df", by_store), ("by_two", by_two)):
        done = cli_runner.ef(tmp_path, "cat", "latest", node, "-o", f"{node}.json")
        assert done.returncode == 0, done.stderr
        assert _strict_json((tmp_path / f"{node}.json").read_text()) == expected
    done = cli_runner.ef(tmp_path, "cat", "latest", "by_store", "-o", "by_store.json")
    assert done.returncode == 0, done.stderr
    assert _strict_json((tmp_path / "by_store.json").read_text())[0] == {"store": "a", "qty": 4}
    done = cli_runner.ef(tmp_path, "cat", "latest", "by_two_series", "-o", "by_two.csv")
    assert done.returncode == 0, done.stderr  # a series' .csv has its keys too (it had none)
    assert (tmp_path / "by_two.csv").read_text().split() == [
        "store,day,qty",
        "a,1,1",
        "a,2,3",
        "b,1,2",
    ]
    # unnamed levels get names, a name a column has gets index_; NaN and inf are null
    assert _cat(tmp_path, "odd_frame", "--json") == [
        {"index_level_0": "x", "index_qty": 1, "qty": 1.5, "level_0": None},
        {"index_level_0": "y", "index_qty": 2, "qty": None, "level_0": 0.0},
    ]
    assert _cat(tmp_path, "dated", "--json") == [
        {"index": "2026-01-05T00:00:00.000", "value": 1.0},
        {"index": "2026-02-07T00:00:00.000", "value": None},
    ]
    # the default 0, 1, 2... index stays implicit, as before
    assert _cat(tmp_path, "plain", "--json") == [3, 4]
    assert _cat(tmp_path, "sales", "--json")[0] == {"store": "a", "day": 1, "qty": 1}


FLOW = """
from etherealfabric import Workflow, node
from models import Model

@node
def train():
    return Model(2)

with Workflow("models") as wf:
    train()
"""

SCRIPT = FLOW + "\nwf.execute()\n"

MODELS = """
class Model:
    def __init__(self, k):
        self.k = k

    def __repr__(self):
        return f"Model({self.k})"
"""


@pytest.mark.parametrize("how", ["cli", "script"])
def test_cat_loads_a_class_from_the_users_module_beside_the_workflow_file(
    tmp_path: Path, how: str
) -> None:
    """The value of a class in ``models.py`` next to the workflow file: cat failed (No module
    named 'models') and advised recomputing it, which failed the same way; ``-o x.pkl``, which
    writes the stored bytes, unpickled it first and failed too."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "models.py").write_text(MODELS)
    home = str(tmp_path / "home")
    if how == "cli":  # etherealfabric run project/flow.py: it puts project/ on sys.path
        (project / "flow.py").write_text(FLOW)
        cli_runner.ran(tmp_path, "project/flow.py", ETHEREALFABRIC_HOME=home)
    else:  # python project/script.py: Python puts project/ on sys.path
        (project / "script.py").write_text(SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        env["ETHEREALFABRIC_HOME"] = home
        done = subprocess.run(
            [sys.executable, "project/script.py"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def cat(where: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """cat as the installed ``etherealfabric`` command runs: no working folder on
        ``sys.path`` (``python -m`` puts it first)."""
        env = {"ETHEREALFABRIC_HOME": home, "PYTHONSAFEPATH": "1", **env}
        return cli_runner.ef(where, "cat", "latest", "train", *args, **env)

    for where in (tmp_path, elsewhere):  # (neither is the project's folder)
        done = cat(where)
        assert done.returncode == 0 and done.stdout.strip() == "Model(2)", done.stderr
    done = cat(elsewhere, "-o", "m.pkl")
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(project))
    try:
        assert pickle.loads((elsewhere / "m.pkl").read_bytes()).k == 2
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("models", None)

    # the module moved away: the message names it and how to make it found, never a recompute
    lib = tmp_path / "lib"
    lib.mkdir()
    (project / "models.py").rename(lib / "models.py")
    done = cat(elsewhere)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "it needs the module 'models', which cannot be imported here" in done.stderr
    assert "the stored result is intact" in done.stderr and "PYTHONPATH" in done.stderr
    assert "recompute" not in done.stderr and "--force" not in done.stderr
    done = cat(elsewhere, "-o", "n.pkl")
    assert done.returncode == 0, done.stderr  # the bytes, never unpickled
    assert (elsewhere / "n.pkl").read_bytes() == (elsewhere / "m.pkl").read_bytes()
    path = os.pathsep.join([str(lib), os.environ.get("PYTHONPATH", "")])
    for done in (cat(lib), cat(elsewhere, PYTHONPATH=path)):  # as the message says
        assert done.returncode == 0 and done.stdout.strip() == "Model(2)", done.stderr


NPY = """
import numpy as np
import pandas as pd
from etherealfabric import Workflow, node

@node
def frame():
    return pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})

@node
def scalar():
    return 3.5

@node
def array():
    return np.arange(4)

@node
def series():
    return pd.Series([1.5, 2.5])

@node
def keyed():
    return pd.Series([1, 2], index=["a", "b"])

@node
def scores():
    return {"auc": 0.5}

with Workflow("npy") as wf:
    frame(), scalar(), array(), series(), keyed(), scores()
"""


def test_cat_npy_is_a_file_numpy_reads_or_exit_2(tmp_path: Path) -> None:
    """``-o x.npy`` of a frame or a number wrote the stored bytes (parquet, JSON text) under
    the .npy name, with exit 0: a file numpy cannot read."""
    (tmp_path / "flow.py").write_text(NPY)
    cli_runner.ran(tmp_path)
    for node, expected in (
        ("scalar", np.asarray(3.5)),
        ("array", np.arange(4)),
        ("series", np.array([1.5, 2.5])),  # the default index: its values are all of it
    ):
        done = cli_runner.ef(tmp_path, "cat", "latest", node, "-o", f"{node}.npy")
        assert done.returncode == 0, done.stderr
        loaded = np.load(tmp_path / f"{node}.npy", allow_pickle=False)
        assert loaded.shape == expected.shape and (loaded == expected).all(), loaded
    for node, says in (
        ("frame", "frame.result is a DataFrame: a .npy would lose its column names, so it "
         "cannot be written as .npy; use .csv, .parquet or .json"),
        ("keyed", "keyed.result is a Series with an index of its own (not 0, 1, 2...): a .npy "
         "would lose it, so it cannot be written as .npy; use .csv or .json"),
        ("scores", "scores.result is a dict, not an array, so it cannot be written as .npy; "
         "use .json"),
    ):  # fmt: skip
        done = cli_runner.ef(tmp_path, "cat", "latest", node, "-o", f"{node}.npy")
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert says in done.stderr
        assert not (tmp_path / f"{node}.npy").exists()
    done = cli_runner.ef(tmp_path, "cat", "latest", "frame", "-o", "frame.json")
    assert done.returncode == 0 and "Traceback" not in done.stderr  # as the message says
