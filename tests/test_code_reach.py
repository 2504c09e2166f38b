"""What code fingerprints reach, part by part: every edit that changes what a node does
changes the part of its key that holds that code or value, and no other part.

Each test writes versions of a small project (``sh_flow.py``, ``sh_helpers.py``, a package
``sh_pkg``) into their own folders and imports each version under the same module names, the
way a user's edit-and-rerun cycle does across processes. Fingerprints and value digests of the
versions are compared. The same cases through the command line, in fresh processes, are in
``test_stale_hits.py``.
"""

from __future__ import annotations

import functools
import importlib
import json
import linecache
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from etherealfabric.errors import ConfigError
from etherealfabric.hashing._fingerprint import Fingerprint, FingerprintWarning, code_fingerprint
from etherealfabric.hashing._packages import package_versions, set_package_versions
from etherealfabric.hashing._values import hash_value

TOPS = ("sh_flow", "sh_helpers", "sh_pkg", "sh_late", "sh_tools")

HELPERS = """
def double(x):
    return x * 2


def triple(x):
    return x * 3
"""


class Project:
    """Writes each version of the files into a new folder and imports ``sh_flow`` from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.folder: str | None = None

    def load(self, flow: str, **files: str) -> ModuleType:
        self.count += 1
        folder = self.root / f"v{self.count}"
        files = {"sh_helpers.py": HELPERS, **files, "sh_flow.py": flow}
        for relative, text in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        self.forget()
        self.folder = str(folder)
        sys.path.insert(0, self.folder)  # kept until the next load: imports in node bodies
        importlib.invalidate_caches()
        linecache.checkcache()
        return importlib.import_module("sh_flow")

    def forget(self) -> None:
        for name in [n for n in sys.modules if n.split(".")[0] in TOPS]:
            del sys.modules[name]
        if self.folder is not None:
            sys.path.remove(self.folder)
            self.folder = None


def fp(module: ModuleType, name: str = "node") -> Fingerprint:
    return code_fingerprint(getattr(module, name))


def changed(a: Fingerprint, b: Fingerprint) -> set[str]:
    return {k for k in a.parts.keys() | b.parts.keys() if a.parts.get(k) != b.parts.get(k)}


def edits(project: Project, source: str, old: str, new: str, name: str = "node") -> set[str]:
    """The parts of ``name``'s fingerprint that an edit of ``old`` into ``new`` changes."""
    assert old in source, old
    before = fp(project.load(source), name)
    after = fp(project.load(source.replace(old, new, 1)), name)
    return changed(before, after)


# -- 1. helpers reached through module-level containers --------------------------------------

CONTAINERS = """
import functools


def std(x):
    return x * 1


def robust(x):
    return x + 0


def deep(x):
    return -x


class Scaler:
    def apply(self, x):
        return x * 3


MODELS = {"std": std, "robust": robust}
AS_LIST = [std, robust]
AS_TUPLE = (std, 2)
AS_SET = {std, robust}
NESTED = {"a": [(deep, 1.5)], "b": {"cls": Scaler}}


def node(x):
    return MODELS["std"](x)


def node_list(x):
    return AS_LIST[0](x)


def node_tuple(x):
    return AS_TUPLE[0](x) * AS_TUPLE[1]


def node_set(x):
    return [f(x) for f in AS_SET]


def node_nested(x):
    return NESTED["a"][0][0](x) * NESTED["a"][0][1] + NESTED["b"]["cls"]().apply(x)
"""


@pytest.mark.parametrize(
    ("name", "old", "new", "part"),
    [
        ("node", "return x * 1", "return x * 2", "sh_flow.std"),
        ("node_list", "return x * 1", "return x * 2", "sh_flow.std"),
        ("node_tuple", "return x * 1", "return x * 2", "sh_flow.std"),
        ("node_tuple", "(std, 2)", "(std, 3)", "sh_flow.AS_TUPLE"),
        ("node_set", "return x + 0", "return x - 0", "sh_flow.robust"),
        ("node_nested", "return -x", "return -x * 1", "sh_flow.deep"),
        ("node_nested", "return x * 3", "return x * 4", "sh_flow.Scaler"),
        ("node_nested", "1.5)]", "2.5)]", "sh_flow.NESTED"),
    ],
    ids=["dict", "list", "tuple", "tuple-constant", "set", "nested", "nested-class", "nested-constant"],
)  # fmt: skip
def test_helpers_reached_through_containers(
    project: Project, name: str, old: str, new: str, part: str
) -> None:
    assert edits(project, CONTAINERS, old, new, name) == {part}


def test_containers_are_followed_once_and_unrelated_edits_do_not_count(project: Project) -> None:
    parts = set(fp(project.load(CONTAINERS)).parts)
    assert {"sh_flow.node", "sh_flow.MODELS", "sh_flow.std", "sh_flow.robust"} == parts
    assert edits(project, CONTAINERS, "return -x", "return -x * 2") == set()


WRAPPERS = """
import functools
from etherealfabric import node


@node
def inner(x):
    return x + 1


@functools.lru_cache
def cached(x):
    return x * 2


REGISTRY = {"node": inner, "cached": cached}


def node(x):
    return REGISTRY["node"](x) + REGISTRY["cached"](x)
"""


@pytest.mark.parametrize(("old", "new", "part"), [
    ("return x + 1", "return x + 2", "sh_flow.inner"),
    ("return x * 2", "return x * 3", "sh_flow.cached"),
])  # fmt: skip
def test_wrapper_objects_in_containers_are_followed(
    project: Project, old: str, new: str, part: str
) -> None:
    """A node function and an lru_cache in a registry: objects that wrap user functions."""
    assert edits(project, WRAPPERS, old, new) == {part}
    assert fp(project.load(WRAPPERS)).uncovered == ()


CLASS_REGISTRY = """
class Models:
    _items = {}
    __registry = []
    _cache = {}

    @classmethod
    def add(cls, name):
        def deco(fn):
            cls._items[name] = fn
            cls.__registry.append((name, fn))
            return fn
        return deco

    @classmethod
    def get(cls, name):
        return cls._items[name]


@Models.add("lin")
def lin(x):
    return x + 1


Models._cache["seen"] = 1


def node(x, name="lin"):
    return Models.get(name)(x)
"""


def test_a_private_class_registry_a_decorator_fills_is_followed(project: Project) -> None:
    """``Models._items``, filled by ``@Models.add``: a private class attribute, which was
    skipped as class machinery, so an edit of a registered function was a stale hit."""
    assert "sh_flow.lin" in edits(project, CLASS_REGISTRY, "return x + 1", "return x + 2")
    # a private attribute holding no code (a cache of values) still does not count
    assert edits(project, CLASS_REGISTRY, '_cache["seen"] = 1', '_cache["seen"] = 2') == set()


# -- 2. imports inside a node's body ---------------------------------------------------------

PKG_INIT = ""
PKG_UTIL = """
def g(x):
    return x + 1


def unused(x):
    return x
"""
PKG_NODES = """
def node(x):
    from .util import g
    return g(x)


def node_parent(x):
    from . import util
    return util.g(x)
"""
IMPORTS = """
def node(x):
    from sh_helpers import double
    return double(x)


def node_module(x):
    import sh_helpers
    return sh_helpers.double(x)


def node_dotted(x):
    import sh_pkg.util
    return sh_pkg.util.g(x)


def node_from_dotted(x):
    from sh_pkg.util import g as renamed
    return renamed(x)


def node_stdlib(x):
    import json
    return json.dumps(x)
"""


def load_package(project: Project, flow: str = IMPORTS, util: str = PKG_UTIL) -> ModuleType:
    return project.load(
        flow,
        **{"sh_pkg/__init__.py": PKG_INIT, "sh_pkg/util.py": util, "sh_pkg/nodes.py": PKG_NODES},
    )


@pytest.mark.parametrize(
    ("name", "helpers", "part"),
    [
        ("node", True, "sh_helpers.double"),
        ("node_module", True, "sh_helpers.double"),
        ("node_dotted", False, "sh_pkg.util.g"),
        ("node_from_dotted", False, "sh_pkg.util.g"),
    ],
)
def test_imports_inside_a_node_body_are_followed(
    project: Project, name: str, helpers: bool, part: str
) -> None:
    base = fp(load_package(project), name)
    if helpers:
        edited = project.load(IMPORTS, **{"sh_helpers.py": HELPERS.replace("x * 2", "x + x")})
    else:
        edited = load_package(project, util=PKG_UTIL.replace("x + 1", "x + 2"))
    assert changed(base, fp(edited, name)) == {part}
    assert "sh_helpers.triple" not in base.parts and "sh_pkg.util.unused" not in base.parts


@pytest.mark.parametrize("name", ["node", "node_parent"])
def test_relative_imports_inside_a_package(project: Project, name: str) -> None:
    load_package(project)
    base = code_fingerprint(getattr(importlib.import_module("sh_pkg.nodes"), name))
    load_package(project, util=PKG_UTIL.replace("x + 1", "x + 2"))
    edited = code_fingerprint(getattr(importlib.import_module("sh_pkg.nodes"), name))
    assert changed(base, edited) == {"sh_pkg.util.g"}


def test_a_module_imported_only_by_the_node_body_is_found(project: Project) -> None:
    late = "def late(x):\n    return x\n"
    flow = "def node(x):\n    from sh_late import late\n    return late(x)\n"
    module = project.load(flow, **{"sh_late.py": late})
    assert "sh_late" not in sys.modules
    assert "sh_late.late" in fp(module).parts


def test_a_module_imported_to_fill_a_registry_the_body_reads(project: Project) -> None:
    """``import sh_late`` in the body only registers ``sq`` into ``REG``, a global the body
    reads: REG was hashed before the import filled it (empty in a fresh process), so an edit
    of ``sq`` was a stale hit."""
    tools = "REG = {}\n\ndef register(f):\n    REG[f.__name__] = f\n    return f\n"
    late = "from sh_tools import register\n\n@register\ndef sq(x):\n    return x * x\n"
    flow = "from sh_tools import REG\n\ndef node(x):\n    import sh_late\n    return REG['sq'](x)\n"
    files = {"sh_tools.py": tools, "sh_late.py": late}
    before = fp(project.load(flow, **files))
    files["sh_late.py"] = late.replace("x * x", "x * x * x")
    assert "sh_late.sq" in changed(before, fp(project.load(flow, **files)))


def test_stdlib_imports_in_a_body_add_nothing(project: Project) -> None:
    assert set(fp(load_package(project), "node_stdlib").parts) == {"sh_flow.node_stdlib"}


# -- 3. behaviour carried by an argument -----------------------------------------------------

ARGS = """
import dataclasses
import enum
import functools


def helper(x, k):
    return x * k


class Model:
    def __init__(self, w):
        self.w = w

    @property
    def scale(self):
        return self.w * 2

    def predict(self, x):
        return x * self.scale


@dataclasses.dataclass
class Config:
    lr: float = 0.1

    def effective(self):
        return self.lr * 10


class Mode(enum.Enum):
    FAST = 1

    def factor(self):
        return 2


class Celsius(float):
    def kelvin(self):
        return self + 273.15


class Fahrenheit(float):
    def kelvin(self):
        return (self - 32) * 5 / 9 + 273.15


PARTIAL = functools.partial(helper, k=2)
MODEL = Model(3)
"""


@pytest.mark.parametrize(
    ("make", "old", "new"),
    [
        (lambda m: functools.partial(m.helper, k=2), "return x * k", "return x * k + 1"),
        (lambda m: m.Model(3).predict, "return x * self.scale", "return x * self.scale + 1"),
        (lambda m: m.Model(3), "return self.w * 2", "return self.w * 3"),
        (lambda m: m.Model(3), "return x * self.scale", "return x * self.scale + 1"),
        (lambda m: m.Config(), "return self.lr * 10", "return self.lr * 100"),
        (lambda m: m.Mode.FAST, "return 2", "return 3"),
        (lambda m: m.Celsius(50), "return self + 273.15", "return self + 273"),
    ],
    ids=["partial", "bound-method", "property", "method", "dataclass-method", "enum", "float"],
)
def test_values_include_the_code_of_their_class(
    project: Project, make: Any, old: str, new: str
) -> None:
    base = hash_value(make(project.load(ARGS)))
    assert hash_value(make(project.load(ARGS))) == base  # a fresh import of the same code
    assert hash_value(make(project.load(ARGS.replace(old, new, 1)))) != base


def test_subclasses_of_builtins_differ_by_class(project: Project) -> None:
    m = project.load(ARGS)
    assert hash_value(m.Celsius(50)) != hash_value(m.Fahrenheit(50))
    assert hash_value(m.Celsius(50)) != hash_value(50.0)
    assert hash_value(m.Celsius(50)) != hash_value(m.Celsius(51))


def test_object_state_counts(project: Project) -> None:
    m = project.load(ARGS)
    assert hash_value(m.Model(3)) != hash_value(m.Model(4))
    assert hash_value(functools.partial(m.helper, k=2)) != hash_value(
        functools.partial(m.helper, k=3)
    )
    assert hash_value(m.Model(3).predict) != hash_value(m.Model(4).predict)


def test_builtin_values_keep_their_digests() -> None:
    # golden digests of values whose encoding must not change (keys of untouched workflows)
    assert hash_value(1) == hash_value(1)
    assert hash_value({"a": [1, 2.5, None], "b": (True, "x")}) == (
        "890f43f0b959ad4180270c8e8af6d356"
    )


def test_objects_with_cycles_hash() -> None:
    class Node:
        def __init__(self) -> None:
            self.children: list[Node] = []
            self.parent: Node | None = None

    a, b = Node(), Node()
    a.children.append(b)
    b.parent = a
    c, d = Node(), Node()
    c.children.append(d)
    d.parent = c
    assert hash_value(a) == hash_value(c)


# -- 4. non-literal globals and closures -----------------------------------------------------

GLOBALS = """
import functools
import numpy as np

WEIGHTS = np.array([1.0, 2.0, 3.0])
REGISTRY = {}


def register(fn):
    REGISTRY[fn.__name__] = fn
    return fn


@register
def std(x):
    return x * 1


def make(w):
    def apply(x):
        return x @ w
    return apply


apply = make(np.array([1.0, 2.0]))


def scaled(k):
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(x):
            return fn(x) * k
        return wrapper
    return deco


def plain_scaled(k):
    def deco(fn):
        def wrapper(x):
            return fn(x) * k
        return wrapper
    return deco


@scaled(2)
def helper(x):
    return x + 1


@plain_scaled(2)
def plain_helper(x):
    return x + 1


def node(x):
    return x @ WEIGHTS


def node_closure(x):
    return apply(x)


def node_registry(x, name):
    return REGISTRY[name](x)


def node_decorated_helper(x):
    return helper(x)


def node_plain_decorated_helper(x):
    return plain_helper(x)


@scaled(2)
def node_decorated(x):
    return x
"""


@pytest.mark.parametrize(
    ("name", "old", "new", "parts"),
    [
        ("node", "[1.0, 2.0, 3.0]", "[1.0, 2.0, 4.0]", {"sh_flow.WEIGHTS"}),
        ("node_closure", "[1.0, 2.0]", "[1.0, 2.5]", {"sh_flow.make.<locals>.apply.<closure>.w"}),
        ("node_registry", "return x * 1", "return x * 2", {"sh_flow.std"}),
        # the decorator line of the helper, and the value its wrapper closes over
        ("node_decorated_helper", "@scaled(2)\ndef helper", "@scaled(3)\ndef helper",
         {"sh_flow.helper", "sh_flow.helper.<wrapper>.<closure>.k"}),
        ("node_plain_decorated_helper", "@plain_scaled(2)", "@plain_scaled(3)",
         {"sh_flow.plain_helper", "sh_flow.plain_scaled.<locals>.deco.<locals>.wrapper.<closure>.k"}),
        ("node_decorated", "@scaled(2)\ndef node_decorated", "@scaled(3)\ndef node_decorated",
         {"sh_flow.node_decorated", "sh_flow.node_decorated.<wrapper>.<closure>.k"}),
        # the wrapper's own code
        ("node_decorated_helper", "return fn(x) * k", "return fn(x) + k",
         {"sh_flow.helper.<wrapper>"}),
    ],
    ids=["array", "closure-array", "registry", "decorator-factory", "plain-decorator-factory",
         "decorated-node", "wrapper-body"],
)  # fmt: skip
def test_non_literal_globals(
    project: Project, name: str, old: str, new: str, parts: set[str]
) -> None:
    assert edits(project, GLOBALS, old, new, name) == parts


# -- 5. several lambdas on one line ----------------------------------------------------------

LAMBDAS = """
OPS = [lambda x: x + 1, lambda x: x * 10]


def node(x):
    return OPS[1](x)
"""


def test_two_lambdas_on_one_line_differ(project: Project) -> None:
    m = project.load(LAMBDAS)
    first, second = code_fingerprint(m.OPS[0]), code_fingerprint(m.OPS[1])
    assert first.digest != second.digest
    assert hash_value(m.OPS[0]) != hash_value(m.OPS[1])
    edited = project.load(LAMBDAS.replace("x * 10", "x * 11"))
    assert code_fingerprint(edited.OPS[0]) == first
    assert code_fingerprint(edited.OPS[1]).digest != second.digest
    assert edits(project, LAMBDAS, "x * 10", "x * 11") != set()


# -- 6. what cannot be resolved is never silent ----------------------------------------------

DYNAMIC = """
import importlib
import sh_helpers


def node(x, name):
    return getattr(sh_helpers, name)(x)


def node_constant_getattr(x):
    return getattr(sh_helpers, "double")(x)


def node_import_module(x, name):
    return importlib.import_module(name).run(x)


def node_eval(x):
    return eval("x + 1")


def helper_exec(x):
    exec("y = 1")
    return x


def node_via_helper(x):
    return helper_exec(x)


def node_missing(x):
    try:
        import sh_not_installed_anywhere
    except ImportError:
        return x
    return sh_not_installed_anywhere.f(x)


import os
from os import getenv


def node_env(x):
    return x + int(os.environ.get("SH_STEP", "1"))


def node_env_item(x):
    return x * int(os.environ["SH_SCALE"]) + int(getenv("SH_SHIFT", "0"))
"""


@pytest.mark.parametrize(
    ("name", "construct", "line"),
    [
        ("node", "getattr(sh_helpers, <computed>)", 7),
        ("node_import_module", "importlib.import_module(<computed>)", 15),
        ("node_eval", "eval(...)", 19),
        ("node_via_helper", "exec(...)", 23),
        ("node_env", "os.environ.get('SH_STEP', '1') (an environment variable)", 44),
        ("node_env_item", "os.environ['SH_SCALE'] (an environment variable)", 48),
    ],
)
def test_unresolvable_constructs_warn_once_and_are_listed(
    project: Project, name: str, construct: str, line: int
) -> None:
    module = project.load(DYNAMIC)
    with pytest.warns(FingerprintWarning) as caught:
        result = fp(module, name)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert construct in message and f"sh_flow.py:{line}" in message
    assert any(construct in item and f"sh_flow.py:{line}" in item for item in result.uncovered)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fp(module, name) is result  # once: memoized, no second warning


def test_constant_getattr_is_followed(project: Project) -> None:
    result = fp(project.load(DYNAMIC), "node_constant_getattr")
    assert "sh_helpers.double" in result.parts
    assert result.uncovered == ()


def test_a_missing_import_is_keyed_not_warned(project: Project) -> None:
    result = fp(project.load(DYNAMIC), "node_missing")
    assert result.parts["package:sh_not_installed_anywhere"] == "not installed"


def test_fingerprint_stays_backward_compatible() -> None:
    old = Fingerprint("d" * 32, {"m.f": "e" * 32}, "ast")
    assert old.uncovered == ()


# -- 7. no needless misses -------------------------------------------------------------------

STATEFUL = """
import functools


class Options:
    def __init__(self):
        self.tags = {"alpha", "beta", "gamma", "delta", "epsilon"}
        self.name = "x"

    def run(self, x):
        return x


def target(x, k):
    return x * k


PARTIAL = functools.partial(target, k=2)
"""


def test_instances_and_sets_hash_the_same_in_every_process(project: Project) -> None:
    module = project.load(STATEFUL)
    expected = [hash_value(module.Options()), hash_value(module.PARTIAL)]
    code = (
        f"import sys, json; sys.path.insert(0, {project.folder!r}); import sh_flow as m;"
        "from etherealfabric.hashing._values import hash_value as h;"
        "print(json.dumps([h(m.Options()), h(m.PARTIAL)]))"
    )
    for seed in ("0", "4242"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )  # fmt: skip
        assert json.loads(out.stdout) == expected


def test_a_partial_keeps_its_digest_when_its_target_moves(project: Project) -> None:
    base = hash_value(project.load(STATEFUL).PARTIAL)
    moved = STATEFUL.replace("\n\ndef target", "\n# a comment\n\n\n\ndef target")
    assert hash_value(project.load(moved).PARTIAL) == base


# -- 8. installed packages, by version -------------------------------------------------------

PACKAGES = """
import json
import numpy as np
from numpy import mean
import etherealfabric


def uses_numpy(x):
    return np.mean(x)


def uses_function(x):
    return mean(x)


def helper(x):
    return np.sum(x)


def through_helper(x):
    return helper(x)


def in_body(x):
    import numpy
    return numpy.max(x)


def stdlib_and_us(x):
    return json.dumps(x), etherealfabric.node
"""


@pytest.mark.parametrize("name", ["uses_numpy", "uses_function", "through_helper", "in_body"])
def test_installed_packages_are_keyed_by_version(project: Project, name: str) -> None:
    module = project.load(PACKAGES)
    assert fp(module, name).parts["package:numpy"] == np.__version__


def test_stdlib_and_etherealfabric_are_not_keyed(project: Project) -> None:
    parts = fp(project.load(PACKAGES), "stdlib_and_us").parts
    assert not any(p.startswith("package:") for p in parts)


def test_package_version_modes(project: Project) -> None:
    module = project.load(PACKAGES)
    full = fp(module, "uses_numpy")
    set_package_versions("minor")
    minor = fp(module, "uses_numpy")
    assert minor.parts["package:numpy"] == ".".join(np.__version__.split(".")[:2])
    set_package_versions("off")
    off = fp(module, "uses_numpy")
    # no package's version; which numpy function the global `mean` is still counts
    assert set(off.parts) == {"sh_flow.uses_numpy", "sh_flow.mean"}
    assert len({full.digest, minor.digest, off.digest}) == 3
    set_package_versions("full")
    assert fp(module, "uses_numpy") == full


def test_package_versions_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    set_package_versions(None)
    assert package_versions() == "full"
    monkeypatch.setenv("ETHEREALFABRIC_PACKAGE_VERSIONS", "Minor")
    assert package_versions() == "full"  # the environment is read once per process...
    set_package_versions(None)  # ... and again after this
    assert package_versions() == "minor"
    set_package_versions("off")
    assert package_versions() == "off"  # the call wins over the environment
    monkeypatch.setenv("ETHEREALFABRIC_PACKAGE_VERSIONS", "patch")
    set_package_versions(None)
    with pytest.raises(ConfigError, match="ETHEREALFABRIC_PACKAGE_VERSIONS='patch'"):
        package_versions()
    with pytest.raises(ConfigError, match="package_versions"):
        set_package_versions("major")


# -- 9. keys of code these rules do not touch stay the same ----------------------------------

GOLDEN = """
import numpy as np

SCALE = 3
TABLE = {"a": (1, 2), "b": [3.5, None]}


def leaf(x):
    return x * 1.0


def helper(x):
    return leaf(x) + TABLE["a"][0]


def plain(x):
    return helper(x) * SCALE


def with_numpy(x):
    return np.mean(x) * SCALE
"""


def test_fingerprints_of_untouched_code_keep_their_digests(project: Project) -> None:
    """Digests computed by the engine before these rules (module ``sh_flow``)."""
    module = project.load(GOLDEN)
    assert code_fingerprint(module.plain).digest == "a3e04a652c7e99a6468fd1fc69bef644"
    numpy_part = fp(module, "with_numpy")
    assert numpy_part.parts["package:numpy"] == np.__version__  # the one new part...
    set_package_versions("off")
    assert fp(module, "with_numpy").digest == "4ee7ef07494278f1a22fe9d598abdc88"  # ...or none


CLASS_METHODS = """
import sh_tools
from etherealfabric import Node


class node(Node):
    def __init__(self):
        super().__init__()
        self.outputs = ["out"]

    def run(self):
        return {"out": self.combine(sh_tools.first())}

    def combine(self, x):
        return x + sh_tools.second()
"""
TOOLS = """
def first():
    return 1


def second():
    return 2
"""


@pytest.mark.parametrize(("old", "new"), [("return 1", "return 10"), ("return 2", "return 20")])
def test_each_method_of_a_class_reaches_the_names_it_reads_of_a_shared_module(
    project: Project, old: str, new: str
) -> None:
    """Two methods read two functions of one module: an edit of either is a change (the
    module was followed once, for the first method's names only: the second's edit was a
    stale hit)."""
    before = fp(project.load(CLASS_METHODS, **{"sh_tools.py": TOOLS}))
    after = fp(project.load(CLASS_METHODS, **{"sh_tools.py": TOOLS.replace(old, new)}))
    assert before.digest != after.digest
