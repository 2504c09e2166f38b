"""The lines of one ``def`` or ``class`` block, as ``inspect.getblock`` finds them, without
tokenizing.

``inspect.getblock`` runs :mod:`tokenize`, whose first use in a process compiles its large
regular expression (10 to 20 milliseconds, a good part of a short run's fixed cost). For the
common case (a ``def`` or ``class``, maybe decorated, indented with spaces) the block ends at
the first line after it that holds code and is indented no deeper than its first line: the
lines before it are the block if they parse as that one statement. Then they are cut where
the statement ends (``inspect`` may keep comments after it: nothing a parse sees). Anything
else (a lambda, tabs, a line inside brackets or a string that is indented less) is left to
``inspect.getblock``, so what is found is always what it finds, but for trailing comments.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

__all__ = ["getsourcelines"]

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_STARTS = ("def ", "def\t", "async ", "class ", "class\t", "class(", "@")


def getsourcelines(obj: Any) -> tuple[list[str], int]:
    """``inspect.getsourcelines(obj)`` for a function, code object or class."""
    obj = inspect.unwrap(obj)
    lines, lnum = inspect.findsource(obj)
    return getblock(lines[lnum:]), lnum + 1


def getblock(lines: list[str]) -> list[str]:
    """``inspect.getblock(lines)``: the block of code at the top of ``lines``."""
    found = _simple_block(lines)
    return found if found is not None else inspect.getblock(lines)


def _simple_block(lines: list[str]) -> list[str] | None:
    if not lines:
        return None
    first = lines[0]
    body = first.lstrip(" ")
    if not body.startswith(_STARTS):
        return None
    indent = len(first) - len(body)
    header = not body.startswith("@")  # past the decorators, at the def or class line
    end = len(lines)
    for i in range(1, len(lines)):
        line = lines[i]
        text = line.lstrip(" ")
        if text[:1] in ("\t", "\f"):
            return None  # tabs count as the tokenizer counts them: leave it to inspect
        if not text.strip() or text.startswith("#") or len(line) - len(text) > indent:
            continue
        if header:
            end = i
            break
        header = text.startswith(_STARTS[:-1])
    try:
        tree = ast.parse(textwrap.dedent("".join(lines[:end])))
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], _DEFS):
        return None
    last = tree.body[0].end_lineno
    return lines[:last] if last else None
