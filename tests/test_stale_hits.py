"""Zero stale hits, through the command line in fresh processes, as a user edits and re-runs.

Each case writes a small project (``pipeline.py`` and the files it uses), runs it, edits one
thing and runs it again: exactly the nodes whose behaviour the edit changes re-run (a stale
hit if fewer, a needless miss if more). The project, its ``run`` and ``edit`` are the edit
matrix's (:mod:`test_incremental_matrix`); the fingerprint-level detail is in
``test_code_reach.py``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import File, Workflow, node
from test_incremental_matrix import Project as MatrixProject

HEADER = """
import functools
from etherealfabric import Workflow, node
"""


class Project(MatrixProject):
    """The edit matrix's project with files of our own (``pipeline.py`` among them)."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        self.file = root / "pipeline.py"
        for relative, text in files.items():
            self.write(relative, text)

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())

    def edit_file(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ETHEREALFABRIC_HOME": str(self.root / "home")}
        out = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out

    def last_run(self) -> str:
        runs = json.loads(self.cli("runs", "--json").stdout)
        return str(max(runs, key=lambda r: r["started_at"])["id"])


def pipeline(body: str, calls: str, *, other: bool = True) -> str:
    """A workflow file: the header, ``body`` (and ``other``), then ``calls`` in a Workflow."""
    block = textwrap.indent(textwrap.dedent(calls).strip(), "    ")
    code = textwrap.dedent(body) + (OTHER if other else "")
    return f"{HEADER}\n{code}\n\nwith Workflow('stale') as workflow:\n{block}\n"


OTHER = """

@node
def other(xs):
    return sum(xs)
"""

# -- stale hits: an edit that changes what a node computes re-runs it ------------------------

DICT_REGISTRY = pipeline(
    """
    def std(x):
        return x * 1


    def robust(x):
        return x + 0


    MODELS = {"std": std, "robust": [robust]}


    @node
    def fit(xs):
        return [MODELS["std"](x) for x in xs]
    """,
    "fit([1, 2, 3])\nother([1, 2])",
)

BODY_IMPORTS = pipeline(
    """
    from shpkg.nodes import relative


    @node
    def absolute(xs):
        from sh_util import g
        return [g(x) for x in xs]


    @node
    def whole_module(xs):
        import sh_util
        return [sh_util.g(x) for x in xs]
    """,
    "absolute([1, 2])\nwhole_module([1, 2])\nnode(relative)([1, 2])\nother([1, 2])",
)
SH_UTIL = "def g(x):\n    return x + 1\n"
SHPKG = {
    "shpkg/__init__.py": "",
    "shpkg/util.py": "def h(x):\n    return x * 10\n",
    "shpkg/nodes.py": "def relative(xs):\n    from .util import h\n    return [h(x) for x in xs]\n",
}

ARGUMENTS = pipeline(
    """
    def target(x, k):
        return x * k


    class Model:
        def __init__(self, w):
            self.w = w

        @property
        def scale(self):
            return self.w * 2

        def predict(self, x):
            return x * self.scale


    @node
    def with_partial(xs, fn):
        return [fn(x) for x in xs]


    @node
    def with_method(xs, fn):
        return [fn(x) for x in xs]


    @node
    def with_instance(xs, model):
        return [model.predict(x) for x in xs]
    """,
    """
    with_partial([1, 2], fn=functools.partial(target, k=2))
    with_method([1, 2], fn=Model(3).predict)
    with_instance([1, 2], model=Model(3))
    other([1, 2])
    """,
)

# library settings made at a module's top level change what the nodes of that module compute
SETTINGS = pipeline(
    """
    import logging
    import random
    import warnings

    import fmt

    SEED = 1
    random.seed(SEED)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


    @node
    def draw(xs):
        return [random.random() for _ in xs]


    @node
    def show(xs):
        return fmt.show(xs)
    """,
    "draw([1, 2])\nshow([0.123456789])\nother([1, 2])",
)
FMT = """
import pandas as pd

pd.set_option("display.precision", 3)


def show(xs):
    return pd.DataFrame({"x": xs}).to_string()
"""


@pytest.mark.parametrize(
    ("files", "edit", "expected"),
    [
        ({"pipeline.py": DICT_REGISTRY}, ("pipeline.py", "return x * 1", "return x * 2"), {"fit"}),
        ({"pipeline.py": DICT_REGISTRY}, ("pipeline.py", "return x + 0", "return x - 0"), {"fit"}),
        ({"pipeline.py": BODY_IMPORTS, "sh_util.py": SH_UTIL, **SHPKG},
         ("sh_util.py", "x + 1", "x + 2"), {"absolute", "whole_module"}),
        ({"pipeline.py": BODY_IMPORTS, "sh_util.py": SH_UTIL, **SHPKG},
         ("shpkg/util.py", "x * 10", "x * 11"), {"relative"}),
        ({"pipeline.py": ARGUMENTS}, ("pipeline.py", "return x * k", "return x * k + 1"),
         {"with_partial"}),
        ({"pipeline.py": ARGUMENTS}, ("pipeline.py", "return x * self.scale", "return x + self.scale"),
         {"with_method", "with_instance"}),
        ({"pipeline.py": ARGUMENTS}, ("pipeline.py", "return self.w * 2", "return self.w * 5"),
         {"with_method", "with_instance"}),
        ({"pipeline.py": ARGUMENTS}, ("pipeline.py", "model=Model(3)", "model=Model(4)"),
         {"with_instance"}),
        ({"pipeline.py": SETTINGS, "fmt.py": FMT}, ("pipeline.py", "SEED = 1", "SEED = 2"),
         {"draw", "show", "other"}),  # (every node of the module: whichever draws)
        ({"pipeline.py": SETTINGS, "fmt.py": FMT}, ("fmt.py", '"display.precision", 3',
         '"display.precision", 6'), {"show"}),
        ({"pipeline.py": SETTINGS, "fmt.py": FMT}, ("pipeline.py", "level=logging.WARNING",
         "level=logging.INFO"), set()),
        ({"pipeline.py": SETTINGS, "fmt.py": FMT}, ("pipeline.py", "DeprecationWarning",
         "FutureWarning"), set()),
    ],
    ids=["dict-registry", "nested-in-registry", "import-in-body", "relative-import-in-body",
         "partial-target", "method-and-instance-class", "property", "instance-state",
         "module-seed", "helper-module-option", "logging-setup", "warnings-filter"],
)  # fmt: skip
def test_an_edit_reruns_the_nodes_whose_code_it_changes(
    tmp_path: Path, files: dict[str, str], edit: tuple[str, str, str], expected: set[str]
) -> None:
    p = Project(tmp_path, files)
    first = p.run()
    assert "other" in first and len(first) >= 2
    assert p.run() == set(), "an unchanged re-run executes nothing"
    p.edit_file(*edit)
    assert p.run() == expected


# -- installed packages, by version ----------------------------------------------------------

PACKAGES = pipeline(
    """
    import fakepkg


    @node
    def at_top(xs):
        return fakepkg.f(xs)


    @node
    def in_body(xs):
        from fakepkg import f
        return f(xs)
    """,
    "at_top([1, 2])\nin_body([1, 2])\nother([1, 2])",
)


def install_fake(site: Path, version: str) -> None:
    """``fakepkg`` installed into ``site`` (a folder on the path) with a .dist-info of ``version``."""
    for old in site.glob("fakepkg-*.dist-info"):
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
    (site / "fakepkg").mkdir(parents=True, exist_ok=True)
    (site / "fakepkg" / "__init__.py").write_text("def f(xs):\n    return [x + 1 for x in xs]\n")
    info = site / f"fakepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakepkg\n")


def test_upgrading_a_package_reruns_the_nodes_that_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    install_fake(site, "1.0")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    )
    p = Project(tmp_path / "project", {"pipeline.py": PACKAGES})
    assert p.run() == {"at_top", "in_body", "other"}
    assert p.run() == set()

    install_fake(site, "1.1")
    assert p.run() == {"at_top", "in_body"}
    explained = p.cli("explain", p.last_run(), "at_top").stdout
    assert "package fakepkg 1.0 → 1.1" in explained

    # the package's code counts by its version only: an edit without a new version is not seen
    (site / "fakepkg" / "__init__.py").write_text("def f(xs):\n    return [x + 2 for x in xs]\n")
    assert p.run() == set()

    # major.minor only: a patch release keeps the keys, a minor one does not
    monkeypatch.setenv("ETHEREALFABRIC_PACKAGE_VERSIONS", "minor")
    assert p.run() == set(), "1.1 is 1.1 in both modes"
    install_fake(site, "1.1.5")
    assert p.run() == set()
    install_fake(site, "1.2")
    assert p.run() == {"at_top", "in_body"}

    # off: packages are not part of keys (the first run drops them from the keys)
    monkeypatch.setenv("ETHEREALFABRIC_PACKAGE_VERSIONS", "off")
    assert p.run() == {"at_top", "in_body"}
    install_fake(site, "2.0")
    assert p.run() == set()


# -- needless misses: what does not change a node's behaviour does not re-run it -------------

STATEFUL = pipeline(
    """
    class Options:
        def __init__(self, tags):
            self.tags = set(tags)
            self.name = "x"

        def scale(self):
            return len(self.tags)


    def target(x, k):
        return x * k


    @node
    def with_options(xs, options):
        return [x * options.scale() for x in xs]


    @node
    def with_partial(xs, fn):
        return [fn(x) for x in xs]
    """,
    """
    with_options([1, 2], options=Options(["alpha", "beta", "gamma", "delta", "epsilon"]))
    with_partial([1, 2], fn=functools.partial(target, k=2))
    """,
    other=False,
)


def test_instances_of_workflow_classes_hash_alike_in_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance of a class from the workflow file holding a set of strings, and a partial."""
    p = Project(tmp_path, {"pipeline.py": STATEFUL})
    monkeypatch.setenv("PYTHONHASHSEED", "1")
    assert p.run() == {"with_options", "with_partial"}
    for seed in ("2", "3"):
        monkeypatch.setenv("PYTHONHASHSEED", seed)
        assert p.run() == set()


def test_a_partial_whose_target_moved_is_still_cached(tmp_path: Path) -> None:
    p = Project(tmp_path, {"pipeline.py": STATEFUL})
    assert p.run() == {"with_options", "with_partial"}
    p.edit("\ndef target(x, k):", "\n# a comment, and blank lines\n\n\n\ndef target(x, k):")
    assert p.run() == set()


# -- what the key cannot see is never silent -------------------------------------------------

DYNAMIC = pipeline(
    """
    import sh_util


    @node
    def by_name(xs, name):
        return [getattr(sh_util, name)(x) for x in xs]
    """,
    "by_name([1, 2], name='g')\nother([1, 2])",
)


def test_dynamic_lookups_warn_and_are_listed_as_not_covered(tmp_path: Path) -> None:
    p = Project(tmp_path, {"pipeline.py": DYNAMIC, "sh_util.py": SH_UTIL})
    lines = p.file.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "getattr(sh_util" in text)
    construct = f"getattr(sh_util, <computed>) at pipeline.py:{line}"
    ran = p.cli("run", "pipeline.py")
    assert ran.stderr.count("FingerprintWarning") == 1, ran.stderr
    assert construct in ran.stderr and "by_name" in ran.stderr
    assert f"by_name: not covered by the key: {construct}" in p.cli("plan", "pipeline.py").stdout
    explained = p.cli("explain", p.last_run(), "by_name").stdout
    assert f"not covered by the key: {construct}" in explained
    assert "not covered" not in p.cli("explain", p.last_run(), "other").stdout


# -- the audit: every part of a key -----------------------------------------------------------

AUDITED = pipeline(
    """
    import numpy as np
    import sh_util

    SCALE = 3


    @node
    def load(n):
        return list(range(n))


    def shift(x, by):
        return x + by


    @node
    def fit(xs, lr, post):
        return [post(sh_util.g(x)) * lr * SCALE for x in np.asarray(xs)]
    """,
    "fit(load(4), lr=0.5, post=functools.partial(shift, by=1))",
    other=False,
)


def test_plan_keys_lists_every_part_of_a_key(tmp_path: Path) -> None:
    import numpy as np

    p = Project(tmp_path, {"pipeline.py": AUDITED, "sh_util.py": SH_UTIL})
    before = p.cli("plan", "pipeline.py", "--keys", "fit").stdout
    assert "key of 'fit': not known yet" in before
    assert "from an upstream node" in before
    p.run()
    audit = json.loads(p.cli("plan", "pipeline.py", "--keys", "fit", "--json").stdout)
    parts = {(part["kind"], part["name"]): part for part in audit["parts"]}
    lines = p.file.read_text().splitlines()
    fit_line = lines.index("def fit(xs, lr, post):") + 1
    assert parts["code", "pipeline.fit"]["detail"] == f"pipeline.py:{fit_line - 1}"  # @node line
    assert parts["code", "sh_util.g"]["detail"] == "sh_util.py:1"
    assert ("constant", "pipeline.SCALE") in parts
    assert parts["package", "numpy"]["detail"] == np.__version__
    assert parts["param", "lr"]["detail"] == "0.5" and parts["param", "lr"]["digest"]
    assert parts["input", "xs"]["detail"] == "load.result" and parts["input", "xs"]["digest"]
    shift_line = lines.index("def shift(x, by):") + 1  # the code an argument carries
    assert parts["code", "pipeline.shift"]["detail"] == f"pipeline.py:{shift_line} (in post)"
    assert audit["key"] and audit["uncovered"] == []
    text = p.cli("plan", "pipeline.py", "--keys", "fit").stdout
    assert f"key of 'fit': {audit['key']}" in text
    assert "not covered by the key: nothing found" in text


# -- a data file given as a str ---------------------------------------------------------------------
@node
def count_bytes(path: str) -> int:
    with open(path, "rb") as fh:
        return len(fh.read())


@node
def count_file(path: File) -> int:
    return os.path.getsize(path)


@node
def count_words(text: str) -> int:
    return len(text.split())


@node(writes=["out/report.md"])
def report(n: int, target: str = "out/report.md") -> int:
    Path(target).write_text(f"{n}\n")
    return n


def test_a_str_path_to_an_existing_file_warns_once_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its content is not in the key (only checked before cache hits): the run says so once,
    naming node, parameter and file, and suggests File(...); a declared write, a str that
    names no file, and a File are not warned about."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.md").write_text("old report\n")

    def build(tag: str) -> Workflow:
        with Workflow(f"str-paths-{tag}", root=tmp_path, home=tmp_path / f"home-{tag}") as wf:
            report(count_bytes("data.csv"))
            count_file(File("data.csv"))
            count_words("no/such/file.csv and words")
        return wf

    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        assert build("a").execute().executed == 4
        # another home: the same nodes run again in this process, and are not warned again
        assert build("b").execute().executed == 4
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said
    assert "node 'count_bytes': parameter 'path' is the path 'data.csv'" in said[0]
    assert "File('data.csv')" in said[0]


STR_PATH = pipeline(
    """
    @node
    def size_of(path):
        with open(path, "rb") as fh:
            return len(fh.read())
    """,
    "size_of('data.csv')\nother([1, 2])",
)


def test_a_str_path_is_flagged_by_run_then_listed_by_plan_through_the_cli(tmp_path: Path) -> None:
    """In a fresh CLI process: the run that executes the node warns; on the warm run the
    warning is not repeated, but plan lists the parameter as not covered by the key."""
    p = Project(tmp_path, {"pipeline.py": STR_PATH, "data.csv": "a,b\n1,2\n"})
    ran = p.cli("run", "pipeline.py")
    said = "parameter 'path' is the path 'data.csv' of an existing file"
    assert ran.stderr.count(said) == 1, ran.stderr
    assert "File('data.csv')" in ran.stderr
    planned = p.cli("plan", "pipeline.py").stdout
    assert "size_of: not covered by the key: parameter 'path' = 'data.csv'" in planned, planned
    assert "other: not covered" not in planned


EDITED_FLOW = """
import helpers
from etherealfabric import Workflow, node

@node
def c():
    return helpers.g(10)

with Workflow("edited") as wf:
    c()
"""

NOTEBOOK_CELL = """
from pathlib import Path
from typing import Any
import helpers  # the kernel imports the helper...
Path("helpers.py").write_text("def g(x):\\n    return x + 100\\n")  # ...then it is edited
import flow
print(flow.wf.execute(log_level="ERROR")["c"]["result"])  # the imported code runs: 11
"""


def test_a_helper_edited_after_it_was_loaded_keys_the_code_that_ran(
    tmp_path: Path, ef: Any
) -> None:
    """A notebook runs the helper it imported, edited on disk since: the key was made from
    the file's new source, so the old result (11) was cached under it and served to the next
    process, which runs the edit (110). The key follows the code that runs, with a warning."""
    (tmp_path / "helpers.py").write_text("def g(x):\n    return x + 1\n")
    (tmp_path / "flow.py").write_text(EDITED_FLOW)
    (tmp_path / "cell.py").write_text(NOTEBOOK_CELL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    home = str(tmp_path / "home")
    cell = subprocess.run(
        [sys.executable, "cell.py"], cwd=tmp_path, env={**env, "ETHEREALFABRIC_HOME": home},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cell.returncode == 0, cell.stderr
    assert cell.stdout.strip() == "11"
    assert "helpers.py was edited since helpers.g was loaded" in cell.stderr, cell.stderr
    done = ef(tmp_path, "run", "flow.py", "--json", ETHEREALFABRIC_HOME=home)
    assert json.loads(done.stdout)["executed"] == 1, done.stderr  # not the notebook's result
    assert ef(tmp_path, "cat", "latest", "c", ETHEREALFABRIC_HOME=home).stdout.strip() == "110"
    again = ef(tmp_path, "run", "flow.py", "--json", ETHEREALFABRIC_HOME=home)
    assert json.loads(again.stdout)["cached"] == 1  # and then cached as usual, no warning
    assert "edited since" not in again.stderr


LAMBDAS_FLOW = """
from etherealfabric import Workflow, node
from cfg import LA, LB, L, T

@node
def use_a(x):
    return T["a"](x)

@node
def use_l(x):
    return L[0](x)

@node
def use_globals(x):
    return LA(x) * 10 + LB(x)

with Workflow("lambdas") as wf:
    use_a(10)
    use_l(10)
    use_globals(10)
"""


def test_swapping_lambdas_between_slots_or_names_reruns_their_users(
    tmp_path: Path, ef: Any
) -> None:
    """Every lambda is ``cfg.<lambda>``; parts of one name were numbered by digest, so after
    swapping two lambdas between T["a"] and T["b"] (or LA and LB) every key stayed the same
    and the other lambda's result was served."""
    config = (
        'T = {"a": lambda x: x + 1, "b": lambda x: x + 2}\n'
        "L = [lambda x: x * 3, lambda x: x * 5]\n"
        "LA = lambda x: x + 1\nLB = lambda x: x + 2\n"
    )
    (tmp_path / "cfg.py").write_text(config)
    (tmp_path / "flow.py").write_text(LAMBDAS_FLOW)
    home = {"ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    assert json.loads(ef(tmp_path, "run", "flow.py", "--json", **home).stdout)["executed"] == 3
    swapped = (
        (config.replace("x + 1", "x + @").replace("x + 2", "x + 1").replace("x + @", "x + 2"))
        .replace("x * 3", "x * @")
        .replace("x * 5", "x * 3")
        .replace("x * @", "x * 5")
    )
    (tmp_path / "cfg.py").write_text(swapped)
    again = json.loads(ef(tmp_path, "run", "flow.py", "--json", **home).stdout)
    assert again["executed"] == 3, again
    values = [
        ef(tmp_path, "cat", "latest", name, **home).stdout.strip()
        for name in ("use_a", "use_l", "use_globals")
    ]
    assert values == ["12", "50", "131"]


TOP_LEVEL_SETTING = """
import pandas as pd
from etherealfabric import Workflow, node

pd.set_option("display.precision", 2)

@node
def shown():
    return pd.DataFrame({"a": [1 / 3]}).to_string()

with Workflow("settings") as wf:
    shown()
"""


def test_a_library_setting_at_the_top_of_the_workflow_file_is_named(
    tmp_path: Path, ef: Any
) -> None:
    """``pd.set_option`` under the imports: no key covers it, and worker processes never run
    it, so their result (six digits) was cached and served where two were expected."""
    pytest.importorskip("pandas")
    (tmp_path / "flow.py").write_text(TOP_LEVEL_SETTING)
    done = ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_HOME=str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("FingerprintWarning") == 1, done.stderr
    assert "flow.py:5: FingerprintWarning: pd.set_option changes a library's process-wide" in (
        done.stderr
    )
    assert "worker processes (processes, Dask, Celery, Spark backends) never run it" in done.stderr
