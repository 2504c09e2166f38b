"""Code that a node reaches by the way Python looks names up at run time, not by a plain name:
each is followed (an edit there changes the key) or, where that cannot be known without running
the code, reported as not covered by the key, naming the construct and its line.

- ``getattr`` on a module reached through ``sys.modules`` or ``__import__``,
- ``functools.singledispatch`` registrations,
- a package's lazy attributes (a module ``__getattr__``, PEP 562),
- a user metaclass (its ``__call__`` runs when the node makes an instance),
- ``np.vectorize`` / ``np.frompyfunc`` objects in a global,
- reads of the environment beyond ``os.environ[...]``, ``.get`` and ``os.getenv``.

The same project machinery as ``test_code_reach.py``: each version of the files is written to
its own folder and imported under the same module names, as a user's edit-and-rerun does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType

import pytest

from etherealfabric import Workflow, node
from etherealfabric.hashing._fingerprint import Fingerprint, FingerprintWarning
from test_code_reach import HELPERS, Project, changed, fp


def quiet(module: ModuleType, name: str = "node") -> Fingerprint:
    """The fingerprint, which must come without any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fp(module, name)


def versions(
    project: Project, flow: str, old: str, new: str, name: str = "node", **files: str
) -> set[str]:
    """The parts an edit of ``old`` into ``new`` (in the flow, or in the one file given whose
    text holds ``old``) changes in ``name``'s fingerprint."""
    edited = {k: v.replace(old, new, 1) for k, v in files.items() if old in v}
    if not edited:
        assert old in flow, old
    before = quiet(project.load(flow, **files), name)
    after_flow = flow if edited else flow.replace(old, new, 1)
    after = quiet(project.load(after_flow, **{**files, **edited}), name)
    return changed(before, after)


def warned(module: ModuleType, name: str) -> tuple[str, Fingerprint]:
    with pytest.warns(FingerprintWarning) as caught:
        result = fp(module, name)
    assert len(caught) == 1
    return str(caught[0].message), result


# -- 1. getattr on a module reached through sys.modules or __import__ -----------------------

GETATTR = """
import sys

NAME = "double"


def g(x):
    return x + 1


def node_self(x):
    return getattr(sys.modules[__name__], "g")(x)


def node_import(x):
    return getattr(__import__("sh_helpers"), NAME)(x)


def node_self_computed(x, which):
    return getattr(sys.modules[__name__], which)(x)


def node_modules_computed(x, which):
    return getattr(sys.modules[which], "g")(x)
"""


def test_getattr_on_the_own_module_by_a_constant_is_followed(project: Project) -> None:
    assert versions(project, GETATTR, "x + 1", "x + 7", "node_self") == {"sh_flow.g"}
    assert versions(project, GETATTR, '"double"', '"triple"', "node_self") == set()


def test_getattr_on_an_imported_module_by_a_constant_global_is_followed(
    project: Project,
) -> None:
    result = quiet(project.load(GETATTR), "node_import")
    assert "sh_helpers.double" in result.parts
    helpers = {"sh_helpers.py": HELPERS}
    assert versions(project, GETATTR, "x * 2", "x * 5", "node_import", **helpers) == {
        "sh_helpers.double"
    }
    assert versions(project, GETATTR, "x * 3", "x * 4", "node_import", **helpers) == set()
    assert versions(project, GETATTR, '"double"', '"triple"', "node_import") == {
        "sh_flow.NAME", "sh_helpers.double", "sh_helpers.triple"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "construct", "line"),
    [
        ("node_self_computed", "getattr(sys.modules[__name__], <computed>)", 20),
        ("node_modules_computed", "getattr(sys.modules[which], ...)", 24),
    ],
)
def test_getattr_on_a_module_by_a_computed_name_warns(
    project: Project, name: str, construct: str, line: int
) -> None:
    message, result = warned(project.load(GETATTR), name)
    assert construct in message and f"sh_flow.py:{line}" in message
    assert any(construct in item for item in result.uncovered)


# -- 2. functools.singledispatch --------------------------------------------------------------

DISPATCH = """
import functools


@functools.singledispatch
def describe(v):
    return "other"


@describe.register
def _(v: int):
    return "int"


def _float(v):
    return "float"


describe.register(float, _float)


def unrelated():
    return 0


def node(x):
    return describe(x)
"""


def test_singledispatch_registrations_are_followed(project: Project) -> None:
    assert versions(project, DISPATCH, 'return "int"', 'return "INT"') == {"sh_flow._"}
    assert versions(project, DISPATCH, 'return "float"', 'return "FLOAT"') == {"sh_flow._float"}
    assert versions(project, DISPATCH, "register(float,", "register(complex,") == {
        "sh_flow.describe.<registry>"
    }
    assert versions(project, DISPATCH, "return 0", "return 1") == set()


DISPATCH_METHOD = """
import functools


def plain(v):
    return v + 1


def scaled(v, k):
    return v * k


class Formatter:
    @functools.singledispatchmethod
    def show(self, v):
        return plain(v)

    triple = functools.partialmethod(scaled, k=3)


def node(x):
    return Formatter().show(x) + Formatter().triple(x)
"""


def test_singledispatchmethod_and_partialmethod_targets_are_followed(project: Project) -> None:
    assert versions(project, DISPATCH_METHOD, "v + 1", "v + 2") == {"sh_flow.plain"}
    assert versions(project, DISPATCH_METHOD, "v * k", "v * k * k") == {"sh_flow.scaled"}


# -- 3. a package's lazy attributes (module __getattr__) ---------------------------------------

LAZY_INIT = """
def __getattr__(name):
    if name == "thing":
        from .impl import thing
        return thing
    raise AttributeError(name)
"""

LAZY_IMPL = """
def thing(x):
    return x + 1


def other(x):
    return x - 1
"""

LAZY_FLOW = """
import sh_pkg


def node(x):
    return sh_pkg.thing(x)
"""

COMPUTED_INIT = """
import importlib


def __getattr__(name):
    return importlib.import_module("." + name, __name__)
"""

COMPUTED_FLOW = """
import sh_pkg


def node(x):
    return sh_pkg.tools.run(x)
"""


NAMED_IMPORT_FLOW = """
import importlib

IMPL = "sh_late"


def node(x):
    return importlib.import_module(IMPL).f(x)
"""


def test_an_import_of_a_module_named_by_a_global_string_is_followed(project: Project) -> None:
    """``importlib.import_module(IMPL)`` with ``IMPL = "sh_late"``: the name is known (and
    keyed); an edit of the module it names was a stale hit, warned as computed."""
    files = {"sh_late.py": "def f(x):\n    return x * 2\n"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FingerprintWarning)
        assert versions(project, NAMED_IMPORT_FLOW, "x * 2", "x * 3", **files) == {"sh_late.f"}


def test_a_lazy_attribute_is_followed_through_the_module_getattr(project: Project) -> None:
    files = {"sh_pkg/__init__.py": LAZY_INIT, "sh_pkg/impl.py": LAZY_IMPL}
    assert versions(project, LAZY_FLOW, "x + 1", "x + 2", **files) == {"sh_pkg.impl.thing"}
    assert versions(project, LAZY_FLOW, "x - 1", "x - 2", **files) == set()
    assert "sh_pkg.__getattr__" in versions(project, LAZY_FLOW, '"thing"', '"thing2"', **files)


def test_a_lazy_submodule_is_followed_and_the_computed_import_warns(project: Project) -> None:
    files = {
        "sh_pkg/__init__.py": COMPUTED_INIT,
        "sh_pkg/tools.py": "def run(x):\n    return x + 1\n",
    }
    message, before = warned(project.load(COMPUTED_FLOW, **files), "node")
    assert "importlib.import_module(<computed>)" in message
    assert f"{Path('sh_pkg', '__init__.py')}:6" in message
    edited = {**files, "sh_pkg/tools.py": "def run(x):\n    return x + 2\n"}
    _, after = warned(project.load(COMPUTED_FLOW, **edited), "node")
    assert changed(before, after) == {"sh_pkg.tools.run"}


# -- 4. a user metaclass -----------------------------------------------------------------------

METACLASS = """
class Meta(type):
    def __call__(cls, *args):
        made = super().__call__(*args)
        made.scale = 2
        return made


class Model(metaclass=Meta):
    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return x * self.k * self.scale


def node(x):
    return Model(3).apply(x)
"""


def test_a_metaclass_of_a_reached_class_is_followed(project: Project) -> None:
    assert versions(project, METACLASS, "made.scale = 2", "made.scale = 3") == {"sh_flow.Meta"}
    assert versions(project, METACLASS, "Model(3)", "Model(4)") == {"sh_flow.node"}


# -- 5. np.vectorize and np.frompyfunc in a global ---------------------------------------------

VECTORIZED = """
import numpy as np


def bump(x):
    return x + 1


def square(x):
    return x * x


VBUMP = np.vectorize(bump)
USQUARE = np.frompyfunc(square, 1, 1)


def node(x):
    return VBUMP(x)


def node_ufunc(x):
    return USQUARE(x)
"""


def test_a_vectorized_function_is_followed(project: Project) -> None:
    assert versions(project, VECTORIZED, "x + 1", "x + 2") == {"sh_flow.bump"}
    assert versions(project, VECTORIZED, "x * x", "x * x * x") == set()
    assert versions(project, VECTORIZED, "vectorize(bump)", "vectorize(bump, otypes=[float])") == {
        "sh_flow.VBUMP.<settings>"
    }


def test_a_frompyfunc_ufunc_warns(project: Project) -> None:
    message, result = warned(project.load(VECTORIZED), "node_ufunc")
    assert "sh_flow.USQUARE: a numpy.frompyfunc ufunc (square (vectorized))" in message
    assert any("frompyfunc" in item for item in result.uncovered)


# -- 6. reads of the environment ---------------------------------------------------------------

ENVIRONMENT = """
import os
from os import getenv as read_variable
from os.path import expandvars as expand


def node_dict(x):
    return x + int(dict(os.environ).get("SH_MODE", "0"))


def node_items(x):
    return x + len([k for k, v in os.environ.items() if k.startswith("SH_")])


def node_copy(x):
    env = os.environ.copy()
    return x + int(env.get("SH_MODE", "0"))


def node_alias(x):
    return x + int(read_variable("SH_MODE", "0"))


def node_in(x):
    return x + ("SH_MODE" in os.environ)


def helper(x):
    return x + len(os.environ)


def node_helper(x):
    return helper(x)


def node_local(environ):
    return len(environ)


def node_expand(x):
    return x + len(os.path.expandvars("$SH_DATA/v.csv"))


def node_expand_alias(x):
    return x + len(expand("${SH_DATA}"))
"""


@pytest.mark.parametrize(
    ("name", "construct", "line"),
    [
        ("node_dict", "dict(os.environ)", 8),
        ("node_items", "os.environ.items()", 12),
        ("node_copy", "os.environ.copy()", 16),
        ("node_alias", "read_variable('SH_MODE', '0')", 21),
        ("node_in", "'SH_MODE' in os.environ", 25),
        ("node_helper", "len(os.environ)", 29),  # in a helper it calls: named with it
        ("node_expand", "os.path.expandvars('$SH_DATA/v.csv')", 41),
        ("node_expand_alias", "expand('${SH_DATA}')", 45),
    ],
)
def test_other_environment_reads_warn(
    project: Project, name: str, construct: str, line: int
) -> None:
    message, result = warned(project.load(ENVIRONMENT), name)
    expected = f"{construct} (an environment variable) at "
    assert expected in message and f"sh_flow.py:{line}" in message
    assert any(expected in item and f"sh_flow.py:{line}" in item for item in result.uncovered)


def test_environment_reads_elsewhere_stay_quiet(project: Project) -> None:
    assert quiet(project.load(ENVIRONMENT), "node_local").uncovered == ()


def test_a_function_made_by_exec_without_a_module_is_keyed_by_its_code(tmp_path: Path) -> None:
    """``exec(text, {})`` and ``sympy.lambdify`` make functions whose ``__module__`` is None:
    keyed by their bytecode (with a warning: no source), not by their name only."""

    def build(body: str) -> Workflow:
        namespace: dict[str, object] = {}
        exec(f"def made(x):\n    return {body}\n", namespace)
        made = namespace["made"]
        assert getattr(made, "__module__", "?") is None

        @node
        def final() -> int:
            return made(2)  # type: ignore[operator]

        with Workflow("exec-made", home=tmp_path / "home") as wf:
            final()
        return wf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FingerprintWarning)
        assert build("x * 2").execute()["final"]["result"] == 4
        assert build("x * 2").execute().cached == 1
        again = build("x * 20").execute()
    assert (again["final"]["result"], again.executed) == (40, 1)
