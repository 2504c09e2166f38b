"""Files a node reads that its key does not cover: seen while it runs, checked before a hit.

A node that opens a data file by a path written in its code (``pd.read_csv("data/sales.csv")``,
``open("threshold.txt")``) depends on what the file holds, and its cache key cannot see that:
the file is neither a parameter nor code. Left alone, editing the CSV would leave the node a
cache hit with the old result. So, while a node runs, an audit hook (PEP 578, installed in the
worker's process when its first node runs) notes the files the node's thread opens through
Python: ``open``, ``io.open``, ``os.open``, and so pandas' CSV, JSON and Excel readers, numpy,
pickle... When the node succeeds, :func:`files_read` keeps each regular file it only read: not
one it also opened for writing, not a declared ``File``/``Directory`` input (keyed by content
already) nor a declared output, not library or engine code, not the store's own files, not
``/proc``, ``/sys`` or ``/dev``. The action record lists them under ``reads`` with the digest
of their content: a path the node gave relative (``open("data/x.csv")``) as ``./data/x.csv``,
relative to the working folder, for a run from another folder reads (so checks) the file
there; an absolute one relative to the workflow's root when inside it (a teammate's checkout
has it at another place), else absolute. A later lookup of the key (:func:`changed_read`) hashes them
again, through the journal's size+mtime+inode+ctime memo (an unchanged file costs a ``stat``),
and refuses the hit when one now holds something else: the node runs again, and its consumers
with it when its output changed. A file that is not there is not a reason to run: a teammate
sharing the store without the raw data (or a driver whose cluster workers read files of their
own) still gets the result.

A file that does not change the result (a log the node appends to is written, so never
checked; a credentials file, a progress marker, a file that only controls a test) is opened
inside ``with etherealfabric.untracked():`` to leave it out.

Native code opens files without Python's audit events (pyarrow's parquet reader, so
``pd.read_parquet``; polars; HDF5 libraries; a program the node starts). So the paths a node
*names* count too (:func:`named_paths`): each string argument of the node (or string in a
list, tuple or dict argument), and each string constant in its code (the function's, or the
methods' of a class node), that names an existing file once the node has run, as if the node
had opened it. A named folder counts when the name says it is one (a trailing ``/``, or a
suffix: ``"sales.parquet"`` as a partitioned dataset) and it lies below the root (or the
working folder) with at most :data:`MAX_READS` entries and :data:`MAX_FOLDER_BYTES`: its
tree's digest is checked, so a new partition is a change. ``untracked(path)`` leaves one out.
Paths built at run time (``f"data/{day}.parquet"``) and opened by native code are not seen:
pass those as ``File(...)``/``Directory(...)`` arguments, which are part of the key. A node
that reads more than :data:`MAX_READS` files is checked on the first ones only (and says so).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import stat
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import PurePath
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any

from ..errors import HashingError
from ..hashing._digest import digest_bytes
from ..hashing._files import FileHashCache, file_digest, tree_entries
from ..hashing._usercode import is_library_file

if TYPE_CHECKING:
    from ._messages import Attempt, Task

__all__ = [
    "MAX_FOLDER_BYTES",
    "MAX_READS",
    "changed_read",
    "files_read",
    "named_paths",
    "path_texts",
    "read_changed",
    "task_reads",
    "untracked",
    "unwatch",
    "watch",
]

log = logging.getLogger("etherealfabric.run")

#: the files of one node checked before its cache hits; beyond, a warning says which are not
MAX_READS = 1000
#: a folder a node names is checked up to this many bytes of files (hashed after each run)
MAX_FOLDER_BYTES = 2 << 30
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_SYSTEM = ("/proc/", "/sys/", "/dev/")
_CODE = (".py", ".pyc", ".pyo", ".pyd", ".so", ".pth")

#: the files the running node opened (path -> opened for writing; None: in an untracked
#: block, or named by one), in its thread's context
_opened: contextvars.ContextVar[dict[str, bool | None] | None] = contextvars.ContextVar(
    "etherealfabric_opened", default=None
)
#: inside an untracked() block
_untracking: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "etherealfabric_untracking", default=False
)
_installed = False
_install_lock = threading.Lock()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: note the files a watched node opens (never raises: an exception here
    would fail the ``open`` itself)."""
    if event != "open":
        return
    opened = _opened.get()
    if opened is None:
        return
    try:
        path, _, flags = args
        if path is None or isinstance(path, int):  # a file descriptor: no path to check
            return
        path = _as_opened(os.fsdecode(path))
        if flags & _WRITING:
            opened[path] = True
        else:
            opened.setdefault(path, None if _untracking.get() else False)
    except Exception:  # a path we cannot read is one we do not watch
        pass


def watch() -> tuple[dict[str, bool | None], contextvars.Token[dict[str, bool | None] | None]]:
    """Start noting the files opened in this context (this thread): the dict they go to, and
    the token that :func:`unwatch` takes (in a ``finally``)."""
    global _installed
    if not _installed:
        with _install_lock:
            if not _installed:
                sys.addaudithook(_hook)
                _installed = True
    opened: dict[str, bool | None] = {}
    return opened, _opened.set(opened)


def unwatch(token: contextvars.Token[dict[str, bool | None] | None]) -> None:
    """Stop noting files opened in this context."""
    _opened.reset(token)


@contextmanager
def untracked(*paths: str | os.PathLike[str]) -> Iterator[None]:
    """Inside a node, open files in this block without making them part of what its cache
    hits are checked against: files that do not change the result. ``paths`` are left out
    too, wherever they are opened: files and folders the node names (a string in its code or
    arguments) that native code reads, which no audit event shows.

    ::

        @node
        def train(df):
            with etherealfabric.untracked():
                token = Path("~/.service-token").expanduser().read_text()
            with etherealfabric.untracked("logs/metrics.parquet"):
                history = pd.read_parquet("logs/metrics.parquet")
            ...
    """
    opened = _opened.get()
    if opened is not None:
        for path in paths:
            absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
            opened[absolute] = opened[absolute.rstrip(os.sep) + os.sep] = None
    token = _untracking.set(True)
    try:
        yield
    finally:
        _untracking.reset(token)


def task_reads(task: Task, attempts: list[Attempt]) -> dict[str, dict[str, Any]]:
    """The record's ``reads`` for a task whose last attempt succeeded (its files are dropped
    from the attempts: they are not sent back)."""
    opened = attempts[-1].opened
    for attempt in attempts:
        attempt.opened = {}
    named = named_paths(task.code, task.args, task.kwargs)
    if not opened and not named:
        return {}
    for path in named:  # as if opened for reading (what it wrote through Python stays out)
        opened.setdefault(path, False)
    return files_read(
        opened,
        node=task.node,
        root=task.root,
        skip=task.inputs_seen,
        writes=task.writes,
        store_folders=task.store.local_folders(),
    )


def named_paths(code: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    """The existing files and folders a node names (see the module docstring): its string
    arguments, and the string constants of its code, noted as opened ones are (absolute, or
    ``./``-relative to the working folder). A folder's path ends with a separator; only folders
    whose name says so (a trailing ``/`` or a suffix) count."""
    found: dict[str, None] = {}
    for text in (*_code_strings(code), *_argument_strings(args, kwargs)):
        if not 0 < len(text) <= 1024 or "\n" in text or "\x00" in text or text in _NOT_PATHS:
            continue
        if "." not in text and os.sep not in text:  # a word, not a file name
            continue
        path = os.path.expanduser(text)
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(mode):
            found[_as_opened(path)] = None
        elif stat.S_ISDIR(mode) and (text.endswith(os.sep) or "." in os.path.basename(path)):
            found[_as_opened(path) + os.sep] = None
    return list(found)


def _as_opened(path: str) -> str:
    """How a path a node opens or names is noted: absolute when it was given so, else relative
    to the working folder, as ``./path``, for that is the file the node reads wherever it runs
    (a run from another folder reads, and so checks, another file)."""
    if os.path.isabs(path):
        return os.path.abspath(path)
    return _HERE + os.path.normpath(path)


#: the prefix of a path relative to the working folder (in ``opened`` and in records' reads)
_HERE = "." + os.sep


_NOT_PATHS = frozenset({".", "..", "./", "../", os.sep, "~"})
#: the strings of each node's code that may be paths, by code object (computed once)
_strings: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _code_strings(code: Any) -> tuple[str, ...]:
    try:
        return _strings[code]
    except (KeyError, TypeError):
        pass
    functions = (
        [f for f in vars(code).values() if isinstance(f, FunctionType)]
        + [f.__func__ for f in vars(code).values() if isinstance(f, (staticmethod, classmethod))]
        if isinstance(code, type)
        else [code]
    )
    texts: list[str] = []
    stack = [c for f in functions if isinstance(c := getattr(f, "__code__", None), CodeType)]
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, CodeType):
                stack.append(const)
            elif isinstance(const, str):
                texts.append(const)
            elif isinstance(const, (tuple, frozenset)):
                texts += [c for c in const if isinstance(c, str)]
    found = tuple(texts)
    with suppress(TypeError):  # not weakly referenceable: computed again next time
        _strings[code] = found
    return found


def _argument_strings(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    return [text for value in (*args, *kwargs.values()) for text in path_texts(value)]


def path_texts(value: Any, depth: int = 0) -> Iterator[str]:
    """The texts in a node's argument that may name files: the value itself when a ``str`` or
    a path, else the items of a list or tuple, or the values of a dict, nested up to 3 levels
    (at most :data:`MAX_READS` items of each)."""
    if isinstance(value, (str, PurePath)):
        yield os.fspath(value)
    elif depth < 3 and isinstance(value, Mapping):
        for item in list(value.values())[:MAX_READS]:
            yield from path_texts(item, depth + 1)
    elif depth < 3 and isinstance(value, (list, tuple)):
        for item in value[:MAX_READS]:
            yield from path_texts(item, depth + 1)


def files_read(
    opened: Mapping[str, bool | None],
    *,
    node: str,
    root: str | None,
    skip: Mapping[str, Any] | None = None,
    writes: tuple[str, ...] = (),
    store_folders: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``reads`` of an action record: of the files ``opened`` while the node ran, those it
    only read and that its key does not cover (see the module docstring), by path as the
    module docstring says, each ``{"digest", "size"}`` (a folder's ``{"tree"}``). ``skip``: paths of declared
    inputs; ``writes``: declared outputs, root-relative; ``store_folders``: never inputs."""
    base = root if root is not None else os.getcwd()
    declared = [os.path.join(base, w) for w in writes]
    found: dict[str, dict[str, Any]] = {}
    for path, recorded in _only_read(opened).items():
        if path.endswith(_CODE) or (skip and path in skip) or path.startswith(_SYSTEM):
            continue
        if _inside(path, declared) or (store_folders and _inside(path, store_folders)):
            continue
        if path.endswith(os.sep):  # a folder the node names
            folder = _folder_read(path.rstrip(os.sep), base, store_folders or [], node)
            if folder is not None and len(found) < MAX_READS:
                found[recorded or _relative(path.rstrip(os.sep), base) + os.sep] = folder
            continue
        try:
            info = os.stat(path)
        except OSError:  # gone already (a temp file): nothing to check later
            continue
        if not stat.S_ISREG(info.st_mode) or is_library_file(path):
            continue
        if len(found) == MAX_READS:
            log.warning(
                "node %r read more than %d files; only the first %d are checked before its "
                "cache hits (pass the folder as Directory(...) to key the node by all of it)",
                node, MAX_READS, MAX_READS,
            )  # fmt: skip
            break
        try:
            digest = file_digest(path)
        except (OSError, HashingError):
            continue
        found[recorded or _relative(path, base)] = {"digest": digest, "size": info.st_size}
    return found


def _only_read(opened: Mapping[str, bool | None]) -> dict[str, str | None]:
    """The absolute paths (a folder's ending with a separator) of the files in ``opened`` that
    were only read: never written nor untracked, by whatever name. Each maps to its name
    relative to the working folder (``./path``) when it was opened or named so, else None."""
    flags: dict[str, bool | None] = {}
    relative: dict[str, str] = {}
    for path, wrote in opened.items():
        absolute = os.path.abspath(path) + (os.sep if path.endswith(os.sep) else "")
        if path.startswith(_HERE):
            relative.setdefault(absolute, path)
        before = flags.get(absolute, False)
        flags[absolute] = (
            True if True in (before, wrote) else None if None in (before, wrote) else False
        )
    return {path: relative.get(path) for path, wrote in flags.items() if wrote is False}


def _folder_read(
    path: str, base: str, store_folders: list[str], node: str
) -> dict[str, Any] | None:
    """The entry of a folder a node names: below ``base``, holding no store folder, with at most
    :data:`MAX_READS` entries (else None: a folder that size is a ``Directory(...)`` input)."""
    if not _inside(path, [base]) or path == base.rstrip(os.sep):
        return None
    if any(_inside(f.rstrip(os.sep), [path]) for f in store_folders):
        return None
    digest = _tree_digest(path, None)
    if digest is None:
        log.warning(
            "node %r names the folder %r, which holds more than %d entries or %d GiB: its "
            "content is not checked before the node's cache hits (pass it as Directory(...) "
            "to key the node by it, or name it in untracked(...) to silence this)",
            node, path, MAX_READS, MAX_FOLDER_BYTES >> 30,
        )  # fmt: skip
        return None
    return {"tree": digest}


def _tree_digest(path: str, file_cache: FileHashCache | None) -> str | None:
    """The digest of what the folder ``path`` holds; None when it holds more than
    :data:`MAX_READS` entries or :data:`MAX_FOLDER_BYTES` (measured first: a huge folder is
    never hashed)."""
    count = size = 0
    for folder, dirs, files in os.walk(path):
        count += len(dirs) + len(files)
        if count > MAX_READS:
            return None
        for name in files:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
        if size > MAX_FOLDER_BYTES:
            return None
    entries = tree_entries(path, file_cache=file_cache)
    return digest_bytes(json.dumps(entries).encode())


def changed_read(
    record: Mapping[str, Any], *, root: str | None, file_cache: FileHashCache | None
) -> str | None:
    """The path (as recorded) of a file ``record``'s node read that now holds something else;
    None when each is as it was, or not here: a teammate sharing the store without the raw
    data, or a cluster's worker that had files of its own, still gets the result."""
    reads = record.get("reads")
    if not isinstance(reads, Mapping):
        return None
    base = root if root is not None else os.getcwd()
    for relative, entry in reads.items():
        relative = str(relative)
        # ./path: relative to the working folder, as the node opened it; else to the root
        path = (
            os.path.abspath(relative)
            if relative.startswith(_HERE)
            else os.path.join(base, relative)
        )
        if str(relative).endswith(os.sep):  # a folder it named: its tree
            if not os.path.isdir(path):
                continue  # not here: nothing to compare
            try:
                tree = _tree_digest(path, file_cache)
            except (OSError, HashingError):
                continue
            if tree is None or tree != _field(entry, "tree"):  # (too big now: a change)
                return str(relative)
            continue
        try:  # a regular file only (a record naming a FIFO or a device is no reason to wait)
            digest = (
                None
                if _size(path) != _field(entry, "size")
                else file_digest(path, file_cache=file_cache)
            )
        except (OSError, HashingError):  # not here (or unreadable): nothing to compare
            continue
        if digest is None or digest != _field(entry, "digest"):
            return str(relative)
    return None


def read_changed(path: str) -> str:
    """How the log, ``plan`` and ``explain`` say that the file ``path`` a node read changed."""
    return f"{path!r}, a file it read, changed since its cached result"


def _size(path: str) -> int:
    """The size of the regular file at ``path`` (OSError if it is not one)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    return info.st_size


def _field(entry: object, name: str) -> object:
    return entry.get(name) if isinstance(entry, Mapping) else None


def _inside(path: str, folders: list[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or inside one."""
    return any(
        path == f.rstrip(os.sep) or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders
    )


def _relative(path: str, base: str) -> str:
    return os.path.relpath(path, base) if _inside(path, [base]) else path
