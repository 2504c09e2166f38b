"""Decided before a run starts anything: missing input files, and the nodes forced to run; and
what a node's parameters keep out of its key (:func:`warn_file_paths`, as the node is sent).

A resume repeats the ``--force`` of the run it resumes (:func:`resumed_force`): the forced nodes
that run (or an earlier resume of it) did not finish executing are forced again, so the cached
result the user told it to bypass is not taken instead; they continue from the checkpoint the
forced attempt saved (a forced run deletes a node's older checkpoint as the node starts).

With a shared store, a literal parameter holding an absolute path outside the workflow's root
keeps the node's key specific to this machine (paths inside the root are keyed relative to
it): :func:`warn_machine_paths` says so once per node and parameter, in each process.

A ``File`` or ``Directory`` parameter is hashed by its content when its node is keyed. For a
node that reads no other node's output, nothing in the run can create the path, so a missing
one fails that node first, naming the node and the path, and nothing else starts (unless the
run keeps going after failures). A node downstream of others is checked when it is keyed, as
before: an upstream node may be the one that writes the file.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..define._files import Directory, File, path_values
from ..define._spec import NodeSpec
from ..errors import DefinitionError, HashingError
from ..plan._graph import Graph, InputRef
from ..states import NodeStatus
from ._reads import path_texts

if TYPE_CHECKING:
    from ..journal import Journal

__all__ = [
    "file_paths",
    "forced_nodes",
    "missing_inputs",
    "resumed_force",
    "warn_file_paths",
    "warn_machine_paths",
]

log = logging.getLogger("etherealfabric")
_warned: set[tuple[str, str, str]] = set()  # (workflow, node, parameter) warned about
_warned_files: set[tuple[str, str]] = set()  # (node, parameter) warned about
#: what a path to a data file looks like: a folder separator or a file extension
_PATH_LIKE = re.compile(r"[/\\]|\.[A-Za-z0-9]{1,10}$")
#: the types of parameter holding no text (the exact types: a subclass may hold one)
_NO_TEXT = frozenset((int, float, bool, type(None), bytes, InputRef))


def warn_machine_paths(graph: Graph) -> list[str]:
    """Warn (once each) about absolute paths outside the root in literal parameters."""
    from ..hashing._paths import outside_root  # (a shared store's runs only)

    said = []
    for name in graph.order:
        spec = graph.specs[name]
        for param, value in spec.params.items():
            found = next(outside_root(value, spec.root), None)
            if found is None or (graph.workflow, name, param) in _warned:
                continue
            _warned.add((graph.workflow, name, param))
            said.append(name)
            log.warning(
                "node %r: parameter %r holds the absolute path %r, outside the workflow's root "
                "%s: the node's cache key depends on it, so teammates sharing the store re-run "
                "the node. Pass File(...) (keyed by content) or a path relative to the root.",
                name, param, found, spec.root,
            )  # fmt: skip
    return said


def warn_file_paths(spec: NodeSpec) -> None:
    """Warn (once per node and parameter) when a node about to run is given the path of an
    existing file as a ``str``: its key follows the text, not the file's content. The file is
    checked before each cache hit (run/_reads.py: an edit re-runs the node), but only against
    the last version, and not before the node runs; unless the node writes that file."""
    for param, found in file_paths(spec, skip=_warned_files):
        _warned_files.add((spec.name, param))
        log.warning(
            "node %r: parameter %r is the path %r of an existing file, given as a str: the "
            "node's cache key follows the text of the path, not the file's content (the file "
            "is checked before each cache hit, so an edit re-runs the node, but only the "
            "result of its last version is kept: going back to an earlier content runs it again). "
            "Pass File(%r) to key it by its content (or Directory(...) for a folder), or "
            "declare it in writes= if the node writes it.",
            spec.name, param, found, found,
        )  # fmt: skip


def file_paths(
    spec: NodeSpec, *, skip: set[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """(parameter, path) for each literal parameter of ``spec`` that holds, as a ``str``, the
    path of an existing file the node does not declare in ``writes=`` (its first such path)."""
    found = []
    for param, value in spec.params.items():
        if type(value) in _NO_TEXT or (skip is not None and (spec.name, param) in skip):
            continue  # (a number, an upstream output: no text; checked per node that runs)
        path = next(_existing_files(value, spec), None)
        if path is not None:
            found.append((param, path))
    return found


def _existing_files(value: Any, spec: NodeSpec) -> Iterator[str]:
    for text in path_texts(value):
        if 0 < len(text) <= 1024 and "\n" not in text and _PATH_LIKE.search(text):
            path = os.path.abspath(text)  # as the node opens it: from the current folder
            if os.path.isfile(path) and not _declared(path, spec):
                yield text


def _declared(path: str, spec: NodeSpec) -> bool:
    """Whether the node declares ``path`` (or a folder holding it) in ``writes=``."""
    if not spec.writes or spec.root is None:
        return False
    relative = os.path.relpath(path, spec.root).replace(os.sep, "/")
    return any(relative == w or (w.endswith("/") and relative.startswith(w)) for w in spec.writes)


def forced_nodes(graph: Graph, patterns: Sequence[str]) -> frozenset[str]:
    """The nodes ``patterns`` (names or globs) name, with all their descendants.

    A pattern that names no node is an error naming the closest node names.
    """
    forced: set[str] = set()
    for pattern in patterns:
        matched = fnmatch.filter(graph.order, pattern)
        if not matched:
            import difflib  # (only for a suggestion)

            close = difflib.get_close_matches(pattern, graph.order, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DefinitionError(
                f"--force {pattern!r} names no node of workflow {graph.workflow!r}{hint}; "
                f"its nodes: {', '.join(sorted(graph.order)) or 'none'}"
            )
        forced.update(matched)
    todo = list(forced)
    while todo:
        for child in graph.succs[todo.pop()]:
            if child not in forced:
                forced.add(child)
                todo.append(child)
    return frozenset(forced)


def resumed_force(
    graph: Graph, journal: Journal, previous: Mapping[str, Any], patterns: Sequence[str]
) -> frozenset[str]:
    """The nodes a resume of run ``previous``, started with ``--force patterns``, forces: those
    the patterns name and their descendants, but for the nodes that run, or the runs it
    resumed with the same patterns, executed to success (their results are the forced ones)."""
    import json

    from ..errors import JournalError

    done: set[str] = set()
    run: Mapping[str, Any] | None = previous
    seen: set[str] = set()
    while run is not None and run["id"] not in seen:
        seen.add(run["id"])
        try:
            recorded = json.loads(run.get("params") or "{}")
        except ValueError:
            break
        if not isinstance(recorded, dict) or list(recorded.get("force") or []) != list(patterns):
            break  # a run not forced so: what it executed is not a forced result
        done.update(
            row["node"]
            for row in journal.node_runs(run["id"])
            if row["status"] == NodeStatus.SUCCEEDED
        )
        parent = run.get("resumed_from")
        try:
            run = journal.get_run(parent) if parent else None
        except JournalError:  # (a run pruned since)
            run = None
    return forced_nodes(graph, patterns) - done


def check_serializer_names(graph: Graph) -> None:
    """A ``serializers=`` name no serializer has: an error naming the node and the output
    before anything runs (the worker would find it only after the node's work is done)."""
    known = None
    for name in graph.order:
        chosen = graph.specs[name].serializers
        if not chosen:
            continue
        if known is None:
            from ..store._serializers import default_registry

            known = default_registry.names()
        for output, serializer in chosen.items():
            if serializer not in known:
                import difflib  # (only for a suggestion)

                close = difflib.get_close_matches(serializer, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DefinitionError(
                    f"node {name!r} output {output!r}: unknown serializer {serializer!r} (in "
                    f"serializers=); {hint}known serializers: {', '.join(known)}; register "
                    "your own with register_serializer(...) before the run",
                    nodes=(name,),
                )


def missing_inputs(graph: Graph) -> dict[str, HashingError]:
    """The nodes of ``graph`` without upstream nodes whose ``File``/``Directory`` is not there."""
    missing: dict[str, HashingError] = {}
    for name in graph.order:
        if graph.preds[name]:
            continue
        for param, value in graph.specs[name].params.items():
            for path_value in path_values(value):
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
