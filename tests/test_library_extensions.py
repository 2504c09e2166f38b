"""The user's code set on a library's classes is in the key of a node that calls it through a
value: a pandas accessor (``df.geo.center()``) and a method patched on ``pd.DataFrame``
(hashing/_extensions.py). Before, editing either was served stale: the node names only the
attributes, of a frame its fingerprint never sees."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_runner import ran

pytest.importorskip("pandas")

GEO = """
import pandas as pd

@pd.api.extensions.register_dataframe_accessor("geo")
class Geo:
    def __init__(self, df):
        self._df = df

    def center(self):
        return float(self._df["x"].mean())


def total(self):
    return float(self["x"].sum())


pd.DataFrame.total = total
"""

FLOW = """
import pandas as pd
from etherealfabric import Workflow, node
import geo  # registers the accessor and the method

@node
def center():
    return pd.DataFrame({"x": [1.0, 2.0, 3.0]}).geo.center()

@node
def summed():
    return pd.DataFrame({"x": [1.0, 2.0, 3.0]}).total()

@node
def plain():
    return float(pd.DataFrame({"x": [1.0, 2.0, 3.0]})["x"].max())

with Workflow("extensions") as wf:
    center()
    summed()
    plain()
"""


def test_editing_an_accessor_or_a_patched_method_runs_the_nodes_calling_it(
    tmp_path: Path, ef: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    (tmp_path / "geo.py").write_text(GEO)
    (tmp_path / "flow.py").write_text(FLOW)

    def value(name: str) -> float:
        shown = ef(tmp_path, "cat", "latest", name)
        assert shown.returncode == 0, shown.stderr
        return float(shown.stdout)

    assert ran(tmp_path)["executed"] == 3
    assert ran(tmp_path)["cached"] == 3
    (tmp_path / "geo.py").write_text(GEO.replace(".mean()", ".max()"))
    again = ran(tmp_path)
    assert (again["executed"], again["cached"]) == (1, 2)  # center only
    assert value("center") == 3.0
    (tmp_path / "geo.py").write_text(GEO.replace(".mean()", ".max()").replace(".sum()", ".min()"))
    third = ran(tmp_path)
    assert (third["executed"], third["cached"]) == (1, 2)  # summed only
    assert value("summed") == 1.0
