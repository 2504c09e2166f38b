"""Checks made before a run starts anything: input files and folders that do not exist.

A ``File`` or ``Directory`` parameter is hashed by its content when its node is keyed. For a
node that reads no other node's output, nothing in the run can create the path, so a missing
one fails that node first, naming the node and the path, and nothing else starts (unless the
run keeps going after failures). A node downstream of others is checked when it is keyed, as
before: an upstream node may be the one that writes the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..define._files import Directory, File
from ..errors import HashingError
from ..plan._graph import Graph

__all__ = ["missing_inputs"]


def missing_inputs(graph: Graph) -> dict[str, HashingError]:
    """The nodes of ``graph`` without upstream nodes whose ``File``/``Directory`` is not there."""
    missing: dict[str, HashingError] = {}
    for name in graph.order:
        if graph.preds[name]:
            continue
        for param, value in graph.specs[name].params.items():
            for path_value in _paths(value):
                problem = _problem(path_value)
                if problem:
                    missing[name] = HashingError(
                        f"node {name!r}: parameter {param!r}: {problem} (inputs are hashed by "
                        "content: create it before the run, or fix the path)"
                    )
                    break
            if name in missing:
                break
    return missing


def _problem(value: File | Directory) -> str:
    if isinstance(value, Directory):
        return "" if os.path.isdir(value.path) else f"input folder {value.path} does not exist"
    return "" if os.path.isfile(value.path) else f"input file {value.path} does not exist"


def _paths(value: Any, depth: int = 0) -> Iterator[File | Directory]:
    """The File and Directory values inside ``value`` (containers followed, a few levels)."""
    if isinstance(value, (File, Directory)):
        yield value
    elif depth < 8 and isinstance(value, Mapping):
        for item in value.values():
            yield from _paths(item, depth + 1)
    elif depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _paths(item, depth + 1)
