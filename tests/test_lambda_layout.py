"""Lambdas in a global spread over lines, as a formatter writes them, keep their keys.

A lambda on a line of a longer statement (``"b": lambda x: x * 2,`` in a dict written one item
a line) has no source ``inspect`` can parse on its own: before the fix its fingerprint fell
back to bytecode, so merely reformatting the dict re-ran every node using it. Each layout is
fingerprinted in its own process, as a new run would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ONE_LINE = 'FUNCS = {"a": lambda x: x + 1, "b": lambda x: x * 2}\n'
SPREAD = 'FUNCS = {\n    "a": lambda x: x + 1,  # one\n    "b": lambda x: (x * 2),\n}\n'
EDITED = 'FUNCS = {\n    "a": lambda x: x + 1,\n    "b": lambda x: x * 3,\n}\n'

PROGRAM = """\
import warnings
warnings.simplefilter("error")
import helpers_lambdas
from etherealfabric import node
from etherealfabric.hashing._fingerprint import code_fingerprint


@node
def uses(x=3):
    return [f(x) for f in helpers_lambdas.FUNCS.values()]


print(code_fingerprint(uses).digest)
"""


def _digest(folder: Path, helpers: str) -> str:
    folder.mkdir()
    (folder / "helpers_lambdas.py").write_text("import os\n\n" + helpers)
    (folder / "prog.py").write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "prog.py"], cwd=folder, env=env, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # no FingerprintWarning (bytecode) either
    return done.stdout.strip()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="lambda positions need Python 3.11+")
def test_reformatting_a_dict_of_lambdas_keeps_the_key(tmp_path: Path) -> None:
    one_line = _digest(tmp_path / "a", ONE_LINE)
    assert _digest(tmp_path / "b", SPREAD) == one_line
    assert _digest(tmp_path / "c", EDITED) != one_line
