"""Value hashers for lazy readers: polars ``LazyFrame`` and pyarrow ``FileSystemDataset``.

A lazy reader holds a query over files, not their data: two readers of the same paths have the
same bytes however the files changed. Their digest covers the content of every file they would
read (:func:`etherealfabric.hashing._files.file_digest`, with the encoder's stat fast path), so
a consumer of a reader re-runs when the data it reads changed. The encodings::

    polars.LazyFrame <plan> n (source <path> <content>)...
        the plan is polars' binary serialization; the sources are the paths of its scans
        (from its JSON plan), globs expanded, a folder as every file below it
    arrow.FileSystemDataset type format-name schema partition n (<path> <content digest>)...
    arrow.UnionDataset n <dataset>...

A reader of a remote source (``s3://``, ``https://``...) or on a remote file system cannot be
hashed by content here: hashing it raises :class:`LazyReaderError`, which says to collect the
data (or return the path as a ``File``) instead. This module imports neither library.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import HashingError, a_or_an
from ._files import file_digest, tree_entries
from ._loaded import loaded

if TYPE_CHECKING:
    from ._encoder import Encoder, Handler

__all__ = [
    "LazyReaderError",
    "dataset_handlers",
    "lazyframe_handlers",
    "reader_paths",
    "scan_sources",
]

_GLOB = frozenset("*?[")


class LazyReaderError(HashingError):
    """A lazy reader whose data cannot be hashed by content (never a silent stale key)."""


def _refuse(what: str, source: str) -> LazyReaderError:
    return LazyReaderError(
        f"cannot hash {a_or_an(what)} that reads {source}: only local files can be hashed by content, "
        "and a lazy reader's own bytes do not change when its data does. collect() it (or "
        "read it into a table) before returning or passing it, or pass the path as a File"
    )


# -- polars ----------------------------------------------------------------------------------


def lazyframe_handlers(pl: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported polars module ``pl``, by type."""
    return {pl.LazyFrame: _enc_lazyframe}


def _walk_sources(node: object) -> Iterator[object]:
    """Every ``sources`` entry of a JSON plan, wherever it is nested."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key == "sources":
                    yield child
                else:
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def scan_sources(frame: Any) -> list[str]:
    """The paths a LazyFrame's scans name, in plan order (globs and folders not expanded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JSON format is deprecated, and still the only
        plan = json.loads(frame.serialize(format="json"))  # documented way to see the sources
    paths: list[str] = []
    for sources in _walk_sources(plan):
        if not isinstance(sources, dict) or "Paths" not in sources:
            continue  # in-memory buffers: their bytes are in the plan
        for path in sources["Paths"]:
            paths.append(path["inner"] if isinstance(path, dict) else str(path))
    return paths


def _expand(path: str) -> list[tuple[str, str]]:
    """(kind, path) of the local files a scan path stands for."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        raise _refuse("polars LazyFrame", path)
    if _GLOB & set(path):
        import glob  # (only for a scan of a pattern)

        return [("file", found) for found in sorted(glob.glob(path, recursive=True))]
    if os.path.isdir(path):
        return [("dir", path)]
    return [("file", path)]


def _enc_lazyframe(frame: Any, encoder: Encoder) -> None:
    encoder.tag("polars.LazyFrame")
    encoder.frame(frame.serialize())
    sources = [found for path in scan_sources(frame) for found in _expand(path)]
    encoder.integer(len(sources))
    for kind, path in sources:
        encoder.tag("source")
        encoder.text(path)
        if kind == "dir":
            _enc_tree(path, encoder)
        else:
            encoder.text(file_digest(path, file_cache=encoder.file_cache))


def _enc_tree(path: str, encoder: Encoder) -> None:
    entries = tree_entries(path, file_cache=encoder.file_cache)
    encoder.integer(len(entries))
    for kind, relative, digest in entries:
        encoder.text(kind)
        encoder.text(relative)
        encoder.text(digest)


# -- pyarrow ---------------------------------------------------------------------------------


def dataset_handlers(dataset: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported ``pyarrow.dataset`` module, by type."""
    return {dataset.FileSystemDataset: _enc_fs_dataset, dataset.UnionDataset: _enc_union}


def _enc_fs_dataset(value: Any, encoder: Encoder) -> None:
    fs = value.filesystem
    if type(fs).__name__ != "LocalFileSystem":
        raise _refuse("pyarrow Dataset", f"files on {a_or_an(type(fs).__name__)}")
    encoder.tag("arrow.FileSystemDataset")
    encoder.text(f"{type(value).__module__}.{type(value).__qualname__}")
    encoder.text(type(value.format).__name__)
    encoder.text(value.schema.to_string(show_schema_metadata=True))
    encoder.text(str(value.partition_expression))
    files = list(value.files)
    encoder.integer(len(files))
    for path in files:
        encoder.text(path)
        encoder.text(file_digest(path, file_cache=encoder.file_cache))


def _enc_union(value: Any, encoder: Encoder) -> None:
    encoder.tag("arrow.UnionDataset")
    encoder.text(value.schema.to_string(show_schema_metadata=True))
    children = list(value.children)
    encoder.integer(len(children))
    for child in children:
        encoder.value(child)


# -- what a returned reader reads ------------------------------------------------------------


def reader_paths(value: object) -> list[tuple[str, bool]]:
    """The local files a lazy reader reads, as (path as it names it, is it a folder); [] for
    any other value, and for sources that are not local files. A node that returns a
    reader has its files checked before a cache hit, as if it had read them itself
    (``run/_reads.py``): its cached reader would otherwise carry a digest of old data."""
    found: list[tuple[str, bool]] = []
    pl, dataset = loaded("polars"), loaded("pyarrow.dataset")
    try:
        if pl is not None and isinstance(value, pl.LazyFrame):
            for path in scan_sources(value):
                for kind, local in _expand(path):
                    found.append((local, kind == "dir"))
        elif dataset is not None and isinstance(value, dataset.UnionDataset):
            for child in value.children:
                found.extend(reader_paths(child))
        elif (
            dataset is not None
            and isinstance(value, dataset.FileSystemDataset)
            and type(value.filesystem).__name__ == "LocalFileSystem"
        ):
            found.extend((path, False) for path in value.files)
    except Exception:  # a remote source, a plan polars cannot show: nothing to check
        return []
    return found
