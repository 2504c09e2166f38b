"""The folders and databases among a node's reads (run/_reads.py): how each is noted while the
node runs, recorded after it, and checked before a hit.

A folder the node *lists* (``os.listdir``, ``os.scandir``, hence ``glob.glob``, ``os.walk``,
``Path.glob``, ``Path.iterdir``: each lists through one of these two audit events) is noted in
the node's ``opened`` under its path followed by :data:`LISTED`, and recorded as
``{"listing": digest}`` of its sorted entry names, by its path with a trailing separator: a
file added to or removed from it is a change (the files read in it are checked on their own).
A folder with more than ``limit`` entries is left out (and said). Listings by the import
system (``importlib``, its ``metadata``, ``pkgutil``) are not the node's: they are not noted.
The names a folder held when the node first listed it are noted then (``run/_audit.py``:
``Opened.listings``); a folder whose names another writer changed while the node ran (not an
entry the node made or took away itself) makes the node drifted.

A folder the node *names* (a string ending with a separator, or with a suffix, as a
partitioned ``sales.parquet``) is recorded as ``{"tree": digest}`` of all it holds; not one
it writes into (:func:`writes_into`), where its outputs go: what a map's other children, or
other nodes, wrote there would make it look changed.

A SQLite database the node connects to (``sqlite3.connect`` announces its path; SQLite reads
it in C) is a file read; in WAL mode, committed changes can sit in its ``-wal`` file until a
checkpoint, with the database file unchanged: its entry keeps the ``-wal`` file's digest
(``""`` when there is none) as ``wal``, and a ``-wal`` file holding something else is a change.

Also here: which ``.py`` files are code rather than data (:func:`module_sources`,
:func:`showing_source`), and which are read as code a loaded pickle runs
(:func:`unpickled_sources`), and the existence test of many named paths (:func:`maybe_existing`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from collections.abc import Collection, Mapping
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import HashingError
from ..hashing._digest import digest_bytes
from ..hashing._files import FileHashCache, file_digest, tree_entries
from ..hashing._usercode import is_library_file

__all__ = [
    "ABSENT",
    "DATABASE",
    "HERE",
    "LISTED",
    "field",
    "folder_changed",
    "folder_key",
    "folder_read",
    "inside",
    "listing_digest",
    "listing_key",
    "listings_read",
    "maybe_existing",
    "module_sources",
    "read_changed",
    "read_key",
    "read_path",
    "showing_source",
    "sqlite_path",
    "too_many",
    "tree_digest",
    "unpickled_sources",
    "wal_digest",
    "writes_into",
]

#: the prefix of a path relative to the working folder (in ``opened`` and in records' reads)
HERE = "." + os.sep

log = logging.getLogger("etherealfabric.files")

#: what follows a folder's path in ``opened`` when the node listed it (no path holds a NUL)
LISTED = os.sep + "\0"
#: what follows a SQLite database's path in ``opened`` (it was connected to)
DATABASE = "\0"
#: what follows a folder's path in ``opened`` when the node listed it while it was not there
ABSENT = "\0a"
#: up to this many paths a node names are each looked up with a ``stat``
_FEW = 64
#: the modules whose listings are the import system's, not the node's
_IMPORTERS = ("importlib", "_frozen_importlib", "pkgutil", "pkg_resources", "zipimport")


def listing_key(path: Any, caller: FrameType | None) -> str | None:
    """The absolute path (or ``./``-relative, as the node gave it) of a folder listed by
    ``caller``, followed by :data:`LISTED`; None for a file descriptor, or the import system."""
    if isinstance(path, int):
        return None
    if caller is not None and str(caller.f_globals.get("__name__", "")).startswith(_IMPORTERS):
        return None
    text = "." if path is None else os.fsdecode(path)
    if os.path.isabs(text):
        return os.path.abspath(text).rstrip(os.sep) + LISTED
    relative = os.path.normpath(text)
    return ("." if relative == "." else "." + os.sep + relative) + LISTED


def listing_digest(folder: str, limit: int) -> str | None:
    """The digest of the sorted entry names of ``folder`` (not their content); None when it
    holds more than ``limit`` (OSError when it is not a folder)."""
    names = os.listdir(folder)
    if len(names) > limit:
        return None
    return _names_digest(names)


def _names_digest(names: list[str]) -> str:
    return digest_bytes(json.dumps(sorted(names)).encode())


def _moved_by_another(
    folder: str, names: list[str], opened: Mapping[str, bool | None], first: frozenset[str]
) -> bool:
    """Whether ``folder``, listed first with the names ``first`` and holding ``names`` now,
    was changed while the node ran by another writer: an entry added or taken away that the
    node did not make, write or take away itself (``opened`` for writing, or ``opened.moved``:
    run/_audit.py)."""
    now = set(names)
    if now == first:
        return False
    mine = {
        os.path.basename(path)
        for path in itertools.chain(
            (os.path.abspath(p) for p, wrote in opened.items() if wrote),
            getattr(opened, "moved", ()),
        )
        if os.path.dirname(path) == folder
    }
    return now - mine != first - mine


def tree_digest(
    path: str,
    file_cache: FileHashCache | None,
    limit: int,
    max_bytes: int,
    skip: Collection[str] = (),
) -> str | None:
    """The digest of what the folder ``path`` holds; None when it holds more than ``limit``
    entries or ``max_bytes`` (measured first: a huge folder is never hashed). ``skip``: the
    posix paths, relative to ``path``, left out (with what is below them): untracked ones."""
    count = size = 0
    for folder, dirs, files in os.walk(path):
        count += len(dirs) + len(files)
        if count > limit:
            return None
        for name in files:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
        if size > max_bytes:
            return None
    entries = tree_entries(path, file_cache=file_cache)
    if skip:
        entries = [e for e in entries if not any(_under(e[1], s) for s in skip)]
    return digest_bytes(json.dumps(entries).encode())


def sqlite_path(database: Any) -> str | None:
    """The file of a ``sqlite3.connect`` audit event's database: its path, or a ``file:`` URI's;
    None for an in-memory or temporary one."""
    if isinstance(database, (bytes, str, os.PathLike)):
        text = os.fsdecode(database)
    else:
        return None
    if text.startswith("file:"):  # a URI (connect(uri=True)); its path, without the query
        parts = urlsplit(text)
        if "mode=memory" in parts.query:
            return None
        text = unquote(parts.path)
    return None if text in ("", ":memory:") else text


def wal_digest(database: str, file_cache: FileHashCache | None = None) -> str:
    """The digest of the database's ``-wal`` file; ``""`` when there is none or it is empty."""
    wal = database + "-wal"
    try:
        if os.path.getsize(wal) == 0:
            return ""
        return file_digest(wal, file_cache=file_cache)
    except OSError:
        return ""


def showing_source(caller: FrameType) -> bool:
    """Whether a ``.py`` file is opened to show its lines (a traceback, a warning, ``inspect``:
    ``linecache`` through ``tokenize.open``), not read as data."""
    return caller.f_globals.get("__name__") in ("tokenize", "linecache")


def module_sources() -> set[str]:
    """The source files of the imported modules: code (in the node's key, or a library's),
    never data a node reads."""
    return {
        os.path.abspath(f)
        for module in list(sys.modules.values())
        if isinstance(f := getattr(module, "__file__", None), str)
    }


def unpickled_sources(opened: Mapping[str, bool | None]) -> set[str]:
    """The source files of the user's modules whose classes or functions a pickle the node
    loaded named (``joblib.load("model.pkl")``: the model's class): what the loaded object
    runs, as the node's key does not cover it (the file's bytes name the class, they do not
    hold its code); an edit there runs the node again."""
    found = set()
    for name in getattr(opened, "unpickled", ()):
        file = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(file, str) and file.endswith(".py"):
            path = os.path.abspath(file)
            if not is_library_file(path):
                found.add(path)
    return found


def listings_read(
    listed: list[tuple[str, str]],
    opened: Mapping[str, bool | None],
    found: dict[str, dict[str, Any]],
    node: str,
    limit: int,
    changed: list[str] | None = None,
) -> None:
    """Add to ``found`` (the reads of the node, up to ``limit``) the listing of each folder in
    ``listed`` (path, key) that is not checked already as a tree, nor untracked, nor a
    library's; a folder of more than ``limit`` entries is left out, and said. ``changed``
    gets the key of each folder another writer changed since the node first listed it
    (``opened.listings``, run/_audit.py): a file added or removed while the node ran, which
    it may or may not have seen (the node is drifted, as for a file read that changed); a
    folder checked as a tree too."""
    first: Mapping[str, frozenset[str] | None] = getattr(opened, "listings", {})
    untracked = {os.path.abspath(p).rstrip(os.sep) for p, wrote in opened.items() if wrote is None}
    for folder, key in listed:
        if folder in untracked or is_library_file(folder):
            continue
        # named too: its tree is checked already, but its listing still tells a change by
        # another writer while the node ran (an entry moved in keeps its mtime)
        tree = key in found
        if not tree and len(found) >= limit:
            too_many(node, limit)
            return
        try:
            names = os.listdir(folder)
        except OSError:  # gone (a temporary folder), or not a folder
            continue
        if not tree and len(names) > limit:
            log.warning(
                "node %r lists the folder %r, which holds more than %d entries: a file added "
                "to it or removed is not checked before the node's cache hits (pass it as "
                "Directory(...) to key the node by it, or list it in untracked() to silence this)",
                node, folder, limit,
            )  # fmt: skip
            continue
        if not tree:
            found[key] = {"listing": _names_digest(names)}
        seen = first.get(folder)
        if (
            changed is not None
            and seen is not None
            and _moved_by_another(folder, names, opened, seen)
        ):
            changed.append(key)


def too_many(node: str, limit: int) -> None:
    log.warning(
        "node %r read more than %d files; only the first %d are checked before its cache hits "
        "(pass the folder as Directory(...) to key the node by all of it)",
        node, limit, limit,
    )  # fmt: skip


def folder_read(
    path: str,
    base: str,
    store_folders: list[str],
    node: str,
    limit: int,
    max_bytes: int,
    untracked: Collection[str] = (),
) -> dict[str, Any] | None:
    """The entry of a folder a node names: below ``base``, holding no store folder, with at most
    ``limit`` entries and ``max_bytes`` (else None: a folder that size is a ``Directory(...)``
    input, and a warning says so). The ``untracked`` paths (absolute) in it are left out of its
    tree, and listed in the entry's ``skip`` (relative) for the checks."""
    if not inside(path, [base]) or path == base.rstrip(os.sep):
        return None
    if any(inside(f.rstrip(os.sep), [path]) for f in store_folders):
        return None
    skip = sorted(
        {
            os.path.relpath(u, path).replace(os.sep, "/")
            for u in untracked
            if u != path and inside(u, [path])
        }
    )
    digest = tree_digest(path, None, limit, max_bytes, skip)
    if digest is None:
        log.warning(
            "node %r names the folder %r, which holds more than %d entries or %d GiB: its "
            "content is not checked before the node's cache hits (pass it as Directory(...) "
            "to key the node by it, or name it in untracked(...) to silence this)",
            node, path, limit, max_bytes >> 30,
        )  # fmt: skip
        return None
    return {"tree": digest, "skip": skip} if skip else {"tree": digest}


def folder_changed(
    path: str, entry: object, file_cache: FileHashCache | None, limit: int, max_bytes: int
) -> bool:
    """Whether the folder at ``path`` now holds other entries than its record's ``entry`` says
    (``listing``), or other content (``tree``); not when it is not here (nothing to compare)."""
    if not os.path.isdir(path):
        return False
    listing = field(entry, "listing")
    try:
        now = (
            listing_digest(path, limit)
            if listing is not None
            else tree_digest(path, file_cache, limit, max_bytes, _skipped(entry))
        )
    except (OSError, HashingError):
        return False
    return now is None or now != (listing or field(entry, "tree"))  # (too big now: a change)


def _skipped(entry: object) -> list[str]:
    """The untracked paths a folder's record entry leaves out of its tree (none in an old
    record, or a malformed one)."""
    skip = field(entry, "skip")
    return [s for s in skip if isinstance(s, str)] if isinstance(skip, list) else []


def _under(relative: str, skipped: str) -> bool:
    return relative == skipped or relative.startswith(skipped.rstrip("/") + "/")


def read_changed(path: str, entry: object = None, *, gone: bool = False) -> str:
    """How the log, ``plan`` and ``explain`` say that the file ``path`` a node read (its
    ``entry`` in the record's reads) changed; ``gone``: it is not there any more."""
    if field(entry, "missing"):
        return f"{path!r}, which was not there when it ran, appeared since its cached result"
    if gone:
        return f"{path!r}, a file it read, is gone since its cached result"
    what = (
        "a folder it lists"
        if field(entry, "listing") is not None
        else "a folder it names"
        if field(entry, "tree") is not None
        else "a file it names"
        if field(entry, "named")
        else "a file it read"
    )
    return f"{path!r}, {what}, changed since its cached result"


def field(entry: object, name: str) -> object:
    return entry.get(name) if isinstance(entry, Mapping) else None


def maybe_existing(paths: list[str]) -> list[str]:
    """The ``paths`` that may exist: all of a few; of more (a long list of texts from upstream),
    those whose folder lists their name: a listing per folder rather than a ``stat`` per path
    (on a case-insensitive file system, a name in another case is then not found)."""
    if len(paths) <= _FEW:
        return paths
    listed: dict[str, frozenset[str]] = {}
    kept = []
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in listed:
            try:
                listed[folder] = frozenset(os.listdir(folder or os.curdir))
            except (OSError, ValueError):
                listed[folder] = frozenset()
        if name in listed[folder] or not name:  # ("data/": the folder itself)
            kept.append(path)
    return kept


def read_key(path: str, base: str) -> str:
    """How a record names the absolute ``path`` a node read: relative to ``base`` (the root)
    inside it (a teammate's checkout has it at another place); else ``~/...`` inside the
    user's home folder (``~/data/x.csv`` is each user's own file); else absolute."""
    if inside(path, [base]):
        return os.path.relpath(path, base)
    home = _user_home()
    if home is not None and inside(path, [home]):
        return "~" + os.sep + os.path.relpath(path, home)
    return path


def folder_key(folder: str, base: str) -> str:
    """A folder's key in the record (:func:`read_key`, with a separator at its end); the root
    itself absolute (its relative name would read as the working folder's)."""
    if folder == base.rstrip(os.sep):
        return folder + os.sep
    return read_key(folder, base) + os.sep


def read_path(key: str, base: str) -> str:
    """The path a record's read ``key`` names here: ``./path`` relative to the working folder
    (as the node opened it), ``~/path`` to this user's home folder, else relative to ``base``
    (the root) or absolute."""
    if key.startswith(HERE):
        return os.path.abspath(key)
    if key.startswith("~" + os.sep):
        return os.path.expanduser(key)
    return os.path.join(base, key)


def _user_home() -> str | None:
    home = os.path.expanduser("~")
    return home.rstrip(os.sep) if home not in ("~", os.sep, "") else None


def inside(path: str, folders: list[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or inside one."""
    return any(
        path == f.rstrip(os.sep) or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders
    )


def writes_into(path: str, opened: Mapping[str, bool | None], declared: list[str]) -> bool:
    """Whether ``path`` is a folder the node names (it ends with a separator) and wrote a file
    in (``opened`` for writing, by any name, or ``declared`` in ``writes=``): its output
    folder, not one it reads."""
    if not path.endswith(os.sep):
        return False
    folder = path.rstrip(os.sep)
    written = [*declared, *(os.path.abspath(p) for p, wrote in opened.items() if wrote)]
    return any(inside(w.rstrip(os.sep), [folder]) for w in written)
