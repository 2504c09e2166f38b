"""The same source gives the same code fingerprint on every Python from 3.10 on (issue 16).

Teammates on different minor versions share a store, so a fingerprint must not depend on the
interpreter: ``ast.dump`` and bytecode differ between versions, the canonical form must not.
For each other Python installed on the machine (``python3.10`` ... ``python3.13`` on PATH, in
pyenv's versions or in /usr/bin), the engine's core dependencies are installed for it
into a cache folder (``pip install --target``, once), and the fingerprints of the corpus in
``tests/programs/fingerprint_corpus.py`` computed there must equal the ones computed here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from etherealfabric.errors import FingerprintWarning
from etherealfabric.hashing._fingerprint import code_fingerprint

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
CORE = ["networkx", "sqlite-utils", "xxhash", "cloudpickle", "tenacity", "click", "rich", "pyyaml"]
VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "etherealfabric-tests"

SCRIPT = """
import json, sys
sys.path.insert(0, {programs!r})
import fingerprint_corpus as corpus
from etherealfabric.hashing._fingerprint import code_fingerprint
print(json.dumps({{getattr(f, "__qualname__", repr(f)): code_fingerprint(f).digest
                  for f in corpus.CORPUS}}))
"""


def _fingerprints_here() -> dict[str, str]:
    sys.path.insert(0, str(TESTS / "programs"))
    try:
        import fingerprint_corpus as corpus
    finally:
        sys.path.remove(str(TESTS / "programs"))
    with warnings.catch_warnings():  # global_statement assigns a global on purpose
        warnings.simplefilter("ignore", FingerprintWarning)
        return {
            getattr(f, "__qualname__", repr(f)): code_fingerprint(f).digest for f in corpus.CORPUS
        }


def _candidates(version: str) -> list[str]:
    """Executables that may be Python ``version``: on PATH, in pyenv's versions, in /usr/bin."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [shutil.which(f"python{version}")]
    found += [str(p) for p in sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}"))]
    found.append(f"/usr/bin/python{version}")
    return [exe for exe in found if exe and os.access(exe, os.X_OK)]


def _other_pythons() -> list[tuple[str, str]]:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = []
    for version in VERSIONS:
        if version == here:
            continue
        for exe in _candidates(version):
            probe = subprocess.run([exe, "--version"], capture_output=True, text=True)
            if probe.returncode == 0:  # a pyenv shim of a version not installed fails
                found.append((version, exe))
                break
    return found


def _dependencies_for(version: str, exe: str) -> Path:
    target = CACHE / f"py{version}-core"
    done = target / ".complete"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        extra = ["tomli"] if version == "3.10" else []
        install = subprocess.run(
            [exe, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(target), *CORE, *extra],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if install.returncode != 0:
            pytest.fail(f"cannot install the core dependencies for Python {version}:\n"
                        f"{install.stderr[-2000:]}")  # fmt: skip
        done.touch()
    return target


def test_the_corpus_is_fingerprinted_here() -> None:
    digests = _fingerprints_here()
    assert len(digests) >= 20 and len(set(digests.values())) == len(digests)  # all distinct


@pytest.mark.parametrize(
    ("version", "exe"),
    _other_pythons()
    or [pytest.param("none", "", marks=pytest.mark.skip(reason="no other Python is installed"))],
)
def test_other_pythons_give_the_same_fingerprints(version: str, exe: str) -> None:
    target = _dependencies_for(version, exe)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(target)])
    env["ETHEREALFABRIC_PACKAGE_VERSIONS"] = "off"
    done = subprocess.run(
        [exe, "-c", SCRIPT.format(programs=str(TESTS / "programs"))],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    ours = _fingerprints_here()
    differ = sorted(name for name in ours if theirs.get(name) != ours[name])
    assert not differ, f"Python {version} fingerprints differ for {differ}"
