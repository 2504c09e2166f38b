"""Source blocks found without tokenizing (hashing/_blocks.py) are the ones ``inspect`` finds.

A code digest is taken from the lines of a definition; finding them without :mod:`tokenize`
saves its first compile in a process, and must never change which lines (so which digest).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from etherealfabric.hashing import _blocks
from etherealfabric.hashing._astform import canonical_text
from etherealfabric.hashing._source import _parse

CASES = {
    "plain": "def f(x):\n    return x\n\ny = 1\n",
    "decorated": "@deco\n@other(1,\n  2)\ndef f(x):\n    return x\nz = 2\n",
    "one-liner": "def f(): return 1\ng = 2\n",
    "comments after": "def f():\n    return 1\n    # kept by inspect\n# col 0\n\nx = 1\n",
    "comment at col 0 inside": "def f():\n    a = 1\n# between\n    return a\nx = 1\n",
    "nested": "    def f(self):\n        def g():\n            return 1\n        return g\n"
    "    def h(self):\n        pass\n",
    "string less indented": '    def f():\n        return """\nnot indented\n"""\n    x = 1\n',
    "brackets less indented": "    def f():\n        return (1,\n2)\n    y = 1\n",
    "header over lines": "def f(\na,\n):\n    return a\n",
    "continuation": "def f():\n    return 1 + \\\n2\nx = 3\n",
    "async": "async def f():\n    await g()\nx = 1\n",
    "class": "@dataclass\nclass A(B):\n    x: int = 1\n\n    def m(self):\n        return 2\n\n"
    "class C:\n    pass\n",
    "tabs": "def f():\n\treturn 1\nx = 2\n",
    "lambda line": "f = node(lambda x: x + 1)\ng = 2\n",
    "def then lambda": "def f(): return lambda x: x\ny = 1\n",
    "end of file": "def f():\n    return 1",
    "trailing string statement": 'def f():\n    x = 1\n    "trailing"\n\nz = 1\n',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_block_and_statements_as_inspect(name: str) -> None:
    lines = CASES[name].splitlines(keepends=True)
    expected = inspect.getblock(lines)
    found = _blocks.getblock(lines)
    # inspect may keep comments or blank lines after the block: nothing a parse sees
    assert found == expected[: len(found)]
    assert all(not ln.strip() or ln.lstrip().startswith("#") for ln in expected[len(found) :])
    try:
        want = _parse("".join(expected))
    except SyntaxError:
        return
    got = _parse("".join(found))
    assert canonical_text(got[0]) == canonical_text(want[0])
    assert got[1:] == want[1:]


def test_common_definitions_take_the_short_way() -> None:
    """Plain, decorated, nested and class blocks are found without inspect's tokenizer."""
    for name in ("plain", "decorated", "one-liner", "nested", "async", "class", "end of file"):
        assert _blocks._simple_block(CASES[name].splitlines(keepends=True)) is not None, name
    for name in ("tabs", "lambda line", "brackets less indented", "header over lines"):
        assert _blocks._simple_block(CASES[name].splitlines(keepends=True)) is None, name


def test_a_run_compiles_no_tokenizer(tmp_path: Path) -> None:
    """A run of nodes with source reads their lines without compiling tokenize's pattern
    (10 to 20 ms of a process's first run)."""
    script = tmp_path / "flow.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, tokenize
            from etherealfabric import Workflow, node

            @node
            def item(i):
                return i

            class Helper:
                @staticmethod
                def twice(x):
                    return 2 * x

            @node
            def sink(xs):
                return Helper.twice(len(xs))

            with Workflow("blocks") as wf:
                sink([item(i) for i in range(3)])
            results = wf.execute(home=HOME, log_level="WARNING")
            print(json.dumps({"executed": results.executed,
                              "compiled": tokenize._compile.cache_info().currsize}))
            """
        ).replace("HOME", repr(str(tmp_path / "home")))
    )
    env = {k: v for k, v in os.environ.items() if k != "ETHEREALFABRIC_HOME"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures == {"executed": 4, "compiled": 0}
