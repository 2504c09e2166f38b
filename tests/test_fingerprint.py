"""Code fingerprints: what changes a node's code digest, and what must not.

Each test writes versions of a small project (``fp_pipeline.py``, ``fp_helpers.py``) into
their own folders and imports each version under the same module names, the way a user's
edit-and-rerun cycle does across processes.
"""

from __future__ import annotations

import importlib
import json
import linecache
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import etherealfabric
from etherealfabric.errors import HashingError
from etherealfabric.hashing._fingerprint import Fingerprint, FingerprintWarning, code_fingerprint
from etherealfabric.hashing._usercode import is_user_code
from etherealfabric.hashing._values import hash_value

BASE = '''
from etherealfabric import node
import fp_helpers

SCALE = 3
UNUSED = "not read"
TABLE = {"a": (1, 2), "b": [3.5, None]}


def leaf(x):
    return x * 1.0


def helper(x):
    return leaf(x) + 1


def unrelated(x):
    return x - 1


@node(version="1")
def f(x):
    """Scale and shift."""
    # a comment
    return helper(x) * SCALE


@node
def reads_table(key):
    return TABLE[key]


@node
def uses_module(x):
    return fp_helpers.double(x)


class Model:
    def predict(self, x):
        return x + 1

    def unused(self):
        return 0


@node
def uses_class(x):
    return Model().predict(x)


def make(k):
    def scaled(x):
        return x * k
    return scaled


scaled = make(2)


@node
def uses_closure(x):
    return scaled(x)


def even(n):
    return n == 0 or odd(n - 1)


def odd(n):
    return n != 0 and even(n - 1)


def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper


@deco
def wrapped_helper(x):
    return x + 10


@node
def uses_wrapped(x):
    return wrapped_helper(x)


@node
def uses_libraries(x):
    return json.dumps(np.mean(x)) + str(len(x))


square = lambda x: x * x  # noqa: E731


@node
def uses_lambda(x):
    return [square(v) for v in x]
'''

HELPERS = """
def double(x):
    return x * 2


def triple(x):
    return x * 3
"""

PRELUDE = "import functools\nimport json\nimport numpy as np\n"


class Project:
    """Writes and imports successive versions of the two modules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def load(self, pipeline: str = BASE, helpers: str = HELPERS) -> ModuleType:
        self.count += 1
        folder = self.root / f"v{self.count}"
        folder.mkdir()
        (folder / "fp_pipeline.py").write_text(PRELUDE + pipeline)
        (folder / "fp_helpers.py").write_text(helpers)
        self.forget()
        sys.path.insert(0, str(folder))
        try:
            importlib.invalidate_caches()
            linecache.checkcache()
            return importlib.import_module("fp_pipeline")
        finally:
            sys.path.remove(str(folder))

    def edit(self, old: str, new: str, *, helpers: bool = False) -> ModuleType:
        source = HELPERS if helpers else BASE
        assert old in source, old
        edited = source.replace(old, new, 1)
        return self.load(BASE, edited) if helpers else self.load(edited, HELPERS)

    @staticmethod
    def forget() -> None:
        for name in ("fp_pipeline", "fp_helpers"):
            sys.modules.pop(name, None)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "project")
    p.root.mkdir()
    yield p
    p.forget()


def fp(module: ModuleType, name: str = "f") -> Fingerprint:
    return code_fingerprint(getattr(module, name))


def changed_parts(a: Fingerprint, b: Fingerprint) -> set[str]:
    return {k for k in a.parts.keys() | b.parts.keys() if a.parts.get(k) != b.parts.get(k)}


# -- what counts -----------------------------------------------------------------------------


def test_fingerprint_covers_the_function_and_its_user_code(project: Project) -> None:
    result = fp(project.load())
    assert result.source == "ast"
    assert len(result.digest) == 32
    assert set(result.parts) == {
        "fp_pipeline.f",
        "fp_pipeline.helper",
        "fp_pipeline.leaf",
        "fp_pipeline.SCALE",
    }


def test_editing_the_body_changes_it(project: Project) -> None:
    base = fp(project.load())
    edited = fp(project.edit("return helper(x) * SCALE", "return helper(x) * SCALE + 1"))
    assert edited.digest != base.digest
    assert changed_parts(base, edited) == {"fp_pipeline.f"}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"""Scale and shift."""', '"""Scale, then shift; a longer docstring."""'),
        ('    """Scale and shift."""\n', ""),
        ("# a comment", "# another comment"),
        ("return helper(x) * SCALE", "return helper( x )*SCALE   # trailing"),
        ("return helper(x) * SCALE", "return (\n        helper(x)\n        * SCALE\n    )"),
        ('@node(version="1")', '@node( version = "2" )'),
        ('@node(version="1")', "@node"),
        ('UNUSED = "not read"', 'UNUSED = "still not read"'),
        ("return x - 1", "return x - 2"),
        ("\n\ndef leaf(x):", "\n# a new comment\n\n\ndef leaf(x):"),
    ],
    ids=[
        "docstring", "no-docstring", "comment", "spacing", "line-breaks", "decorator-args",
        "decorator-removed", "unused-constant", "unrelated-function", "blank-lines-above",
    ],
)  # fmt: skip
def test_cosmetic_and_unrelated_edits_do_not_change_it(
    project: Project, old: str, new: str
) -> None:
    base = fp(project.load())
    assert fp(project.edit(old, new)) == base


def test_editing_a_helper_two_levels_deep_changes_it_and_names_it(project: Project) -> None:
    base = fp(project.load())
    edited = fp(project.edit("return x * 1.0", "return x * 1.5"))
    assert edited.digest != base.digest
    assert changed_parts(base, edited) == {"fp_pipeline.leaf"}


def test_a_helpers_docstring_does_not_count(project: Project) -> None:
    base = fp(project.load())
    edited = project.edit("def leaf(x):\n", 'def leaf(x):\n    """The leaf."""\n')
    assert fp(edited) == base


def test_module_constants(project: Project) -> None:
    base = project.load()
    assert fp(base).parts["fp_pipeline.SCALE"] == hash_value(3)
    edited = fp(project.edit("SCALE = 3", "SCALE = 4"))
    assert changed_parts(fp(base), edited) == {"fp_pipeline.SCALE"}

    table = fp(base, "reads_table")
    assert "fp_pipeline.TABLE" in table.parts
    nested = fp(project.edit("[3.5, None]", "[3.5, 0]"), "reads_table")
    assert changed_parts(table, nested) == {"fp_pipeline.TABLE"}


def test_module_attributes_of_user_modules(project: Project) -> None:
    base = fp(project.load(), "uses_module")
    assert "fp_helpers.double" in base.parts
    assert "fp_helpers.triple" not in base.parts
    edited = fp(project.edit("return x * 2", "return x + x", helpers=True), "uses_module")
    assert changed_parts(base, edited) == {"fp_helpers.double"}
    other = fp(project.edit("return x * 3", "return x + x + x", helpers=True), "uses_module")
    assert other == base


def test_referenced_classes_cover_every_method(project: Project) -> None:
    base = fp(project.load(), "uses_class")
    assert "fp_pipeline.Model" in base.parts
    edited = fp(project.edit("return x + 1\n", "return x + 2\n"), "uses_class")
    assert changed_parts(base, edited) == {"fp_pipeline.Model"}
    unused = fp(project.edit("return 0", "return 1"), "uses_class")
    assert unused.digest != base.digest  # the class is one piece: any method counts


def test_closures(project: Project) -> None:
    base = fp(project.load(), "uses_closure")
    assert "fp_pipeline.make.<locals>.scaled.<closure>.k" in base.parts
    edited = fp(project.edit("scaled = make(2)", "scaled = make(3)"), "uses_closure")
    assert changed_parts(base, edited) == {"fp_pipeline.make.<locals>.scaled.<closure>.k"}
    body = fp(project.edit("return x * k", "return x * k * 1"), "uses_closure")
    assert changed_parts(base, body) == {"fp_pipeline.make.<locals>.scaled"}


def test_decorated_helpers_are_followed_through_wrapped(project: Project) -> None:
    base = fp(project.load(), "uses_wrapped")
    assert "fp_pipeline.wrapped_helper" in base.parts
    edited = fp(project.edit("return x + 10", "return x + 11"), "uses_wrapped")
    assert changed_parts(base, edited) == {"fp_pipeline.wrapped_helper"}


def test_mutual_recursion_terminates_and_is_order_independent(project: Project) -> None:
    module = project.load()
    from_even = code_fingerprint(module.even)
    from_odd = code_fingerprint(module.odd)
    assert set(from_even.parts) == set(from_odd.parts) == {"fp_pipeline.even", "fp_pipeline.odd"}
    # a fresh import, analysed in the opposite order, gives the same digests
    again = project.load()
    assert code_fingerprint(again.odd) == from_odd
    assert code_fingerprint(again.even) == from_even


def test_libraries_count_by_version_builtins_and_etherealfabric_not_at_all(
    project: Project,
) -> None:
    module = project.load()
    parts = fp(module, "uses_libraries").parts
    assert parts == {
        "fp_pipeline.uses_libraries": parts["fp_pipeline.uses_libraries"],
        "package:numpy": np.__version__,  # json (stdlib) and len (builtin) count for nothing
    }
    assert not is_user_code(json.dumps)
    assert not is_user_code(np.mean)
    assert not is_user_code(len)
    assert not is_user_code(etherealfabric.Node)
    assert is_user_code(module.leaf)
    assert is_user_code(test_closures)


def test_lambdas(project: Project) -> None:
    base = fp(project.load(), "uses_lambda")
    assert "fp_pipeline.<lambda>" in base.parts
    assert fp(project.edit("lambda x: x * x", "lambda x: x ** 2"), "uses_lambda") != base
    assert fp(project.edit("square = lambda", "square  =  lambda"), "uses_lambda") == base


def test_class_nodes(tmp_path: Path, project: Project) -> None:
    source = BASE + textwrap.dedent('''
        from etherealfabric import Node


        class Train(Node):
            """A class node."""

            def __init__(self, x):
                super().__init__()
                self.x = x
                self.outputs = ["y"]

            def run(self):
                return {"y": helper(self.x)}
    ''')
    base = fp(project.load(source), "Train")
    assert set(base.parts) == {"fp_pipeline.Train", "fp_pipeline.helper", "fp_pipeline.leaf"}
    docstring = source.replace('"""A class node."""', '"""Trains."""')
    assert fp(project.load(docstring), "Train") == base
    method = source.replace('{"y": helper(self.x)}', '{"y": helper(self.x) + 1}')
    assert changed_parts(base, fp(project.load(method), "Train")) == {"fp_pipeline.Train"}
    helper = source.replace("return x * 1.0", "return x * 2.0")
    assert changed_parts(base, fp(project.load(helper), "Train")) == {"fp_pipeline.leaf"}


def test_node_wrappers_and_raw_functions_agree(project: Project) -> None:
    module = project.load()
    assert code_fingerprint(module.f) == code_fingerprint(module.f.__etherealfabric_fn__)


# -- memoization, determinism, fallback ------------------------------------------------------


def test_fingerprints_are_memoized(project: Project) -> None:
    module = project.load()
    first = fp(module)
    assert fp(module) is first
    start = time.perf_counter()
    for _ in range(1000):
        code_fingerprint(module.f)
    assert time.perf_counter() - start < 0.1  # a lookup, not a re-analysis


def test_fingerprints_are_the_same_in_every_process(project: Project) -> None:
    module = project.load()
    expected = {name: fp(module, name).digest for name in ("f", "uses_class", "reads_table")}
    folder = Path(module.__file__ or "").parent
    code = (
        f"import sys, json; sys.path.insert(0, {str(folder)!r}); import fp_pipeline as m;"
        "from etherealfabric.hashing._fingerprint import code_fingerprint as c;"
        "print(json.dumps({n: c(getattr(m, n)).digest for n in ('f', 'uses_class', 'reads_table')}))"
    )
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )  # fmt: skip
        assert json.loads(out.stdout) == expected


def exec_function(source: str, name: str = "g") -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": "fp_generated"}
    exec(compile(textwrap.dedent(source), "<generated>", "exec"), namespace)
    fn: Callable[..., Any] = namespace[name]
    return fn


def test_bytecode_fallback_warns_and_is_stable() -> None:
    source = "def g(x):\n    return x * 2 + OFFSET\nOFFSET = 5\n"
    first = exec_function(source)
    with pytest.warns(FingerprintWarning, match=r"no source for fp_generated\.g; .*bytecode"):
        a = code_fingerprint(first)
    assert a.source == "bytecode"
    assert "fp_generated.OFFSET" in a.parts
    with pytest.warns(FingerprintWarning):
        b = code_fingerprint(exec_function(source))
    assert a == b
    assert code_fingerprint(first) is a  # warned once: the result is memoized
    with pytest.warns(FingerprintWarning):
        c = code_fingerprint(exec_function(source.replace("* 2", "* 3")))
    assert c.digest != a.digest
    with pytest.warns(FingerprintWarning):
        d = code_fingerprint(exec_function(source.replace("OFFSET = 5", "OFFSET = 6")))
    assert changed_parts(a, d) == {"fp_generated.OFFSET"}


def test_builtins_cannot_be_fingerprinted() -> None:
    with pytest.raises(HashingError, match="cannot fingerprint"):
        code_fingerprint(len)


def test_callable_instances_are_fingerprinted_by_their_class() -> None:
    class Scaler:
        def __call__(self, x: int) -> int:
            return x * 2

    parts = code_fingerprint(Scaler()).parts
    assert [k.rpartition(".")[2] for k in parts] == ["Scaler"]


GENERATED = """
import collections
import dataclasses
import enum

from etherealfabric import node

LIMIT = 10
Pair = collections.namedtuple("Pair", "a b")
Mode = enum.Enum("Mode", "FAST SLOW")


@dataclasses.dataclass
class Settings:
    lr: float = 0.1
    cap: int = LIMIT * 2


class Kind(enum.Enum):
    A = 1
    B = 2


@node
def inner(x):
    return x + 1


@node
def outer(x):
    return inner(x) * 2


def uses_generated(x):
    return Pair(x, Mode.FAST), Settings(), Kind.A


def plain_helper(x):
    return x - 1


class Tool:
    method = plain_helper


def with_default(x, cap=LIMIT, name=None):
    return x + cap


def uses_tool_and_default(x):
    return Tool().method(x) + with_default(x)
"""


def test_generated_classes_need_no_source(project: Project) -> None:
    base = fp(project.load(GENERATED), "uses_generated")  # no FingerprintWarning: an error here
    assert base.source == "ast"
    names = set(base.parts)
    assert {"fp_pipeline.Pair", "fp_pipeline.Mode", "fp_pipeline.Settings"} <= names
    assert "fp_pipeline.Settings.cap" in names  # a class attribute computed from a constant
    assert not any("_member_map_" in n for n in names)
    fields = fp(project.load(GENERATED.replace('"a b"', '"a c"')), "uses_generated")
    assert changed_parts(base, fields) == {"fp_pipeline.Pair"}
    members = fp(project.load(GENERATED.replace('"FAST SLOW"', '"FAST SLOWER"')), "uses_generated")
    assert "fp_pipeline.Mode" in changed_parts(base, members)
    assert {n.rpartition(".")[0] for n in changed_parts(base, members)} <= {
        "fp_pipeline",
        "fp_pipeline.Mode",  # its members are parts of their own
    }
    limit = fp(project.load(GENERATED.replace("LIMIT = 10", "LIMIT = 11")), "uses_generated")
    assert changed_parts(base, limit) == {
        "fp_pipeline.Settings.cap",
        "fp_pipeline.Settings.__init__.<default>.cap",
    }


def test_a_node_calling_another_node_function_includes_it(project: Project) -> None:
    base = fp(project.load(GENERATED), "outer")
    assert set(base.parts) == {"fp_pipeline.outer", "fp_pipeline.inner"}
    edited = fp(project.load(GENERATED.replace("return x + 1", "return x + 2")), "outer")
    assert changed_parts(base, edited) == {"fp_pipeline.inner"}


def test_generated_classes_in_exec_code_do_not_warn() -> None:
    namespace: dict[str, Any] = {"__name__": "fp_generated2"}
    exec("import collections\nP = collections.namedtuple('P', 'x y')\n", namespace)
    assert code_fingerprint(namespace["P"]).source == "ast"


def test_defaults_and_functions_assigned_in_a_class_body(project: Project) -> None:
    base = fp(project.load(GENERATED), "uses_tool_and_default")
    assert {"fp_pipeline.plain_helper", "fp_pipeline.with_default.<default>.cap"} <= set(base.parts)
    assert not any(n.endswith("<default>.name") for n in base.parts)  # None defaults are skipped
    helper = GENERATED.replace("return x - 1", "return x - 2")
    assert changed_parts(base, fp(project.load(helper), "uses_tool_and_default")) == {
        "fp_pipeline.plain_helper"
    }
    limit = fp(project.load(GENERATED.replace("LIMIT = 10", "LIMIT = 11")), "uses_tool_and_default")
    assert changed_parts(base, limit) == {"fp_pipeline.with_default.<default>.cap"}


# -- names bound to library callables and compiled values -----------------------------------------
ALIASES = """
import collections, re, struct, types
from numpy import mean as agg_imported
from os.path import join

AGG = np.mean
G = max
S = "-".join
U = np.sqrt
D = np.float64
C = collections.OrderedDict
M = str.upper
ID_RE = re.compile(r"\\d+")
ST = struct.Struct("<i")
MP = types.MappingProxyType({"a": 1})


def f(xs):
    return AGG(xs), agg_imported(xs), G(xs), S(xs), U(xs), D, C, M, ID_RE, ST, MP, join
"""


@pytest.mark.parametrize(
    "old,new",
    [
        ("AGG = np.mean", "AGG = np.median"),
        ("import mean as agg_imported", "import median as agg_imported"),
        ("G = max", "G = min"),
        ('S = "-".join', 'S = "+".join'),
        ("U = np.sqrt", "U = np.square"),
        ("D = np.float64", "D = np.float32"),
        ("C = collections.OrderedDict", "C = collections.Counter"),
        ("M = str.upper", "M = str.lower"),
        ('re.compile(r"\\d+")', 're.compile(r"\\d")'),
        ('re.compile(r"\\d+")', 're.compile(r"\\d+", re.I)'),
        ('struct.Struct("<i")', 'struct.Struct("<h")'),
        ('MappingProxyType({"a": 1})', 'MappingProxyType({"a": 2})'),
    ],
)
def test_a_global_rebound_to_another_library_callable_or_compiled_value_changes_it(
    project: Project, old: str, new: str
) -> None:
    # the code reads the same name; what the name stands for changed: a cache hit would serve
    # np.mean's result for np.median (the package's version alone was keyed)
    base = fp(project.load(ALIASES))
    assert old in ALIASES
    edited = fp(project.load(ALIASES.replace(old, new)))
    assert edited.digest != base.digest
    assert not base.uncovered
    again = fp(project.load(ALIASES))
    assert again.digest == base.digest  # the same bindings: the same key in a new process


ORDERED = """
import collections

FEATURES = {"age": "float64", "income": "float64"}
NESTED = {"cfg": {"x": 1, "y": 2}}
WEIGHTS = collections.defaultdict(lambda: 1.0, {"a": 2.0})


def f(df):
    return df[list(FEATURES)], [k for k in NESTED["cfg"]], WEIGHTS["b"]
"""


@pytest.mark.parametrize(
    "old,new",
    [
        ('{"age": "float64", "income": "float64"}', '{"income": "float64", "age": "float64"}'),
        ('{"x": 1, "y": 2}', '{"y": 2, "x": 1}'),
        ("lambda: 1.0", "lambda: 0.5"),
    ],
    ids=["dict-order", "nested-dict-order", "defaultdict-factory"],
)
def test_a_global_dicts_order_and_a_defaultdicts_factory_count(
    project: Project, old: str, new: str
) -> None:
    # code iterates a global dict in its order (the columns it selects), and a defaultdict
    # gives its factory's value for a missing key: both change what the node computes
    base = fp(project.load(ORDERED))
    assert fp(project.load(ORDERED.replace(old, new))).digest != base.digest
    assert fp(project.load(ORDERED)).digest == base.digest


CLOCKS = """
import datetime
import time
from datetime import date, datetime as dt


def today_report():
    return f"report of {datetime.date.today()} and {date.today()} at {dt.now():%H}"


def timed(x):
    start = time.perf_counter()
    value = x * 2
    return value, time.time() - start  # a duration: it times the node, not its result


def given(day):
    return day.today()  # a parameter's method: not a global's
"""


def test_a_read_of_the_clock_is_named_as_not_covered_and_a_duration_is_not(
    project: Project,
) -> None:
    # a node making "today's report" would serve yesterday's from the cache, silently
    module = project.load(CLOCKS)
    with pytest.warns(FingerprintWarning, match=r"date\.today\(\) \(the clock"):
        found = fp(module, "today_report").uncovered
    assert [u.split(" (")[0] for u in found] == [
        "datetime.date.today()",
        "date.today()",
        "dt.now()",
    ]
    assert all("fp_pipeline.py:" in u for u in found)
    assert fp(module, "timed").uncovered == ()
    assert fp(module, "given").uncovered == ()


SETTINGS = """
import locale
import numpy as np
import pandas as pd


def setup():
    pd.set_option("display.precision", 2)  # seen by the nodes that run after it
    np.set_printoptions(precision=3)
    pd.options.display.width = 120


def reads_only(df):
    return df.round(2).to_string()  # no setting changed


def local_context(x):
    with np.errstate(all="ignore"):  # a context manager: restored at its end
        return np.log(x)
"""


def test_a_change_of_a_librarys_process_wide_setting_is_named_as_not_covered(
    project: Project,
) -> None:
    # `setup` cached does not run: a later node printing a frame gets other digits
    pytest.importorskip("pandas")
    module = project.load(SETTINGS)
    with pytest.warns(FingerprintWarning, match=r"pd\.set_option \(a library's process-wide"):
        found = fp(module, "setup").uncovered
    assert [u.split(" (")[0] for u in found] == [
        "pd.set_option",
        "np.set_printoptions",
        "pd.options",
    ]
    assert fp(module, "reads_only").uncovered == ()
    assert fp(module, "local_context").uncovered == ()
