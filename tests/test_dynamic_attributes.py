"""A module's attribute read by its name in the other ways Python has besides ``module.NAME``
and ``getattr``: ``sys.modules["pkg"].NAME``, ``module.__getattribute__("NAME")``,
``module.__dict__["NAME"]``, ``vars(module)["NAME"]`` (and their ``.get``),
``operator.attrgetter("NAME")(module)`` (also held by a global) and
``operator.methodcaller("name")(module)``. With a constant name each is followed as
``module.NAME`` is: an edit of the constant re-runs the node (it was a stale hit). With a
computed name the key cannot know what is read: reported as not covered, naming the construct
and its line, as ``getattr(module, <computed>)`` is.

The project machinery of ``test_code_reach.py``: each version of the files is written to its
own folder and imported under the same module names, as a user's edit-and-rerun does.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from cli_runner import ef
from etherealfabric import Workflow
from etherealfabric.hashing._fingerprint import FingerprintWarning, code_fingerprint
from test_code_reach import Project, fp

TOOLS = """
FACTOR = 4


def scale(x):
    return x * FACTOR
"""

FLOW = """
import operator
import sys

import sh_tools
from etherealfabric import node

GET = operator.attrgetter("FACTOR")
NAME = "FACTOR"


@node
def via_sys_modules(x):
    return x * sys.modules["sh_tools"].FACTOR


@node
def via_sys_modules_get(x):
    return x * sys.modules.get("sh_tools").FACTOR


@node
def via_getattribute(x):
    return x * sh_tools.__getattribute__("FACTOR")


@node
def via_object_getattribute(x):
    return x * object.__getattribute__(sh_tools, NAME)


@node
def via_dict(x):
    return x * sh_tools.__dict__["FACTOR"]


@node
def via_dict_get(x):
    return x * sh_tools.__dict__.get("FACTOR", 1)


@node
def via_vars(x):
    return x * vars(sh_tools)["FACTOR"]


@node
def via_vars_get(x):
    return x * vars(sh_tools).get(NAME, 1)


@node
def via_attrgetter_global(x):
    return x * GET(sh_tools)


@node
def via_attrgetter_inline(x):
    return x * operator.attrgetter("FACTOR")(sh_tools)


@node
def via_methodcaller(x):
    return operator.methodcaller("scale", x)(sh_tools)


def _closure():
    get = operator.attrgetter("FACTOR")

    @node
    def via_attrgetter_closure(x):
        return x * get(sh_tools)

    return via_attrgetter_closure


via_attrgetter_closure = _closure()


@node
def via_attrgetter_default(x, get=operator.attrgetter("FACTOR")):
    return x * get(sh_tools)
"""

CONSTANT_FORMS = [
    "via_sys_modules",
    "via_sys_modules_get",
    "via_getattribute",
    "via_object_getattribute",
    "via_dict",
    "via_dict_get",
    "via_vars",
    "via_vars_get",
    "via_attrgetter_global",
    "via_attrgetter_inline",
    "via_methodcaller",
    "via_attrgetter_closure",
]


@pytest.mark.parametrize("name", CONSTANT_FORMS)
def test_an_edit_of_a_constant_read_by_name_reruns_the_node(
    project: Project, tmp_path: Path, name: str
) -> None:
    """``FACTOR = 4`` edited to ``FACTOR = 9``: the node runs again and returns 45 (it was a
    cache hit returning 20), and nothing is reported as not covered."""

    def run(factor: int) -> tuple[int, int]:
        flow = project.load(FLOW, **{"sh_tools.py": TOOLS.replace("4", str(factor))})
        with warnings.catch_warnings():
            warnings.simplefilter("error", FingerprintWarning)
            with Workflow("dynamic-attributes", home=tmp_path / "home") as wf:
                out = getattr(flow, name)(5)
            result = wf.execute()
        return result[out], result.executed

    assert run(4) == (20, 1)
    assert run(4) == (20, 0)
    assert run(9) == (45, 1)


@pytest.mark.parametrize("name", [*CONSTANT_FORMS, "via_attrgetter_default"])
def test_a_constant_read_by_name_is_a_part_of_the_key(project: Project, name: str) -> None:
    """(A getter in a default is a parameter of a node, keyed as an input: this one is
    followed as a helper's default would be.)"""
    result = fp(project.load(FLOW, **{"sh_tools.py": TOOLS}), name)
    assert "sh_tools.FACTOR" in result.parts or "sh_tools.scale" in result.parts
    assert result.uncovered == ()


COMPUTED = """
import operator
import sys

import sh_tools


def node_vars(x, name):
    return x * vars(sh_tools)[name]


def node_vars_get(x, name):
    return x * vars(sh_tools).get(name, 1)


def node_dict(x, name):
    return x * sh_tools.__dict__[name]


def node_dict_get(x, name):
    return x * sh_tools.__dict__.get(name)


def node_getattribute(x, name):
    return x * sh_tools.__getattribute__(name)


def node_attrgetter(x, name):
    return x * operator.attrgetter(name)(sh_tools)


def node_methodcaller(x, name):
    return operator.methodcaller(name, x)(sh_tools)


def node_sys_modules(x, which):
    return x * sys.modules[which].FACTOR


def node_whole(x):
    return x * sum(v for k, v in vars(sh_tools).items() if k.isupper())


def node_whole_dict(x):
    return x * len(dict(sh_tools.__dict__))
"""


@pytest.mark.parametrize(
    ("name", "construct", "line"),
    [
        ("node_vars", "vars(sh_tools)[<computed>]", 9),
        ("node_vars_get", "vars(sh_tools).get(<computed>)", 13),
        ("node_dict", "sh_tools.__dict__[<computed>]", 17),
        ("node_dict_get", "sh_tools.__dict__.get(<computed>)", 21),
        ("node_getattribute", "sh_tools.__getattribute__(<computed>)", 25),
        ("node_attrgetter", "operator.attrgetter(<computed>)(sh_tools)", 29),
        ("node_methodcaller", "operator.methodcaller(<computed>)(sh_tools)", 33),
        ("node_sys_modules", "sys.modules[which].FACTOR", 37),
        ("node_whole", "vars(sh_tools).items() (a module's namespace, read whole)", 41),
        ("node_whole_dict", "dict(sh_tools.__dict__) (a module's namespace, read whole)", 45),
    ],
)
def test_a_module_attribute_read_by_a_computed_name_warns(
    project: Project, name: str, construct: str, line: int
) -> None:
    module = project.load(COMPUTED, **{"sh_tools.py": TOOLS})
    with pytest.warns(FingerprintWarning) as caught:
        result = fp(module, name)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert construct in message and f"sh_flow.py:{line}" in message
    assert any(construct in item and f"sh_flow.py:{line}" in item for item in result.uncovered)


QUIET = """
import operator


class Box:
    def __init__(self):
        self.a = 1

    def __getattr__(self, name):
        return object.__getattribute__(self, "a")


def node(x, name):
    box = Box()
    row = {"a": 2}
    return (
        x * vars(box)[name]
        + box.__dict__.get(name, 0)
        + operator.attrgetter(name)(box)
        + operator.itemgetter(name)(row)
        + len(vars(box))
    )
"""


def test_the_same_forms_on_objects_that_are_no_module_stay_quiet(project: Project) -> None:
    module = project.load(QUIET, **{"sh_tools.py": TOOLS})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fp(module, "node").uncovered == ()


PLAN_FLOW = """
import consts
from etherealfabric import Workflow, node


@node
def by_constant(x):
    return x * vars(consts)["FACTOR"]


@node
def by_name(x, name="FACTOR"):
    return x * vars(consts)[name]


with Workflow("dynplan") as wf:
    by_constant(5)
    by_name(5)
"""


def test_plan_keys_lists_the_constant_and_what_is_not_covered(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(PLAN_FLOW)
    (tmp_path / "consts.py").write_text("FACTOR = 4\n")
    home = {"ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    constant = ef(tmp_path, "plan", "flow.py", "--keys", "by_constant", **home)
    assert constant.returncode == 0, constant.stderr
    assert "consts.FACTOR" in constant.stdout
    assert "not covered by the key: nothing found" in constant.stdout
    computed = ef(tmp_path, "plan", "flow.py", "--keys", "by_name", **home)
    assert computed.returncode == 0, computed.stderr
    assert "not covered by the key: vars(consts)[<computed>] at flow.py:13" in computed.stdout


def test_an_object_in_sys_modules_in_a_modules_place_does_not_break_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sys.modules["name"]`` may hold any object (a module that puts an instance in its own
    place): there is no module to follow, and the key is still made (it raised
    AttributeError on the tuple's missing ``__name__``)."""
    monkeypatch.setitem(sys.modules, "sh_not_a_module", (1, 2))

    def reader(x: int) -> int:
        return (
            x
            + sys.modules["sh_not_a_module"][0]
            + getattr(sys.modules["sh_not_a_module"], "count")(1)  # noqa: B009
        )

    assert code_fingerprint(reader).uncovered == ()
