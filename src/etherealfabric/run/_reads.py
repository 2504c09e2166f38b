"""Files a node reads that its key does not cover: seen while it runs, checked before a hit.

A node that opens a data file by a path written in its code (``pd.read_csv("data/sales.csv")``,
``open("threshold.txt")``) depends on what the file holds, and its cache key cannot see that:
the file is neither a parameter nor code. Left alone, editing the CSV would leave the node a
cache hit with the old result. So, while a node runs, an audit hook (PEP 578, installed in the
worker's process when its first node runs: run/_audit.py) notes the files its thread opens through
Python: ``open``, ``io.open``, ``os.open``, and so pandas' CSV, JSON and Excel readers, numpy,
pickle, ``runpy``...; and the folders it lists and the SQLite databases it connects to
(run/_folders.py). When the node succeeds, :func:`files_read` keeps each regular file it only
read: not one it also opened for writing, not a declared ``File``/``Directory`` input (keyed by
content already) nor a declared output, not library or engine code, not compiled code nor the
source of an imported module (other ``.py`` files are data; but the module of a user's class a
pickle it loaded names is read: the code the loaded model runs), not the store's own files, not
``/proc``, ``/sys`` or ``/dev`` (but ``/dev/shm``). The action record lists them under
``reads`` with the digest of their content (taken after it ran: one whose ctime is not before
its start changed meanwhile, maybe after it was read, and the node is ``drifted``): a path the
node gave relative (``open("data/x.csv")``) as ``./data/x.csv``, relative to the working
folder, for a run from another folder reads (so checks) the file there; an absolute one
relative to the workflow's root when inside it (a teammate's checkout has it at another
place), else absolute. A worker started in another folder than the driver's (``dask worker``,
a Celery worker: ``Task.cwd`` is not its own) reads a relative path from its own folder, so
that file is recorded as an absolute one is (where it was read, which the check finds), never
``./path`` (the driver's file there is another one). A declared output is no read by its
root path nor by the relative name the code gives it (a worker in another folder looked for
no ``out/report.txt`` of its own). A later
lookup of the key (run/_readcheck.py) hashes them again, through the journal's
size+mtime+inode+ctime memo (an unchanged file costs a ``stat``), and refuses the hit when one
now holds something else: the node runs again, and its consumers with it when its output
changed. A file of the project (under the working folder or the root, or the user's home
folder) read on this machine (the record's ``read_on``) and gone since is a change;
one not there that was read on another machine is not a reason to run: a teammate sharing
the store without the raw data (or a driver whose cluster workers read files of their own)
still gets the result. A file read in the user's home folder outside the root is recorded as
``~/...``: each user's own (a teammate's ``~/data/x.csv`` is checked against hers). But a path that was not there when the node ran (a file it names
and looked for, ``if Path("overrides.json").exists()``; a folder it listed, a ``glob`` over
``data/extra/`` before it existed) is recorded ``{"missing": True}`` (at most
:data:`MAX_MISSING`, texts that look like file names only): one that appears makes the hit
stale (a ``stat`` each).

A memoized helper (``functools.lru_cache``) reads its file once per process: what was read
under it counts for every node whose code reaches it (run/_memoized.py).

A file that does not change the result (a log the node appends to is written, so never
checked; a credentials file, a progress marker, a file that only controls a test) is opened
inside ``with etherealfabric.untracked():`` to leave it out.

Native code opens files without Python's audit events (pyarrow's parquet reader, so
``pd.read_parquet``; polars; HDF5 libraries; a program the node starts). So the paths a node
*names* count too (:func:`named_paths`): each string argument of the node as it received it
(so a path an upstream node returned; or a string in a list, tuple or dict), the defaults of
the parameters it did not receive, and the texts of its code (:func:`code_texts`: its string
constants, a class node's attributes through its bases, and what the globals and module
attributes it reads hold, as its fingerprint found them: a class's attributes, a dataclass's or
``SimpleNamespace``'s fields too; its closure cells; the same of the helpers it calls; a
``pathlib`` path whatever its text, ``Path("./data")`` being ``./data``, and a bare word its
code hands to ``Path(...)``, ``os.listdir``, ``os.scandir``, ``os.walk`` or ``glob.glob``:
run/_pathcalls.py), that name an existing file once the node has run, as if the node had opened it (its
entry says ``"named"`` when the node never opened it through Python: a file it may have
written, which the log says it names). A named folder counts when nothing in it changed while
the node ran (else the node wrote into it: its output) and it lies below the root (or the
working folder) with at most :data:`MAX_READS` entries and :data:`MAX_FOLDER_BYTES`: its
tree's digest is checked, so a new partition is a change. A glob pattern it names
(``pl.read_csv("data/*.csv")``: polars expands it natively) names the files it matches, and
the folders it looks in count as listed (run/_audit.py's :func:`pattern_reads`): a file added
there is a change. ``untracked(path)`` leaves one out;
a file written untracked in it (a progress marker) neither makes it an output nor counts in
its tree (the entry's ``skip``).
Files opened in threads the node starts count (run/_started.py). Paths built at run time
(``f"data/{day}.parquet"``) and opened by native code (or listed by it) are not seen: pass those as
``File(...)``/``Directory(...)`` arguments, which are part of the key. A node that reads more
than :data:`MAX_READS` files is checked on the first ones only (and says so).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import HashingError
from ..hashing._files import FileHashCache, file_digest
from ..hashing._scans import reader_paths
from ..hashing._usercode import is_library_file
from ._audit import HERE, as_opened, has_magic, pattern_reads, read_in_process
from ._drift import changed_since
from ._folders import (
    ABSENT,
    DATABASE,
    LISTED,
    folder_key,
    folder_read,
    inside,
    listings_read,
    maybe_existing,
    module_sources,
    read_key,
    too_many,
    unpickled_sources,
    wal_digest,
    writes_into,
)
from ._memoized import memoized_reads
from ._texts import (
    MAX_READS,
    argument_strings,
    code_texts,
    defaults_used,
    file_like,
    path_texts,
    words_of,
)

if TYPE_CHECKING:
    from ._messages import Attempt, Task

__all__ = [
    "MAX_FOLDER_BYTES",
    "MAX_READS",
    "code_texts",
    "files_read",
    "named_paths",
    "path_texts",
    "task_reads",
]

log = logging.getLogger("etherealfabric.files")

#: a folder a node names is checked up to this many bytes of files (hashed after each run)
MAX_FOLDER_BYTES = 2 << 30
_SYSTEM = ("/proc/", "/sys/", "/dev/")
_SHARED_MEMORY = "/dev/shm/"  # tmpfs: data
#: compiled code and path configuration; a ``.py`` file is code when a module was imported from
#: it (else data: ``runpy.run_path``, a config read as text)
_COMPILED = (".pyc", ".pyo", ".pyd", ".so", ".pth")


def task_reads(
    task: Task,
    attempts: list[Attempt],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    secrets: Collection[object] = (),
    outputs: Mapping[str, Any] | None = None,
    changed: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The record's ``reads`` for a task whose last attempt succeeded (its files are dropped
    from the attempts: they are not sent back). ``args`` and ``kwargs``: the values the node
    received (upstream outputs loaded: a path one returns is named too), ``secrets`` left out;
    ``outputs``: what it returned (the files a lazy reader among them reads count as read);
    ``changed``: given, gets the files it read that changed while its last attempt ran. The
    reads of the checkpoint the last attempt resumed from count too (run/_resumable.py): the
    state it went on from was made with them."""
    opened, resumed = attempts[-1].opened, attempts[-1].resumed
    for attempt in attempts:
        attempt.opened, attempt.resumed = {}, {}
    found = reads_of(task, opened, args, kwargs, secrets, outputs, changed, attempts[-1].started_at)
    for path, entry in resumed.items():
        found.setdefault(path, entry)
    return found


def reads_of(
    task: Task,
    opened: dict[str, bool | None],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    secrets: Collection[object] = (),
    outputs: Mapping[str, Any] | None = None,
    changed: list[str] | None = None,
    started: float | None = None,
    file_cache: FileHashCache | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``reads`` of an attempt that ``opened`` these files (added to) and started at
    ``started``: :func:`task_reads`, or a checkpoint's so far (``file_cache``: digests of
    files whose stat is unchanged since the last save)."""
    for value in (outputs or {}).values():
        for path, folder in reader_paths(value):  # a LazyFrame, an arrow dataset (_scans)
            opened.setdefault(as_opened(path) + (os.sep if folder else ""), False)
    try:  # what its memoized helpers read, maybe in another node
        for path, how in memoized_reads(task.code).items():
            opened.setdefault(path, how)
    except Exception:  # (not contextlib.suppress: a call per node the less)
        pass
    for path in (code := unpickled_sources(opened)):  # the code a loaded pickle runs
        opened.setdefault(path, False)
    absent: list[str] = []
    named = named_paths(
        task.code, args, kwargs, hidden=secrets, texts=task.names, since=started,
        untracked=_untracked(opened), missing=absent,
    )  # fmt: skip
    if not opened and not named and not absent:
        return {}
    seen = {os.path.abspath(p) for p in opened} if named else set()
    only_named = {a for p in named if (a := os.path.abspath(p)) not in seen}
    for path in named:  # as if opened for reading (what it wrote through Python stays out)
        opened.setdefault(path, False)
    return files_read(
        opened,
        node=task.node,
        root=task.root,
        skip=task.inputs_seen,
        writes=task.writes,
        relative=task.cwd is None or (getattr(opened, "cwd", None) or os.getcwd()) == task.cwd,
        store_folders=task.store.local_folders(),
        named=only_named,
        missing=absent,
        since=started,
        changed=changed,
        code=code,
        file_cache=file_cache,
    )


def named_paths(
    code: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    hidden: Collection[object] = (),
    texts: tuple[str, ...] | None = None,
    since: float | None = None,
    untracked: Collection[str] = (),
    missing: list[str] | None = None,
) -> list[str]:
    """The existing files and folders a node names (see the module docstring): its string
    arguments (defaults included), and the texts of its code (:func:`code_texts`: ``texts``
    when computed already), noted as opened ones are (absolute, or ``./``-relative to the
    working folder). A folder's path ends with a separator. Given ``since``, when the node
    started (seconds), a folder counts when nothing in it changed since then (else it is one
    the node wrote into); else only one whose name says it is one (a trailing ``/`` or a
    suffix). ``hidden``: texts never looked at (secrets); ``untracked``: absolute paths whose
    changes do not make a folder the node's output (a progress marker it wrote untracked).
    ``missing``: given, gets the paths that look like file names and that are not there (as
    noted: ``overrides.json`` read if present; checked before a hit, in case one appears)."""
    candidates: dict[str, str] = {}  # path (~ expanded) -> the text naming it
    received = argument_strings((*args, *defaults_used(code, args, kwargs)), kwargs)
    for text in (*(code_texts(code) if texts is None else texts), *received):
        if not 0 < len(text) <= 1024 or "\n" in text or "\x00" in text or text in _NOT_PATHS:
            continue
        if hidden and text in hidden:
            continue
        if "." not in text and os.sep not in text:  # a word, not a file name
            continue
        candidates.setdefault(os.path.expanduser(text), text)
        for word in words_of(text):  # a shell command, a query: named by the text, which
            candidates.setdefault(os.path.expanduser(word), text)  # is never one missing
    found: dict[str, None] = {}
    present = maybe_existing(list(candidates))
    there = set(present)
    gone = [p for p, t in candidates.items() if p not in there and file_like(t)]
    for pattern in [p for p in candidates if has_magic(p) and not os.path.lexists(p)]:
        matches, listed = pattern_reads(pattern, MAX_READS)  # read natively: pl.read_csv("*.csv")
        if matches:  # (a pattern that matches nothing is a regular expression, a message...)
            present += [m for m in matches if m not in candidates]
            candidates.update((m, m) for m in matches)
            found.update(dict.fromkeys(listed))
    for path in present:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if file_like(candidates[path]):
                gone.append(path)
            continue
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(mode):
            found[as_opened(path)] = None
        elif not stat.S_ISDIR(mode):
            continue
        elif since is not None:  # unless the node wrote in it (natively: unseen)
            if not _changed_since(path, since, untracked):
                found[as_opened(path) + os.sep] = None
        elif candidates[path].endswith(os.sep) or "." in os.path.basename(path):
            found[as_opened(path) + os.sep] = None
    if missing is not None:
        missing += [as_opened(p) for p in gone]
    for path in gone:  # read by another node here, served to this one from a library's cache
        found.update(dict.fromkeys(as_opened(p) for p in read_in_process(candidates[path], code)))
    return list(found)


def _changed_since(folder: str, since: float, untracked: Collection[str] = ()) -> bool:
    """Whether an entry of ``folder`` (of its first :data:`MAX_READS`, at any depth) was
    modified at or after ``since``: an output folder the node wrote into (natively, unseen).
    Not an ``untracked`` one (absolute paths), nor a folder holding one."""
    todo, seen = [folder], 0
    while todo and seen <= MAX_READS:
        try:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    seen += 1
                    info = entry.stat(follow_symlinks=False)
                    if untracked and _holds(os.path.abspath(entry.path), untracked):
                        continue
                    if info.st_mtime >= since:
                        return True
                    if stat.S_ISDIR(info.st_mode):
                        todo.append(entry.path)
        except OSError:
            return True  # unreadable: not a folder to check
    return False


_NOT_PATHS = frozenset({".", "..", "./", "../", os.sep, "~"})


def files_read(
    opened: Mapping[str, bool | None],
    *,
    node: str,
    root: str | None,
    skip: Mapping[str, Any] | None = None,
    writes: tuple[str, ...] = (),
    relative: bool = True,
    store_folders: list[str] | None = None,
    named: Collection[str] = (),
    missing: Collection[str] = (),
    since: float | None = None,
    changed: list[str] | None = None,
    code: Collection[str] = (),
    file_cache: FileHashCache | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``reads`` of an action record: of the files ``opened`` while the node ran, those it
    only read and that its key does not cover (see the module docstring), by path as the
    module docstring says, each ``{"digest", "size"}`` (``"named": True`` when the node only
    named it, a database's ``"wal"``), a folder's ``{"tree"}`` or ``{"listing"}``
    (run/_folders.py). ``skip``: paths of declared inputs; ``writes``: declared outputs,
    root-relative (never reads: not at the root, nor by the name the node gave, relative to
    the working folder); ``relative``: whether a path the node gave relative is recorded so
    (``./path``), false in a worker started in another folder than the driver (its file, there,
    is recorded as any absolute path: where the check finds it); ``store_folders``: never
    inputs; ``named``: absolute paths only named;
    ``missing``: paths named (as noted) that were not there, recorded ``{"missing": True}``
    (with the folders it listed that were not there either: ``ABSENT`` in ``opened``).
    ``changed`` gets the files opened that changed since ``since``, when the node's last
    attempt started (``run/_files.py``): their digest may not be what the node read.
    ``code``: absolute paths of module sources that count as read (:func:`unpickled_sources`)."""
    base = root if root is not None else os.getcwd()
    declared = [os.path.join(base, w) for w in writes]
    outputs = [os.path.normpath(w) for w in writes]  # as the node's code names them
    stores = store_folders or []
    sources: set[str] | None = None
    found: dict[str, dict[str, Any]] = {}
    listed: list[tuple[str, str]] = []
    untracked: list[str] | None = None
    absent = list(missing)
    if any(p.endswith(ABSENT) for p in opened):  # folders listed while not there
        absent += [p[: -len(ABSENT)] + os.sep for p in opened if p.endswith(ABSENT)]
        opened = {p: how for p, how in opened.items() if not p.endswith(ABSENT)}
    for path, recorded in _only_read(opened).items():
        if recorded is not None and _names_output(recorded, outputs):
            continue  # its declared output, by the name its code gives (wherever it ran)
        if not relative:
            recorded = None
        if path.endswith(_COMPILED) or (
            path.startswith(_SYSTEM) and not path.startswith(_SHARED_MEMORY)
        ):
            continue
        target = path.rstrip(DATABASE).rstrip(os.sep)  # the file or folder itself
        if not target or (skip and target in skip) or writes_into(path, opened, declared):
            continue
        if inside(target, declared) or inside(target, stores):
            continue
        if path.endswith(LISTED):  # a folder it listed: after the files (run/_folders.py)
            listed.append((target, recorded[:-1] if recorded else folder_key(target, base)))
            continue
        if path.endswith(os.sep):  # a folder the node names
            untracked = _untracked(opened) if untracked is None else untracked
            folder = folder_read(target, base, stores, node, MAX_READS, MAX_FOLDER_BYTES, untracked)
            if folder is not None and len(found) < MAX_READS:
                found[recorded or folder_key(target, base)] = folder
            continue
        if path.endswith(".py"):  # data, unless a module was imported from it
            sources = module_sources() if sources is None else sources
            if path in sources and path not in code:
                continue
        try:
            info = os.stat(target)
        except OSError:  # gone already (a temp file, a folder removed): nothing to check
            continue
        if not stat.S_ISREG(info.st_mode) or is_library_file(target):
            continue
        if len(found) == MAX_READS:
            too_many(node, MAX_READS)
            return found
        try:
            digest = file_digest(target, file_cache=file_cache)
            entry: dict[str, Any] = {"digest": digest, "size": info.st_size}
        except (OSError, HashingError):
            continue
        if path.endswith(DATABASE):  # SQLite's: committed changes may sit in its -wal file
            entry["wal"] = wal_digest(target)
        elif path in named:
            entry["named"] = True
        found[recorded or read_key(target, base)] = entry
        if (  # (not one only named: maybe the node's output, written natively)
            changed is not None
            and since is not None
            and path not in named
            and changed_since(target, info, since)
        ):
            changed.append(recorded or read_key(target, base))
    if listed:
        listings_read(listed, opened, found, node, MAX_READS, changed)
    absent = [p for p in absent if not _names_output(p, outputs)]
    _absent(absent, found, base, [*declared, *stores, *_untracked(opened)], relative)
    return found


def _names_output(noted: str, outputs: list[str]) -> bool:
    """Whether ``noted`` (a path as noted, maybe ``./``-relative, with a folder's or a
    listing's mark) is by its name a declared output (``outputs``: root-relative, normalised),
    a file in one, or a folder holding one: a node that names ``out/report.txt`` and writes it
    at the root, run by a worker whose working folder has no ``out/``, did not look for an
    input there."""
    if not outputs or not noted.startswith(HERE):
        return False
    name = os.path.normpath(noted[len(HERE) :].rstrip(LISTED + DATABASE).rstrip(os.sep))
    folder = noted.endswith((LISTED, os.sep))
    return inside(name, outputs) or (folder and any(inside(o, [name]) for o in outputs))


#: the paths not there a node's record notes at most (each costs a ``stat`` before a hit)
MAX_MISSING = 100


def _absent(
    paths: Collection[str],
    found: dict[str, dict[str, Any]],
    base: str,
    left_out: list[str],
    relative: bool = True,
) -> None:
    """Add to ``found`` the ``paths`` (as noted) still not there after the node ran: its reads
    that are ``{"missing": True}`` (a file created later makes the hit stale); not those in
    ``left_out`` (outputs, stores, untracked), nor system ones. ``relative``: ``./paths`` are
    recorded so (else where they were looked for: :func:`files_read`)."""
    count = 0
    for path in dict.fromkeys(paths):
        if count == MAX_MISSING or len(found) >= MAX_READS:
            return
        folder = path.endswith(os.sep)
        absolute = os.path.abspath(path)
        if absolute.startswith(_SYSTEM) or inside(absolute, left_out):
            continue
        key = (
            path
            if relative and path.startswith(HERE)
            else read_key(absolute, base) + os.sep * folder
        )
        if key in found or os.path.lexists(absolute):  # there now: written, not read
            continue
        found[key] = {"missing": True}
        count += 1


def _only_read(opened: Mapping[str, bool | None]) -> dict[str, str | None]:
    """The absolute paths (a folder's ending with a separator, a listing's or a database's with
    their mark) of the files in ``opened`` that were only read: never written nor untracked, by
    whatever name (a database is the file it is). Each maps to its name relative to the working
    folder (``./path``) when it was opened or named so, else None."""
    flags: dict[str, bool | None] = {}
    relative: dict[str, str] = {}
    databases: set[str] = set()
    for path, wrote in opened.items():
        mark = LISTED if path.endswith(LISTED) else os.sep if path.endswith(os.sep) else ""
        if not mark and path.endswith(DATABASE):
            path = path[:-1]
            databases.add(os.path.abspath(path))
        absolute = os.path.abspath(path[: len(path) - len(mark)]) + mark
        if path.startswith(HERE):
            relative.setdefault(absolute, path)
        before = flags.get(absolute, False)
        flags[absolute] = (
            True if True in (before, wrote) else None if None in (before, wrote) else False
        )
    return {
        path + (DATABASE if path in databases else ""): relative.get(path)
        for path, wrote in flags.items()
        if wrote is False
    }


def _untracked(opened: Mapping[str, bool | None]) -> list[str]:
    """The absolute paths ``opened`` says are untracked (named by ``untracked(path)``, or
    opened in its block)."""
    return [os.path.abspath(p).rstrip(os.sep) for p, how in opened.items() if how is None]


def _holds(path: str, untracked: Collection[str]) -> bool:
    """Whether ``path`` is an untracked one, or a folder holding one."""
    return any(inside(u, [path]) for u in untracked)
