"""What a run of plain values loads (issue 14): no optional package, no process machinery.

``import etherealfabric`` and a whole ``execute`` (cold, then warm, then warm again in a new
process) of a workflow whose values are plain Python must not import an optional package
(pandas, pyarrow, numpy, dask, celery...: every package of ``pyproject.toml``'s extras), nor
``sqlite_utils`` (which imports pandas when it is installed), nor ``multiprocessing`` (the
process backend's), nor ``importlib.metadata`` (package versions are read only for a node that
uses a package), nor the engine's map machinery, shared-store collection or web-UI queries
(nothing is mapped, shared or browsed). Each check runs in a
fresh interpreter (this test process has them all loaded), and counts what was imported after
its start-up (site hooks may load some).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# distributions whose import name differs from their name
IMPORT_NAMES = {"scikit-learn": "sklearn", "prometheus-client": "prometheus_client"}
#: ...nor the scheduler's map machinery (a graph without mapped nodes: ``run/_nomaps.py``)
NEVER_IN_A_PLAIN_RUN = (
    "sqlite_utils",
    "multiprocessing",
    "importlib.metadata",
    "pickle",  # (plain values are JSON; the pickle serializer imports it when used)
    "difflib",  # (only for "did you mean" in error messages)
    # the engine's own parts a run without maps, shared store or web UI does not use
    "etherealfabric.run._mapping",
    "etherealfabric.run._mapstate",
    "etherealfabric.run._mapreport",
    "etherealfabric.store._sharedgc",
    "etherealfabric.journal._browse",
    "etherealfabric.store._layered",
    "etherealfabric.store._objectstore",
    "etherealfabric.store._signing",
    "etherealfabric.store._trust",
)


def optional_packages() -> list[str]:
    """The import names of every package the extras of pyproject.toml add."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = set()
    for group, requirements in extras.items():
        if group in ("test", "dev"):  # tools (pytest, mypy...), not what users' runs could load
            continue
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            if name is None or name.group(0) == "etherealfabric":
                continue
            dist = name.group(0).lower()
            names.add(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return sorted(names)


PROGRAM = r"""
import json, sys
at_start = set(sys.modules)  # what the interpreter's start-up (site hooks...) loaded
import etherealfabric
after_import = sorted(set(sys.modules) - at_start)
from etherealfabric import Workflow, node

@node
def leaf(i):
    return {"n": i, "text": "x" * 100}

@node
def step(x):
    return {"n": x["n"] + 1, "text": x["text"]}

@node
def gather(xs):
    return sum(x["n"] for x in xs)

def build():
    with Workflow("light") as wf:
        x = leaf(0)
        steps = []
        for _ in range(10):
            x = step(x)
            steps.append(x)
        gather(steps)
    return wf

first, second = build().execute(), build().execute()
print(json.dumps({"executed": first.executed, "cached": second.cached,
                  "after_import": after_import, "after_runs": sorted(set(sys.modules) - at_start)}))
"""


def _run(home: Path) -> dict[str, object]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home), "ETHEREALFABRIC_LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _loaded(modules: object, names: list[str]) -> list[str]:
    assert isinstance(modules, list)
    return sorted(
        name for name in names if any(m == name or m.startswith(name + ".") for m in modules)
    )


def test_the_extras_are_known() -> None:
    names = optional_packages()
    for expected in ("numpy", "pandas", "pyarrow", "polars", "dask", "celery", "s3fs"):
        assert expected in names


def test_import_and_whole_runs_of_plain_values_load_no_optional_package(tmp_path: Path) -> None:
    avoided = [*optional_packages(), *NEVER_IN_A_PLAIN_RUN]
    home = tmp_path / "home"
    cold = _run(home)  # a new home: the journal is created, 12 nodes run, then all cached
    warm = _run(home)  # a new process on the same home: everything cached
    assert (cold["executed"], cold["cached"], warm["executed"], warm["cached"]) == (12, 12, 0, 12)
    for report in (cold, warm):
        assert _loaded(report["after_import"], avoided) == []
        assert _loaded(report["after_runs"], avoided) == []


TOPS = ("numpy", "xxhash", "networkx", "yaml", "sklearn", "jinja2", "sqlite_utils", "pandas")


def test_package_versions_read_beside_a_module_are_importlib_metadatas() -> None:
    """A node using numpy keys numpy's version; reading it from the ``.dist-info`` folder beside
    the module (no importlib.metadata, about 20 ms less on a first run) gives what
    importlib.metadata gives, or nothing (then importlib.metadata is asked)."""
    from etherealfabric.hashing import _packages

    answered = []
    for top in TOPS:
        importlib.import_module(top)
        fast = _packages._beside_module(top)
        _packages.distribution_of.cache_clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_packages, "_beside_module", lambda top: None)
            slow = _packages.distribution_of(top)
        _packages.distribution_of.cache_clear()
        assert fast in (None, slow), top
        if fast is not None:
            answered.append(top)
    assert "numpy" in answered  # installed by pip: its .dist-info is beside it
    assert _packages._beside_module("not_a_module_here") is None


def test_package_versions_of_modules_not_imported_need_no_importlib_metadata() -> None:
    """A node whose ``import numpy`` sits in a branch that never ran: the version is read
    beside the module the import system would load, in a fresh interpreter, without importing
    numpy or importlib.metadata, and it is importlib.metadata's answer."""
    script = (
        "import json, sys\n"
        "from etherealfabric.hashing import _packages\n"
        "fast = {t: _packages._beside_module(t) for t in ('numpy', 'pandas')}\n"
        "loaded = [m for m in ('numpy', 'pandas', 'importlib.metadata') if m in sys.modules]\n"
        "from importlib import metadata\n"
        "slow = {t: [metadata.distribution(t).metadata['Name'], metadata.version(t)]\n"
        "        for t in fast}\n"
        "print(json.dumps({'fast': fast, 'slow': slow, 'loaded': loaded}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(done.stdout)
    assert report["loaded"] == []
    assert report["fast"] == report["slow"]
