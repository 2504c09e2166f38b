"""The code behind a pickled value is part of the keys that read it (``hashing/_pickled.py``).

Pickle writes importable classes and functions by reference, so an output that is an
instance of a user class pickles to the same bytes after the class's method was edited, and a
library object holding a user function does too. These tests edit the class, the function
or an installed package's version and check that what depends on it re-runs with the right
value, in one process (``Workflow.execute``, the modules imported again from a new folder) and
through the command line in fresh processes (where classes are found again by name).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from etherealfabric.hashing._encoder import UnstableHashWarning
from etherealfabric.hashing._pickled import output_refs, pickle_with_refs
from etherealfabric.hashing._values import hash_value

MODELS = """
class Model:
    def __init__(self, k):
        self.k = k

    def predict(self, x):
        return self.k * x


def scale(x):
    return x * 10


UNRELATED = 1
"""

FLOW = """
from etherealfabric import Workflow, node
import pk_models


@node
def fit(k):
    return pk_models.Model(k)


@node
def predict(model, x):
    return model.predict(x)


@node
def pick(k):
    return pk_models.scale if k else None


@node
def apply(f, x):
    return f(x)


@node
def make(k):
    return pk_models.Model(k)


@node
def total(models):
    return sum(m.predict(1) for m in models)


with Workflow("pickled") as workflow:
    predict(fit(2), 10)
    apply(pick(1), 2)
    total(make.map([1, 2]))
"""

TOPS = ("pk_models", "pk_flow", "pk_features")


class Project:
    """Writes each version of the files into a new folder and imports ``pk_flow`` from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.folder: str | None = None

    def load(self, **files: str) -> ModuleType:
        self.count += 1
        folder = self.root / f"v{self.count}"
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(textwrap.dedent(text))
        self.forget()
        self.folder = str(folder)
        sys.path.insert(0, self.folder)
        importlib.invalidate_caches()
        return importlib.import_module("pk_flow")

    def forget(self) -> None:
        for name in [n for n in sys.modules if n.split(".")[0] in TOPS]:
            del sys.modules[name]
        if self.folder is not None:
            sys.path.remove(self.folder)
            self.folder = None


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "project")
    yield p
    p.forget()


def _run(project: Project, models: str, home: Path) -> Any:
    flow = project.load(**{"pk_models.py": models, "pk_flow.py": FLOW})
    return flow.workflow.execute(home=str(home))


def test_editing_a_class_reruns_the_consumers_of_its_instances(
    project: Project, home: Path
) -> None:
    first = _run(project, MODELS, home)
    assert (first["predict"]["result"], first["apply"]["result"], first["total"]["result"]) == (
        20,
        20,
        3,
    )
    again = _run(project, MODELS.replace("UNRELATED = 1", "UNRELATED = 2"), home)
    assert again.executed == 0, "an edit no node reaches re-runs nothing"

    edited = _run(project, MODELS.replace("return self.k * x", "return self.k * x + 1"), home)
    assert (
        edited["predict"]["result"] == 21
    )  # was a stale 20: fit's output pickles to the same bytes
    assert edited["total"]["result"] == 5  # the map's items are instances too
    assert edited.statuses["predict"] == "succeeded"
    assert edited.statuses["apply"] == "cached"  # scale did not change

    scaled = _run(
        project,
        MODELS.replace("return self.k * x", "return self.k * x + 1").replace("x * 10", "x * 11"),
        home,
    )
    assert scaled["apply"]["result"] == 22  # a returned function, by reference in its pickle
    assert scaled.statuses["predict"] == "cached"


def test_a_pickled_parameter_follows_the_user_code_it_holds(project: Project) -> None:
    """A library object with no hasher (cloudpickled) holding a user class and function."""
    project.load(**{"pk_models.py": MODELS, "pk_flow.py": "import pk_models\n"})
    models = sys.modules["pk_models"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnstableHashWarning)
        before = hash_value(SimpleNamespace(f=models.scale, m=models.Model(2)))
        plain = hash_value(SimpleNamespace(a=1, b=[1, 2]))
    _, names = pickle_with_refs(SimpleNamespace(f=models.scale, m=models.Model(2)))
    assert names == ["pk_models:Model", "pk_models:scale"]

    project.load(**{"pk_models.py": MODELS.replace("x * 10", "x * 11"), "pk_flow.py": "x = 1\n"})
    models = sys.modules.get("pk_models") or importlib.import_module("pk_models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnstableHashWarning)
        after = hash_value(SimpleNamespace(f=models.scale, m=models.Model(2)))
        assert hash_value(SimpleNamespace(a=1, b=[1, 2])) == plain
    assert after != before


def test_outputs_are_pickled_once_to_the_same_bytes_and_noted(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    import cloudpickle

    from etherealfabric.hashing import _pickled
    from etherealfabric.store._serializers import get_serializer

    project.load(**{"pk_models.py": MODELS, "pk_flow.py": "import pk_models\n"})
    models = sys.modules["pk_models"]
    value = {"m": models.Model(2), "f": models.scale, "n": list(range(100))}
    monkeypatch.setattr(_pickled, "output_refs", lambda v: pytest.fail("pickled twice"))
    for name, dumps in (("pickle", pickle.dumps), ("cloudpickle", cloudpickle.dumps)):
        buffer = io.BytesIO()
        with _pickled.noting():
            get_serializer(name).dump(value, buffer)
            names = _pickled.record_code(value, name)
        assert buffer.getvalue() == dumps(value, protocol=5)
        assert names == ["pk_models:Model", "pk_models:scale"]


REBUILT = """
import functools

SCALE = 2


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)

    return wrapper


class Base:
    def __init__(self, v):
        self.v = v


class Box(Base):
    twice = lambda self: self.v * SCALE  # noqa: E731

    def __init__(self, v):
        super().__init__(v)

    @logged
    def get(self):
        return self.v

    @staticmethod
    def unit():
        return Box(1)
"""


def test_a_class_keeps_its_fingerprint_when_unpickling_sets_its_methods_again(
    project: Project,
) -> None:
    import cloudpickle

    from etherealfabric.hashing._fingerprint import code_fingerprint, recheck_bindings

    project.load(**{"pk_models.py": REBUILT, "pk_flow.py": "import pk_models\n"})
    models = sys.modules["pk_models"]
    box = models.Box
    methods = ("__init__", "twice", "get", "unit")
    before = [code_fingerprint(box), *(code_fingerprint(getattr(box, m)) for m in methods)]
    assert {fp.source for fp in before} == {"ast"}
    cloudpickle.register_pickle_by_value(models)
    try:
        copy = cloudpickle.loads(cloudpickle.dumps(models.Box(3)))
    finally:
        cloudpickle.unregister_pickle_by_value(models)
    assert type(copy) is models.Box  # the class itself, its methods set again as copies
    for method in methods:  # what a pickle's code names resolve to from now on
        assert getattr(box, method).__code__.co_filename == "<dynamic-code>", method
    recheck_bindings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not "no source for pk_models.Box.__init__"
        after = [code_fingerprint(box), *(code_fingerprint(getattr(box, m)) for m in methods)]
    for old, new in zip(before, after, strict=True):
        assert (new.digest, new.parts, new.source) == (old.digest, old.parts, "ast")
        assert new.where == old.where  # the file they were written in


def test_plain_values_name_no_code() -> None:
    import numpy as np

    assert output_refs([1, "a", 2.0, None, {"k": (1, 2)}]) == []
    assert output_refs((np.arange(10), {1, 2})) == ["numpy"]  # a library's, by its version


# -- through the command line, in fresh processes ----------------------------------------------


class Cli:
    def __init__(self, root: Path, **files: str) -> None:
        self.root = root
        for name, text in files.items():
            self.write(name, text)

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))

    def cli(self, *args: str, pythonpath: str = "") -> str:
        paths = [p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p]
        env = {
            **os.environ,
            "ETHEREALFABRIC_HOME": str(self.root / "home"),
            "PYTHONPATH": os.pathsep.join(paths),
        }
        out = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    def run(self, *args: str, pythonpath: str = "") -> dict[str, str]:
        report = json.loads(self.cli("run", "flow.py", "--json", *args, pythonpath=pythonpath))
        assert report["status"] == "succeeded"
        return dict(report["nodes"])

    def value(self, node: str, pythonpath: str = "") -> Any:
        return json.loads(self.cli("cat", "latest", node, "--json", pythonpath=pythonpath))


def test_a_class_edit_reruns_its_consumers_in_fresh_processes(tmp_path: Path) -> None:
    p = Cli(tmp_path, **{"pk_models.py": MODELS, "flow.py": FLOW})
    assert set(p.run().values()) == {"succeeded"}
    assert p.value("predict") == 20
    p.edit("pk_models.py", "UNRELATED = 1", "UNRELATED = 2")
    assert "succeeded" not in p.run().values()  # the same keys in a new process

    audit = p.cli("plan", "flow.py", "--keys", "predict")
    assert "pk_models.Model" in audit and "(in model, pickled)" in audit

    p.edit("pk_models.py", "return self.k * x", "return self.k * x + 1")
    nodes = p.run("--backend", "processes")
    assert nodes["predict"] == nodes["total"] == "succeeded"
    assert nodes["apply"] == "cached"
    assert (p.value("predict"), p.value("total")) == (21, 5)
    assert "succeeded" not in p.run().values()


FEATURES = """
def add_features(x):
    return x + 1
"""

SKLEARN_FLOW = """
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from etherealfabric import Workflow, node
import pk_features


@node
def fit(pipeline):
    return pipeline.fit_transform(np.arange(3.0).reshape(-1, 1)).ravel().tolist()


with Workflow("literal") as workflow:
    fit(make_pipeline(FunctionTransformer(pk_features.add_features)))
"""


def test_a_library_object_argument_follows_the_user_function_it_holds(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    p = Cli(tmp_path, **{"pk_features.py": FEATURES, "flow.py": SKLEARN_FLOW})
    assert p.run() == {"fit": "succeeded"}
    assert p.value("fit") == [1.0, 2.0, 3.0]
    p.edit("pk_features.py", "return x + 1", "return x + 1  # same")
    assert p.run() == {"fit": "cached"}
    p.edit("pk_features.py", "return x + 1", "return x + 2")
    assert p.run() == {"fit": "succeeded"}  # was cached: the pipeline pickles by reference
    assert p.value("fit") == [2.0, 3.0, 4.0]
    audit = p.cli("plan", "flow.py", "--keys", "fit")
    assert "pk_features.add_features" in audit and "(in pipeline, pickled)" in audit
    assert "scikit-learn" in audit


def _tinylib(where: Path, version: str) -> str:
    """A fake installed package ``tinylib`` at ``version`` (a module and its dist-info)."""
    (where / "tinylib").mkdir(parents=True)
    factor = version.partition(".")[0]
    (where / "tinylib" / "__init__.py").write_text(
        f"__version__ = {version!r}\n\n\nclass Scaler:\n    def apply(self, x):\n"
        f"        return x * {factor}\n"
    )
    info = where / f"tinylib-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tinylib\nVersion: {version}\n")
    (info / "top_level.txt").write_text("tinylib\n")
    (info / "RECORD").write_text("tinylib/__init__.py,,\n")
    return str(where)


TINY_FLOW = """
from etherealfabric import Workflow, node
import pk_maker


@node
def make(k):
    return pk_maker.make(k)


@node
def use(scaler, x):
    return scaler.apply(x)


with Workflow("tiny") as workflow:
    use(make(1), 10)
"""

MAKER = """
def make(k):
    import tinylib
    return tinylib.Scaler()
"""


@pytest.mark.parametrize("mode", ["full", "off"])
def test_a_package_upgrade_reruns_the_consumers_of_its_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_PACKAGE_VERSIONS", mode)
    v1, v2 = _tinylib(tmp_path / "v1", "1.0"), _tinylib(tmp_path / "v2", "2.0")
    p = Cli(tmp_path / "project", **{"pk_maker.py": MAKER, "flow.py": TINY_FLOW})
    assert p.run(pythonpath=v1) == {"make": "succeeded", "use": "succeeded"}
    assert p.value("use", pythonpath=v1) == 10
    time.sleep(0.01)
    nodes = p.run(pythonpath=v2)
    if mode == "off":  # packages are not keyed at all: nothing re-runs (as documented)
        assert nodes == {"make": "cached", "use": "cached"}
        return
    assert nodes["use"] == "succeeded"  # was cached: Scaler is pickled by reference
    assert p.value("use", pythonpath=v2) == 20
    why = p.cli("explain", "latest", "use", pythonpath=v2)
    assert "code behind input scaler package tinylib: 1.0 → 2.0" in why
    assert p.run(pythonpath=v2) == {"make": "cached", "use": "cached"}


@pytest.mark.parametrize("bad", ["models:Model", [1], {"a": "b"}, [["x"]]])
def test_a_stored_record_with_a_malformed_code_list_is_refused(bad: object) -> None:
    from etherealfabric.store._signing import record_problem

    out = {"digest": "ab" * 16, "serializer": "cloudpickle", "size": 3, "inline": True}
    record = {"node": "n", "created_at": 1.0, "outputs": {"result": out}}
    assert record_problem(record) == ""
    out["code"] = ["models:Model", "sklearn"]
    assert record_problem(record) == ""
    out["code"] = bad
    assert "'code'" in record_problem(record)


BOX_FLOW = """
import os
import sys
from etherealfabric import Workflow, node

SCALE = 2


def double(v):
    return v * SCALE


class Base:
    def __init__(self, v):
        self.v = v


class Box(Base):
    def __init__(self, v):
        super().__init__(double(v))

    def __eq__(self, other):
        return isinstance(other, Box) and other.v == self.v


@node
def make(n):
    return list(range(n))


@node
def boxed(xs):
    return Box(sum(xs))


@node
def use1(b):
    return b.v + 1


@node
def use2(b, x):
    return b.v + x


with Workflow("box", params={"n": 10}) as wf:
    b = boxed(make(wf.params.n))
    use2(b, use1(b))

if __name__ == "__main__":
    results = wf.execute(backend=sys.argv[1])
    print("executed", results.executed)
"""


def _fresh(p: Cli, *args: str) -> str:
    """``python ARGS`` in a fresh process, which must not warn that a code has no source."""
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(p.root / "home")}
    out = subprocess.run(
        [sys.executable, *args],
        cwd=p.root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "no source" not in out.stderr, out.stderr
    return out.stdout


#: the ways a workflow file runs, and what each prints when nothing ran
_CLI = ("-m", "etherealfabric", "run", "flow.py", "--json")
_RUNS = {
    "cli-threads": [*_CLI],
    "cli-processes": [*_CLI, "--backend", "processes"],
    "script-threads": ["flow.py", "threads"],
    "script-processes": ["flow.py", "processes"],
}


def _executed(p: Cli, how: str) -> int:
    out = _fresh(p, *_RUNS[how])
    if how.startswith("cli"):
        return list(json.loads(out)["nodes"].values()).count("succeeded")
    word, count = out.split()
    assert word == "executed"
    return int(count)


def _inputs(p: Cli) -> dict[str, dict[str, Any]]:
    """Each node of the latest run: its inputs and the code behind them (when it ran)."""
    shown = json.loads(p.cli("show", "latest", "--json"))["nodes"]
    return {n["node"]: json.loads(n["components"]) for n in shown if n["components"]}


def test_a_consumer_of_a_script_class_instance_has_one_key_whatever_was_loaded_first(
    tmp_path: Path,
) -> None:
    # Box is defined in the workflow file, which cloudpickle pickles by value: loading
    # boxed's output in the run's own process (use1 runs) sets Box's methods again, as copies
    # compiled from the pickle; use2, keyed after that, must see the same code as use1 did
    p = Cli(tmp_path, **{"flow.py": BOX_FLOW})
    assert _executed(p, "cli-threads") == 4
    ran = _inputs(p)
    assert ran["use1"]["inputs"]["b"] == ran["use2"]["inputs"]["b"]
    assert ran["use1"]["input_code"] == ran["use2"]["input_code"]
    assert _executed(p, "cli-threads") == 0  # a new process keys each one as the first did
    assert _executed(p, "cli-threads") == 0
    for how in ("cli-processes", "script-threads", "script-processes"):
        assert _executed(p, how) == 0, how


@pytest.mark.parametrize("first", ["script-threads", "script-processes", "cli-processes"])
def test_a_script_class_is_named_alike_however_its_producer_ran(tmp_path: Path, first: str) -> None:
    # ``python flow.py`` defines Box in __main__, a process-pool worker of the CLI in a module
    # it has not imported: each names it as ``etherealfabric run`` imports the file
    p = Cli(tmp_path, **{"flow.py": BOX_FLOW})
    assert _executed(p, first) == 4
    if first.startswith("cli"):
        code = _inputs(p)["use1"]["input_code"]["b"]
        assert {"flow.Box", "flow.Base", "flow.Box.__init__"} <= set(code), code
        assert not any(name.startswith("package:") for name in code), code
    for how in _RUNS:
        assert _executed(p, how) == 0, how
