"""What a node's result depends on that its key cannot cover is reported, never silent.

Each case is a node whose result depends on something outside its code and parameters: the
command line (``sys.argv``), a module-level object standing for external state (an open file,
a sqlite connection, a polars ``LazyFrame``, a pyarrow dataset), or a module-level random
generator shared between nodes. Each gets a ``FingerprintWarning`` naming the construct and its
``file:line``, and is listed in ``Fingerprint.uncovered`` (what ``plan --keys`` and ``explain``
show as not covered). The value itself is still hashed as before: its part keeps its digest.

The same project machinery as ``test_code_reach.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from etherealfabric.hashing._fingerprint import FingerprintWarning
from etherealfabric.hashing._values import hash_value
from test_code_reach import Project, fp
from test_code_reach_dynamic import quiet, warned

# -- the command line ------------------------------------------------------------------------

ARGV = """
import sys
from sys import argv as ARGS


def node_argv():
    return int(sys.argv[1]) if len(sys.argv) > 1 else 1


def node_alias():
    return len(ARGS)


def helper():
    return len(sys.argv)


def node_helper():
    return helper()


def node_local(argv):
    return len(argv)
"""


@pytest.mark.parametrize(
    ("name", "construct", "line"),
    [
        ("node_argv", "sys.argv[1]", 7),
        ("node_argv", "len(sys.argv)", 7),
        ("node_alias", "len(ARGS)", 11),
    ],
)
def test_command_line_reads_warn(project: Project, name: str, construct: str, line: int) -> None:
    message, result = warned(project.load(ARGV), name)
    expected = f"{construct} (a command-line argument) at "
    assert any(
        expected in item and item.endswith(f"sh_flow.py:{line}") for item in result.uncovered
    )
    assert expected in message


def test_command_line_reads_elsewhere_stay_quiet(project: Project) -> None:
    """(A helper's read is reported: ``test_code_reach_helpers.py``.)"""
    assert quiet(project.load(ARGV), "node_local").uncovered == ()


# -- module-level objects standing for external state ----------------------------------------

EXTERNAL = """
import sqlite3

import numpy as np
import polars as pl
import pyarrow.dataset as ds

FH = open("notes.txt")
CON = sqlite3.connect("lookup.db", check_same_thread=False)
SALES = pl.scan_parquet("sales.parquet")
DS = ds.dataset("sales.parquet")
RNG = np.random.default_rng(42)
LIMIT = 3


def node_file():
    return FH.read()


def node_con():
    return CON.execute("select 1").fetchone()[0]


def node_lazy():
    return SALES.collect().height


def node_dataset():
    return DS.to_table().num_rows


def node_rng(n):
    return RNG.normal(size=n)


def node_default(con=CON):
    return con


def node_constant():
    return LIMIT
"""


@pytest.fixture
def external(project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Project:
    import polars as pl

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("first\n")
    pl.DataFrame({"v": [1, 2]}).write_parquet(tmp_path / "sales.parquet")
    return project


@pytest.mark.parametrize(
    ("name", "part", "kind", "line"),
    [
        ("node_file", "sh_flow.FH", "_io.TextIOWrapper", 8),
        ("node_con", "sh_flow.CON", "sqlite3.Connection", 9),
        ("node_lazy", "sh_flow.SALES", "polars.lazyframe.frame.LazyFrame", 10),
        ("node_dataset", "sh_flow.DS", "pyarrow._dataset.FileSystemDataset", 11),
    ],
)
def test_external_state_globals_are_reported(
    external: Project, name: str, part: str, kind: str, line: int
) -> None:
    module = external.load(EXTERNAL)
    message, result = warned(module, name)
    article = "an" if kind.startswith("_io") else "a"  # (said "io")
    expected = f"sh_flow.py:{line}: {article} {kind}, which stands for external state"
    assert f"{part} at " in message and expected in message
    assert any(item.startswith(f"{part} at ") and expected in item for item in result.uncovered)
    assert part in result.parts  # still hashed, as before


def test_a_shared_random_generator_is_reported(external: Project) -> None:
    message, result = warned(external.load(EXTERNAL), "node_rng")
    assert "sh_flow.RNG at " in message
    assert "sh_flow.py:12: a numpy.random._generator.Generator" in message
    assert "depends on which nodes ran before it" in message
    assert len(result.uncovered) == 1


def test_a_default_holding_a_connection_is_reported(external: Project) -> None:
    message, _ = warned(external.load(EXTERNAL), "node_default")
    assert "node_default.<default>.con: a sqlite3.Connection" in message


def test_ordinary_constants_stay_quiet_and_keep_their_digest(external: Project) -> None:
    module = external.load(EXTERNAL)
    result = quiet(module, "node_constant")
    assert result.uncovered == ()
    assert result.parts["sh_flow.LIMIT"] == hash_value(3)


def test_the_note_does_not_change_the_digest(external: Project) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FingerprintWarning)
        first = fp(external.load(EXTERNAL), "node_rng")
        again = fp(external.load(EXTERNAL), "node_rng")  # a new process, as it were
    assert first.digest == again.digest and len(first.uncovered) == len(again.uncovered) == 1


# -- a node that sets a module global --------------------------------------------------------

STORES = """
STATE = 0
_CACHE = {}


def node_sets(n):
    global STATE
    STATE = n
    return n


def node_nested(n):
    def inner():
        global STATE
        del STATE

    inner()
    return n


def node_reads(x):
    return x + STATE


def helper(n):
    global _CACHE
    _CACHE = {n: n}
    return n


def node_helper(n):
    return helper(n)


def node_in_place(n):
    _CACHE[n] = n
    return n
"""


@pytest.mark.parametrize(("name", "line"), [("node_sets", 8), ("node_nested", 15)])
def test_a_node_assigning_a_module_global_is_reported(
    project: Project, name: str, line: int
) -> None:
    message, result = warned(project.load(STORES), name)
    assert "global STATE (assigns a module global" in message
    assert f"sh_flow.py:{line}" in message
    assert "when this node is a cache hit" in message
    assert len(result.uncovered) == 1


@pytest.mark.parametrize("name", ["node_reads", "node_helper", "node_in_place"])
def test_reading_a_global_or_a_helpers_assignment_stays_quiet(project: Project, name: str) -> None:
    assert quiet(project.load(STORES), name).uncovered == ()


# -- draws from a process's global random generator ----------------------------------------

DRAWS = """
import random

import numpy as np
import numpy.random as npr


def node_numpy(n):
    return np.random.normal(0, 1, n).sum()


def node_stdlib(xs):
    return random.choice(xs)


def node_alias(n):
    return npr.rand(n)


def node_seeds(n, seed=0):
    np.random.seed(seed)
    return np.random.rand(n)


def node_seeds_stdlib(xs, seed=0):
    random.seed(seed)
    return random.choice(xs)


def node_own(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(n)


def helper(n):
    return np.random.rand(n)


def node_helper(n):
    return helper(n)
"""


@pytest.mark.parametrize(
    ("name", "construct", "line"),
    [
        ("node_numpy", "np.random.normal(...)", 9),
        ("node_stdlib", "random.choice(...)", 13),
        ("node_alias", "npr.rand(...)", 17),
    ],
)
def test_a_draw_from_a_global_random_generator_is_reported(
    project: Project, name: str, construct: str, line: int
) -> None:
    """Seeded at a module's top level (which a worker process never runs), or not at all, a
    draw gives what the draws before it in the process left: not in the key."""
    message, result = warned(project.load(DRAWS), name)
    assert f"{construct} (the process's global random generator" in message
    assert "np.random.default_rng(seed)" in message
    assert any(item.endswith(f"sh_flow.py:{line}") for item in result.uncovered)


@pytest.mark.parametrize("name", ["node_seeds", "node_seeds_stdlib", "node_own"])
def test_a_node_seeding_its_draws_or_drawing_from_its_own_generator_stays_quiet(
    project: Project, name: str
) -> None:
    assert quiet(project.load(DRAWS), name).uncovered == ()


# -- data read from a URL --------------------------------------------------------------------

URLS = """
import pandas as pd

SOURCE = "s3://bucket/sales.parquet"
DOCS = "see https://example.com/docs for the format"


def node_http():
    return pd.read_csv("http://127.0.0.1:8766/sales.csv")


def node_https(name):
    return pd.read_csv(f"https://example.com/{name}.csv")


def node_file_url():
    return pd.read_csv("file:///data/sales.csv")


def node_global():
    return pd.read_parquet(SOURCE)


def node_docs():
    \"\"\"Reads https://example.com/sales.csv.\"\"\"
    return DOCS
"""


@pytest.mark.parametrize(
    ("name", "url", "line"),
    [
        ("node_http", "'http://127.0.0.1:8766/sales.csv'", 9),
        ("node_https", "'https://example.com/'", 13),
        ("node_file_url", "'file:///data/sales.csv'", 17),
        ("node_global", "sh_flow.SOURCE at ", 4),
    ],
)
def test_data_urls_are_reported(project: Project, name: str, url: str, line: int) -> None:
    message, result = warned(project.load(URLS), name)
    assert url in message and "data at a URL" in message and f"sh_flow.py:{line}" in message
    assert len(result.uncovered) == 1


def test_a_sentence_with_a_link_or_a_docstring_stays_quiet(project: Project) -> None:
    assert quiet(project.load(URLS), "node_docs").uncovered == ()


# -- an unstable parameter names its node ----------------------------------------------------

SENTINEL_FLOW = """
from etherealfabric import Workflow, node

SENTINEL = object()


@node
def pick(x=SENTINEL):
    return x is SENTINEL


with Workflow("sentinel") as wf:
    out = pick()

if __name__ == "__main__":
    print("RESULT", wf.execute()[out])
"""


def test_an_unstable_parameter_warning_names_the_node_and_points_at_its_code(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(SENTINEL_FLOW)
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "flow.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert "RESULT True" in done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if "UnstableHashWarning" in line]
    assert len(lines) == 1, done.stderr
    at = f"{tmp_path / 'flow.py'}:7: UnstableHashWarning: parameter 'x' of node 'pick'"
    assert lines[0].startswith(at), lines[0]  # the @node line of pick
    assert "builtins.object" in lines[0] and "_encoder.py" not in done.stderr


def test_a_numpy_draw_is_named_before_numpy_random_was_ever_imported(tmp_path: Path) -> None:
    """numpy 2 imports ``numpy.random`` on first use of ``np.random``: in a fresh process the
    keys were computed before any draw, so ``np.random.normal()`` went unnamed."""
    pytest.importorskip("numpy")
    (tmp_path / "flow.py").write_text(
        "import numpy as np\nfrom etherealfabric import Workflow, node\n\n"
        "@node\ndef b():\n    return float(np.random.normal())\n\n"
        "with Workflow('draws') as wf:\n    b()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "plan", "flow.py", "--keys", "b"],
        cwd=tmp_path, env={**env, "ETHEREALFABRIC_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "np.random.normal(...) (the process's global random generator" in done.stdout
