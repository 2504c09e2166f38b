"""Code and values a node reaches where a plain name lookup does not show them:

- globals named only inside a pandas expression string (``df.query("a > @LIMIT")``,
  ``df.eval``, ``pd.eval``), also a name imported from another module;
- a user function held by a library object in a slot or a ``functools.partial`` attribute
  (``toolz.curry``, a C extension's curry), or by an object that cannot be looked into
  (reported as not covered by the key).

Same project machinery as ``test_code_reach.py``; the CLI cases run in fresh processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from etherealfabric.hashing._fingerprint import FingerprintWarning
from test_code_reach import HELPERS, Project
from test_code_reach_dynamic import quiet, versions

# -- 1. @names in pandas expression strings -------------------------------------------------

QUERY = """
import pandas as pd
from sh_helpers import MIN_A

THRESH = 1
OTHER = 5


def node(df):
    return df.query("a > @THRESH and b < @MIN_A")


def evaluated(df):
    return df.eval("c = a * @THRESH")


def top_level(df):
    return pd.eval("df.a + @THRESH")


def nested(df):
    return [df.query(f) for f in ("a > @THRESH",)]


def dotted(df):
    import sh_helpers

    return df.query("a > @sh_helpers.MIN_A")


def mail(df):
    return df.query("a > 1"), "ask admin@OTHER.org or @nobody_defined"


def no_query(df):
    return "@THRESH"
"""


def test_a_name_in_a_query_string_is_part_of_the_key(project: Project) -> None:
    helpers = "MIN_A = 1\n"
    assert versions(project, QUERY, "THRESH = 1", "THRESH = 2", **{"sh_helpers.py": helpers}) == {
        "sh_flow.THRESH"
    }
    assert versions(project, QUERY, "MIN_A = 1", "MIN_A = 2", **{"sh_helpers.py": helpers}) == {
        "sh_flow.MIN_A"
    }
    dotted = versions(
        project, QUERY, "MIN_A = 1", "MIN_A = 2", "dotted", **{"sh_helpers.py": helpers}
    )
    assert "sh_helpers.MIN_A" in dotted
    for name in ("evaluated", "top_level", "nested"):
        changed = versions(
            project, QUERY, "THRESH = 1", "THRESH = 2", name, **{"sh_helpers.py": helpers}
        )
        assert changed == {"sh_flow.THRESH"}, name


def test_no_names_from_mail_addresses_docstrings_or_code_without_a_query(
    project: Project,
) -> None:
    helpers = "MIN_A = 1\n"
    for name in ("mail", "no_query"):
        assert (
            versions(project, QUERY, "OTHER = 5", "OTHER = 6", name, **{"sh_helpers.py": helpers})
            == set()
        )
        assert versions(
            project, QUERY, "THRESH = 1", "THRESH = 2", name, **{"sh_helpers.py": helpers}
        ) == (set())
    documented = '''
THRESH = 1

def node(df):
    """Filters like df.query with @THRESH."""
    return df.query("a > 1")
'''
    assert versions(project, documented, "THRESH = 1", "THRESH = 2") == set()


# -- 2. user functions in slots, partial attributes, opaque objects ---------------------------

SLOTS = """
import functools


class Curry:
    __slots__ = ("__name__", "_partial")

    def __init__(self, fn, *args):
        self._partial = functools.partial(fn, *args)
        self.__name__ = fn.__name__

    def __call__(self, *args):
        return self._partial(*args)


class Holder:
    __slots__ = ("target",)

    def __init__(self, fn):
        self.target = fn

    def __call__(self, *args):
        return self.target(*args)
"""

SLOTS_FLOW = """
import sh_helpers
from sh_slots import Curry, Holder


def add(a, b):
    return a + b


ADD = Curry(add)
ADD1 = Curry(add, 1)
HELD = Holder(sh_helpers.double)


def node(x):
    return ADD(1, x) + ADD1(x) + HELD(x)
"""


def _library(project: Project) -> None:
    """Makes ``sh_slots`` count as library code (as an installed package would)."""
    from etherealfabric.hashing import _usercode

    _usercode._MODULE_DECISIONS["sh_slots"] = False


def test_functions_in_slots_and_partials_of_a_library_object_are_followed(
    project: Project,
) -> None:
    from etherealfabric.hashing import _usercode

    try:
        _library(project)
        changed = versions(project, SLOTS_FLOW, "a + b", "a + b + 100", **{"sh_slots.py": SLOTS})
        assert "sh_flow.add" in changed
        files = {"sh_slots.py": SLOTS, "sh_helpers.py": HELPERS}
        changed = versions(project, SLOTS_FLOW, "x * 2", "x * 20", **files)
        assert "sh_helpers.double" in changed
        changed = versions(
            project, SLOTS_FLOW, "Curry(add, 1)", "Curry(add, 2)", **{"sh_slots.py": SLOTS}
        )
        assert changed and all("ADD1" in part for part in changed), changed
    finally:
        _usercode._MODULE_DECISIONS.pop("sh_slots", None)


def test_an_object_that_cannot_be_looked_into_is_not_covered(monkeypatch) -> None:
    from etherealfabric.hashing import _held
    from etherealfabric.hashing._references import References

    refs = References()
    refs._current = "sh_flow.OPAQUE"
    refs.held(_Opaque())
    assert refs.uncovered == []  # a Python class: the collector sees what it holds
    monkeypatch.setattr(_held, "_HAVE_GC", 0)  # as a C type without GC support is
    refs.held(_Opaque())
    assert refs.uncovered == [
        "sh_flow.OPAQUE: a test_code_reach_hidden._Opaque, whose contents cannot be looked into"
    ]


class _Opaque:
    """A callable with no instance dictionary, no slots and no referents to see (a C type)."""

    __slots__ = ()

    def __call__(self) -> None:
        pass


TOOLZ_HELPERS = """
import toolz


@toolz.curry
def add(a, b):
    return a + b
"""

TOOLZ_FLOW = """
from etherealfabric import Workflow, node
import helpers


@node
def total(x):
    return helpers.add(1)(x)


with Workflow("curry") as wf:
    total(1)
"""


def test_cli_a_toolz_curried_helper_edit_reruns(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("toolz")
    monkeypatch.chdir(tmp_path)
    Path("helpers.py").write_text(TOOLZ_HELPERS)
    Path("flow.py").write_text(TOOLZ_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert json.loads(cli("run", "flow.py", "--json"))["executed"] == 1
    Path("helpers.py").write_text(TOOLZ_HELPERS.replace("a + b", "a + b + 100"))
    second = json.loads(cli("run", "flow.py", "--json"))
    assert second["executed"] == 1
    assert cli("cat", second["run_id"], "total").strip() == "102"
    keys = cli("plan", "flow.py", "--keys", "total")
    assert "helpers.add" in keys and re.search(r"package\s+toolz", keys), keys


def test_quiet_for_common_library_callables(project: Project) -> None:
    flow = """
import operator
import numpy as np

GET = operator.itemgetter("a")
ADD = np.add
SUM = np.sum


def node(x):
    return GET(x), ADD(x, 1), SUM(x)
"""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FingerprintWarning)
        assert quiet(project.load(flow)).uncovered == ()
