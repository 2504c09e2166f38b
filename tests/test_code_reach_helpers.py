"""What a helper a node calls reads at run time that the key cannot see is reported too.

An environment variable, a command-line argument or a draw from the process's global random
generator read in a helper changes a node's result as much as one read in its own code: the
key cannot see it, so a ``FingerprintWarning`` names it, its ``file:line`` and the helper. Only
the helpers the code reaches *directly* count: the globals it loads, the names imported in its
body, the attributes of user modules it loads (``settings.mode``), and theirs in turn. A global
function that merely shares its name with an attribute the code reads (``ctx.spark`` and a
global ``spark``) stays quiet: it may not run at all. An assignment to a module global in a
helper stays quiet as well (a module-level cache of its own). None of this is in the key.

The same project machinery as ``test_code_reach.py``; the first case through the command line in
fresh processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from etherealfabric.hashing._builtins import hash_plain
from test_code_reach import Project
from test_code_reach_dynamic import quiet, warned
from test_code_reach_external import ARGV, DRAWS, STORES

SRC = str(Path(__file__).resolve().parent.parent / "src")


# -- through the command line ----------------------------------------------------------------

SETTINGS = """
import os
def mode():
    return os.environ.get("MODE", "a")
"""

FLOW = """
from etherealfabric import Workflow, node
import settings


@node
def report():
    return settings.mode()


with Workflow("envh") as wf:
    report()
"""


def test_an_environment_read_in_a_helper_module_warns_through_the_cli(tmp_path: Path) -> None:
    """``MODE=a run``, then ``MODE=b run``: the second run is a cache hit with the result of the
    first (the key cannot see the variable), and each run says so."""
    (tmp_path / "settings.py").write_text(textwrap.dedent(SETTINGS).lstrip())
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW).lstrip())
    path = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    base = {**os.environ, "ETHEREALFABRIC_HOME": str(tmp_path / "home"), "PYTHONPATH": path}
    for mode in ("a", "b"):
        out = subprocess.run(
            [sys.executable, "-m", "etherealfabric", "run", "flow.py"],
            cwd=tmp_path, env={**base, "MODE": mode}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "FingerprintWarning" in out.stderr, out.stderr
        assert (
            "os.environ.get('MODE', 'a') (an environment variable) at settings.py:3 "
            "(in settings.mode)" in out.stderr
        ), out.stderr
        assert "the cache key of flow.report does not cover" in out.stderr


# -- which helpers count ---------------------------------------------------------------------

HELPERS = """
import os


def mode():
    return os.environ.get("SH_MODE", "a")


def cached():
    global _CACHE
    _CACHE = 1
    return _CACHE
"""

SETTINGS_PKG = """
import os


def mode():
    return os.getenv("SH_PKG_MODE")
"""

FLOW_HELPERS = """
import os

import sh_helpers
import sh_helpers as alias
from sh_helpers import mode
from sh_pkg import settings


def spark():
    return os.environ.get("SH_SPARK", "") + inner()


def inner():
    return os.environ["SH_INNER"]


def outer():
    return inner()


class Reader:
    def read(self):
        return os.environ["SH_READER"]


def node_attribute(ctx):
    return ctx.spark


def node_attribute_of_import(ctx):
    return ctx.mode + ctx.cached


def node_module():
    return sh_helpers.mode()


def node_alias():
    return alias.mode()


def node_from():
    return mode()


def node_package_module():
    return settings.mode()


def node_body_from():
    from sh_pkg import settings as s

    return s.mode()


def node_body_import():
    import sh_pkg.settings

    return sh_pkg.settings.mode()


def node_helper_of_helper():
    return outer()


def node_class():
    return Reader().read()


def node_both(ctx):
    return ctx.spark + spark()


def node_cache():
    return sh_helpers.cached()
"""


def load(project: Project) -> object:
    return project.load(
        FLOW_HELPERS,
        **{"sh_helpers.py": HELPERS, "sh_pkg/__init__.py": "", "sh_pkg/settings.py": SETTINGS_PKG},
    )


@pytest.mark.parametrize(
    ("name", "construct", "helper", "file", "line"),
    [
        ("node_module", "os.environ.get('SH_MODE', 'a')", "sh_helpers.mode", "sh_helpers", 6),
        ("node_alias", "os.environ.get('SH_MODE', 'a')", "sh_helpers.mode", "sh_helpers", 6),
        ("node_from", "os.environ.get('SH_MODE', 'a')", "sh_helpers.mode", "sh_helpers", 6),
        ("node_package_module", "os.getenv('SH_PKG_MODE')", "sh_pkg.settings.mode", "settings", 6),
        ("node_body_from", "os.getenv('SH_PKG_MODE')", "sh_pkg.settings.mode", "settings", 6),
        ("node_body_import", "os.getenv('SH_PKG_MODE')", "sh_pkg.settings.mode", "settings", 6),
        ("node_helper_of_helper", "os.environ['SH_INNER']", "sh_flow.inner", "sh_flow", 15),
        ("node_class", "os.environ['SH_READER']", "sh_flow.Reader", "sh_flow", 24),
    ],
)
def test_a_read_in_a_helper_reached_directly_warns(
    project: Project, name: str, construct: str, helper: str, file: str, line: int
) -> None:
    message, result = warned(load(project), name)
    expected = f"{construct} (an environment variable) at "
    tail = f"{file}.py:{line} (in {helper})"
    assert expected in message and tail in message
    assert [item for item in result.uncovered if expected in item and item.endswith(tail)]
    assert len(result.uncovered) == 1


@pytest.mark.parametrize("name", ["node_attribute", "node_attribute_of_import", "node_cache"])
def test_a_helper_reached_through_an_attribute_name_or_keeping_a_cache_stays_quiet(
    project: Project, name: str
) -> None:
    """``ctx.spark`` is not the global ``spark`` (nor what it calls: ``inner``); ``ctx.mode``
    is not the imported ``mode``; a helper's ``global _CACHE`` is its own business."""
    result = quiet(load(project), name)
    assert result.uncovered == ()
    if name == "node_attribute":
        assert {"sh_flow.spark", "sh_flow.inner"} <= set(result.parts)  # still in the key


def test_a_helper_reached_both_ways_warns(project: Project) -> None:
    message, result = warned(load(project), "node_both")
    assert "os.environ.get('SH_SPARK', '') (an environment variable)" in message
    assert "(in sh_flow.spark)" in message and "(in sh_flow.inner)" in message
    assert len(result.uncovered) == 2


def test_the_uncovered_list_is_not_in_the_key(project: Project) -> None:
    _, result = warned(load(project), "node_module")
    assert result.uncovered
    assert result.digest == hash_plain(("fingerprint", tuple(sorted(result.parts.items()))))


@pytest.mark.parametrize(
    ("source", "mark"),
    [(ARGV, "len(sys.argv) (a command-line argument)"),
     (DRAWS, "np.random.rand(...) (the process's global random generator")],
)  # fmt: skip
def test_command_line_reads_and_global_draws_in_a_helper_warn(
    project: Project, source: str, mark: str
) -> None:
    message, result = warned(project.load(source), "node_helper")
    assert mark in message and "(in sh_flow.helper)" in message
    assert len(result.uncovered) == 1


def test_a_helpers_assignment_to_a_module_global_stays_quiet(project: Project) -> None:
    assert quiet(project.load(STORES), "node_helper").uncovered == ()
