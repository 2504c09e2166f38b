"""Code whose module is gone: classes of a file run with ``runpy.run_path``.

``runpy.run_path("models.py")`` runs the file in a temporary module ``<run_path>`` and drops
it from ``sys.modules`` once the file has run, so its classes name a module that no longer
exists. Such a class was taken for library code (no module file to look at): a node using it
as a global was keyed without its code (an edit of ``Model.predict`` was a stale hit), and an
instance of it passed as an argument was hashed through cloudpickle (a new key every run,
with an ``UnstableHashWarning``). Each run is a fresh process, as a user's runs are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MODELS = """\
class Model:
    def __init__(self, k):
        self.k = k

    def predict(self, xs):
        return [x * self.k for x in xs]


class Settings:
    THRESHOLD = 0.5


class Point:
    pass


def point(x):
    p = Point()
    p.x = x
    return p
"""

FLOW = """\
import runpy
from pathlib import Path

from etherealfabric import Workflow, node

MODELS = runpy.run_path(str(Path(__file__).parent / "models.py"))
Model, Settings = MODELS["Model"], MODELS["Settings"]


@node
def uses_global(xs):
    return Model(3).predict(xs)


@node
def uses_argument(model, xs):
    return model.predict(xs)


@node
def uses_setting():
    return Settings.THRESHOLD


@node
def uses_point(p):
    return p.x


with Workflow("gone") as wf:
    uses_global([1, 2])
    uses_argument(Model(2), [1, 2])
    uses_setting()
    uses_point(MODELS["point"](1))

if __name__ == "__main__":
    wf.execute()
"""


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "models.py").write_text(MODELS)
    (folder / "flow.py").write_text(FLOW)
    return folder


def _run(folder: Path) -> tuple[dict[str, str], str]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(folder / "home")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--json", "--quiet"],
        cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    nodes: dict[str, str] = json.loads(done.stdout)["nodes"]
    return nodes, done.stderr


def test_an_edit_of_a_run_path_class_reruns_its_nodes(tmp_path: Path) -> None:
    folder = _project(tmp_path / "proj")
    assert set(_run(folder)[0].values()) == {"succeeded"}
    again, stderr = _run(folder)
    assert set(again.values()) == {"cached"}
    assert "UnstableHashWarning" not in stderr
    models = folder / "models.py"
    models.write_text(models.read_text().replace("x * self.k", "x * self.k + 1"))
    assert _run(folder)[0] == {
        "uses_global": "succeeded", "uses_argument": "succeeded",
        "uses_setting": "cached", "uses_point": "cached",
    }  # fmt: skip


def test_a_class_without_methods_of_a_run_path_file_counts_too(tmp_path: Path) -> None:
    """No method to find its file by: a class whose module cannot be found is user code."""
    folder = _project(tmp_path / "proj")
    _run(folder)
    models = folder / "models.py"
    models.write_text(models.read_text().replace("THRESHOLD = 0.5", "THRESHOLD = 0.7"))
    assert _run(folder)[0]["uses_setting"] == "succeeded"


def test_a_comment_in_a_run_path_class_keeps_its_nodes_cached(tmp_path: Path) -> None:
    folder = _project(tmp_path / "proj")
    _run(folder)
    models = folder / "models.py"
    models.write_text(models.read_text().replace("    def predict", "    # doc\n    def predict"))
    assert set(_run(folder)[0].values()) == {"cached"}
