"""Module globals holding absolute paths inside the workflow root: keyed relative to it.

``BASE = Path(__file__).resolve().parent`` and ``DATA = BASE / "data"`` in a helper module
are the usual way to find a project's files; the code fingerprint hashes such a global by
value, so before the fix a teammate whose checkout is in another folder never shared a
result of a node reading it. Each checkout runs in its own process, as teammates do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HELPERS = """\
import os
from pathlib import Path

BASE = Path(__file__).resolve().parent
DATA = BASE / "data"
DATA_STR = os.path.join(str(BASE), "data", "c.txt")
OUTSIDE = "/usr/share"


def read_cfg():
    return (DATA / "c.txt").read_text()
"""

FLOW = """\
import helpers
from etherealfabric import Workflow, node


@node
def uses_path():
    return len(helpers.read_cfg())


@node
def uses_str():
    return helpers.DATA_STR.endswith("c.txt")


with Workflow("globals") as wf:
    uses_path()
    uses_str()
"""


def _project(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "c.txt").write_text("hello\n")
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "flow.py").write_text(FLOW)
    return folder


def _run(folder: Path, home: Path) -> dict[str, str]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src")])
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--json", "--quiet"],
        cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    nodes: dict[str, str] = json.loads(done.stdout)["nodes"]
    return nodes


def test_a_path_global_inside_the_root_is_shared_between_checkouts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    alice = _project(tmp_path / "alice" / "proj")
    assert set(_run(alice, home).values()) == {"succeeded"}
    bob = tmp_path / "bob" / "work" / "proj"
    shutil.copytree(alice, bob)
    assert _run(bob, home) == {"uses_path": "cached", "uses_str": "cached"}


def test_a_path_global_naming_another_file_still_re_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    alice = _project(tmp_path / "alice" / "proj")
    _run(alice, home)
    bob = tmp_path / "bob" / "proj"
    shutil.copytree(alice, bob)
    helpers = bob / "helpers.py"
    helpers.write_text(helpers.read_text().replace('"data", "c.txt"', '"data", "d.txt"'))
    assert _run(bob, home) == {"uses_path": "cached", "uses_str": "succeeded"}
