"""File and folder outputs of a node (the drift of its file inputs: run/_drift.py).

After a node succeeds, the worker stores what it declared with ``writes=`` and
every ``File``/``Directory`` it returned as an output (:func:`capture_outputs`); both must lie
inside the workflow's root folder, and are named by their root-relative path, so teammates
whose checkouts live in other folders share the record. A returned ``File`` becomes an output
record of serializer ``file`` (``directory``) that names the stored content and the path;
downstream nodes receive a ``File`` pointing at ``root/path``
(:func:`file_value`), and their keys follow the content and the path. A ``File`` or
``Directory`` below the root *inside* an output (a dict of reports, a list of plots, an
object) is pickled root-relative and stored too (:func:`capture_nested`); loaded, it points at
the same path under the loader's root, and a cache hit puts its content back. Writes a node
makes outside what it declared (or returned) are not tracked. An output whose path is, or lies
in, a symbolic link below the root is refused (``store/_links.py``): clearing fails the node
before it runs, capturing after; nothing is deleted or stored through the link.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..define._files import Directory, File
from ..errors import OutputError, StoreError
from ..hashing._files import FileHashCache
from ..hashing._usercode import is_library_file
from ..journal._liveness import gone
from ..store import Store
from ..store._links import refuse_links
from ..store._trees import (
    DIRECTORY_SERIALIZER,
    FILE_SERIALIZER,
    already_there,
    capture_path,
    files_problem,
    path_problem,
    read_manifest,
    restore_entry,
)
from ..store._writer import remove_dead_restores

__all__ = [
    "Written",
    "capture_nested",
    "capture_outputs",
    "clear_writes",
    "file_value",
    "returned_changed",
    "unwritten_changed",
    "warn_undeclared",
]

log = logging.getLogger("etherealfabric.files")

if TYPE_CHECKING:
    from ._messages import Task

_TYPES: dict[str, type[File] | type[Directory]] = {
    FILE_SERIALIZER: File,
    DIRECTORY_SERIALIZER: Directory,
}


# -- outputs ------------------------------------------------------------------------------------
def clear_writes(root: str | None, writes: Sequence[str], *, node: str) -> None:
    """Before each attempt, empty the folders and remove the files the node declares in
    ``writes=``: they are its own (a cache hit restores them exactly as it left them), so what
    is stored after it ran is what this version wrote, never a partition an older version left
    there, nor a declared file it no longer writes. A declared path that is, or lies in, a
    symbolic link below the root fails the node before its code runs (``LinkedOutputError``,
    naming the link): nothing is deleted through it, nor any other declared output cleared
    (every path is checked before the first is touched). A link inside a declared folder goes
    (the link, never what it points to). A declared folder, and the folders a declared file
    lies in, are created."""
    if root is None:
        return
    for relative in writes:  # all of them first: a refusal leaves every declared output as is
        refuse_links(root, relative, node=node)
    swept: set[str] = set()  # folders rid of a killed run's restore copies
    for relative in writes:
        path = os.path.join(root, relative)
        try:
            if relative.endswith("/"):
                if os.path.isdir(path):
                    for entry in os.scandir(path):
                        if entry.is_dir(follow_symlinks=False):
                            import shutil  # (with bz2 and lzma: only for a declared folder)

                            shutil.rmtree(entry.path)
                        else:
                            os.unlink(entry.path)
                else:  # so that open("models/x", "w") needs no makedirs first
                    os.makedirs(path, exist_ok=True)
            else:
                if os.path.isfile(path):
                    os.unlink(path)
                # its folder, so that writing models/model.joblib needs no makedirs first
                folder = os.path.dirname(path)
                os.makedirs(folder, exist_ok=True)
                if folder not in swept:  # a killed run's copy of it
                    swept.add(folder)
                    remove_dead_restores(folder, gone)
        except OSError as exc:
            raise OutputError(
                f"node {node!r}: cannot clear its declared output {relative!r} (or create its "
                f"folder) before it runs: {exc}",
                node=node,
            ) from exc


def restore_output(
    store: Store,
    root: str,
    relative: str,
    entry: Mapping[str, Any],
    *,
    verify: bool,
    file_cache: FileHashCache | None,
    swept: set[str],
) -> int:
    """:func:`restore_entry`, then, when a file was put back, remove the copies a run killed
    in the middle of a restore left in its folder (a folder drops what is not its own); each
    folder once per record (``swept``: the folders done)."""
    if entry.get("unwritten") is True and returned_changed(store, root, relative, entry, verify=verify,
                                                  file_cache=file_cache):  # fmt: skip
        raise StoreError(
            f"{relative!r}, which the node returned but did not write (it was there before "
            "the node ran), holds other content now: it is left as it is and the node runs "
            "again",
            path=os.path.join(root, relative),
        )
    written = restore_entry(store, root, relative, entry, verify=verify, file_cache=file_cache)
    folder = os.path.dirname(os.path.join(root, relative))
    if written and entry["kind"] == "file" and folder not in swept:
        swept.add(folder)
        remove_dead_restores(folder, gone)
    return written


def returned_changed(
    store: Store,
    root: str,
    relative: str,
    entry: Mapping[str, Any],
    *,
    verify: bool,
    file_cache: FileHashCache | None,
) -> bool:
    """Whether a returned file or folder output that its node did not write (``unwritten``:
    the user's data it pointed at, a ``File`` per file of a folder it listed) is there with
    other content than recorded: a hit must never write over it, the node runs again."""
    path = os.path.join(root, *relative.rstrip("/").split("/"))
    if not os.path.lexists(path):
        return False  # missing: put back
    if entry["kind"] == "file":
        return not already_there(path, str(entry["digest"]), int(entry["size"]), file_cache)
    if not os.path.isdir(path) or os.path.islink(path):
        return True
    members = read_manifest(store, str(entry["digest"]), verify=verify)
    files = {m[0]: m for m in members if m[1] != "dir"}
    seen = 0
    for current, _dirs, names in os.walk(path):
        prefix = os.path.relpath(current, path).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        for name in names:
            member = files.get(prefix + name)
            if member is None:
                return True  # a file added to the folder
            if not already_there(os.path.join(current, name), member[2], member[3], file_cache):
                return True
            seen += 1
    return seen != len(files)  # a file removed from it


def unwritten_changed(
    store: Store, record: Mapping[str, Any], root: str | None, file_cache: FileHashCache | None
) -> str | None:
    """Why a hit of ``record`` must not be used: a file or folder its node returned but did
    not write holds other content now (:func:`returned_changed`), or the stored listing of
    such a folder cannot be read (then it cannot be told: it is left alone); None when none.
    An entry of the wrong shape (an edited journal's: a path out of the root, a mark that is
    not ``true``) raises :class:`StoreError` before anything on disk is read: the caller
    forgets the record with a warning naming its key."""
    files = record.get("files")
    if not isinstance(files, Mapping):
        return None
    base = root if root is not None else os.getcwd()
    for relative, entry in files.items():
        if not (isinstance(entry, Mapping) and "unwritten" in entry):
            continue
        problem = files_problem({relative: entry})
        if problem:
            raise StoreError(f"the record is malformed: {problem}")
        kind = "a folder" if str(relative).endswith("/") else "a file"
        try:
            changed = returned_changed(store, base, relative, entry, verify=True,
                                       file_cache=file_cache)  # fmt: skip
        except StoreError as exc:  # its listing lost or damaged: never restored over it
            return f"{relative!r}, {kind} it returned but did not write, cannot be compared with its cached result ({exc}; it is left as it is)"  # fmt: skip
        if changed:
            return (
                f"{relative!r}, {kind} it returned but did not write, changed since its "
                "cached result (it is left as it is)"
            )
    return None


def capture_outputs(
    store: Store,
    root: str | None,
    writes: Sequence[str],
    values: Mapping[str, Any],
    *,
    node: str,
    written: Written | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Store the declared writes and returned files: (output records of the returned ones,
    the record's ``files``: root-relative path → entry). A returned one not declared and not
    ``written`` by the node is marked ``unwritten`` (:func:`returned_changed`)."""
    if root is None:
        return {}, {}
    files: dict[str, dict[str, Any]] = {}
    returned: dict[str, dict[str, Any]] = {}
    try:
        for relative in writes:
            files[relative] = capture_path(store, root, relative)
        for name, value in values.items():
            if type(value) in (File, Directory):
                relative = _relative(root, value, node, name)
                if relative not in files:
                    files[relative] = _captured(store, root, relative, written)
                returned[name] = _output_record(value, relative, files[relative])
    except OutputError as exc:
        raise OutputError(f"node {node!r}: {exc}", node=node) from None
    return returned, files


def capture_nested(
    store: Store,
    root: str | None,
    relatives: Sequence[str],
    files: Mapping[str, Any],
    node: str,
    written: Written | None = None,
) -> dict[str, dict[str, Any]]:
    """Store the files and folders found inside outputs as they were stored (a ``File`` in a
    dict, a list or an object, below the root: ``define._files.storing_under``), so a cache hit
    puts them back like declared ones: the record's ``files`` entries for those not in ``files``
    yet."""
    found: dict[str, dict[str, Any]] = {}
    if root is None:
        return found
    for relative in dict.fromkeys(relatives):
        if relative in files:
            continue
        refuse_links(root, relative, node=node)  # (before the checks below follow it)
        path = os.path.join(root, *relative.rstrip("/").split("/"))
        kind = "Directory" if relative.endswith("/") else "File"
        if not (os.path.isdir(path) if kind == "Directory" else os.path.isfile(path)):
            raise OutputError(
                f"node {node!r}: an output holds {kind}({path!r}), which is not "
                f"{'a folder' if kind == 'Directory' else 'a file'} after the node ran: a File "
                "or Directory inside an output is stored with it, so it must exist (write it "
                "first, or put the path in the output as a str)",
                node=node,
            )
        try:
            found[relative] = _captured(store, root, relative, written)
        except OutputError as exc:
            raise OutputError(f"node {node!r}: {exc}", node=node) from None
    return found


class Written(NamedTuple):
    """What a node wrote: when its first attempt started (seconds), and the files it wrote
    whole through Python (absolute paths; run/_audit.py)."""

    since: float
    paths: frozenset[str] = frozenset()

    def untouched(self, path: str) -> bool:
        """Whether the node did not write the file or folder ``path``: not through Python, nor
        by its timestamps (a file system's clock lags ours by up to a tick: one the node wrote
        natively at once may be stamped before ``since``; a doubt counts as untouched, which
        costs a re-run, never an overwrite)."""
        inside = path.rstrip(os.sep) + os.sep
        if path in self.paths or any(p.startswith(inside) for p in self.paths):
            return False
        return _untouched(path, self.since)


def _captured(store: Store, root: str, relative: str, written: Written | None) -> dict[str, Any]:
    """The stored entry of a returned path, ``unwritten`` if the node did not write it."""
    entry = capture_path(store, root, relative)
    if written is not None and written.untouched(os.path.join(root, *relative.rstrip("/").split("/"))):  # fmt: skip
        entry["unwritten"] = True
    return entry


def _untouched(path: str, since: float) -> bool:
    """Whether the file, or the folder and everything in it, was last changed before ``since``."""

    def old(entry: str) -> bool:
        info = os.stat(entry)
        return max(info.st_mtime, info.st_ctime) < since

    if not os.path.isdir(path):
        return old(path)
    for current, _dirs, names in os.walk(path):
        if not old(current) or not all(old(os.path.join(current, n)) for n in names):
            return False
    return True


def _relative(root: str, value: File | Directory, node: str, output: str) -> str:
    relative = os.path.relpath(value.path, root).replace(os.sep, "/")
    if relative == "." or relative.startswith("../"):
        raise OutputError(
            f"node {node!r} returned {value!r} as output {output!r}, outside the workflow's root "
            f"folder {root}: stored file outputs live under the root (pass root= to the "
            "Workflow, or write the file below it)",
            node=node,
        )
    return relative + "/" if isinstance(value, Directory) else relative


def _output_record(
    value: File | Directory, relative: str, entry: Mapping[str, Any]
) -> dict[str, Any]:
    from ..hashing._values import hash_value  # (every value's hashing: when a file is output)

    kind = DIRECTORY_SERIALIZER if isinstance(value, Directory) else FILE_SERIALIZER
    return {
        "digest": entry["digest"],
        "serializer": kind,
        "size": entry["size"],
        "type": f"{type(value).__module__}.{type(value).__qualname__}",
        "inline": False,
        "path": relative,
        # what downstream keys use: the content and where it is (the node gets the path)
        "value": hash_value((f"{kind}-output", relative, entry["digest"])),
    }


def file_value(record: Mapping[str, Any], root: str | None) -> File | Directory | None:
    """The ``File``/``Directory`` an output record of a returned file stands for, else None."""
    kind = _TYPES.get(record.get("serializer", ""))
    if kind is None:
        return None
    relative = record.get("path")
    if path_problem(relative, folder=kind is Directory):
        raise OutputError(f"the file output record names an unsafe path {relative!r}", node="")
    base = root if root is not None else os.getcwd()
    return kind(os.path.join(base, *str(relative).rstrip("/").split("/")))


# -- undeclared writes ---------------------------------------------------------------------------
#: the (run, node) pairs warned about already: a map's children share their node's warning
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()
#: files named in one warning (the rest are counted)
_SHOWN = 5


def warn_undeclared(written: Sequence[str], task: Task, files: Mapping[str, Any]) -> list[str]:
    """Warn that ``task``'s node wrote files whole (``written``, as the audit hook saw them:
    run/_audit.py) that it did not declare: those still there, below the root or the working
    folder (not in a hidden folder there), not among its stored ``files`` (root-relative, a
    folder's ending in ``/``) nor in a store's folder, nor compiled code. Returns them (absolute); warns once per node and run."""
    if not written:
        return []
    base = task.root if task.root is not None else os.getcwd()
    here = os.getcwd()
    kept = [os.path.join(base, *relative.rstrip("/").split("/")) for relative in files]
    kept.extend(task.store.local_folders())
    found: list[str] = []
    for path in dict.fromkeys(os.path.abspath(p) for p in written):
        folder = base if _below(path, base) else here if _below(path, here) else None
        if folder is None or any(_below(path, k) for k in kept):
            continue
        if any(part.startswith(".") for part in os.path.relpath(path, folder).split(os.sep)):
            continue  # a tool's own (.cache/, .git/, .ipynb_checkpoints/), not a result
        if path.endswith((".pyc", ".pyo")) or is_library_file(path) or not os.path.isfile(path):
            continue  # a temporary file, gone already, or bytecode an import wrote
        found.append(path)
    if not found:
        return found
    family = task.node.split("[", 1)[0]  # a map's children: one warning for all
    with _warned_lock:
        if (task.run_id, family) in _warned:
            return found
        if len(_warned) > 10_000:
            _warned.clear()
        _warned.add((task.run_id, family))
    names = [os.path.relpath(p, base) if _below(p, base) else p for p in found]
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    fix = (
        f"return File({names[0]!r}) in its output (a mapped node cannot declare writes=)"
        if family != task.node
        else f"declare it (@node(writes=[{names[0]!r}])), or return File(...)"
    )
    log.warning(
        "node %r wrote %s%s without declaring it: the cache does not store such a file, so a "
        "later run neither restores it when it is deleted nor undoes an edit of it, and a node "
        "reading it would see the edit where a fresh run would not. To fix, %s; or write it "
        "inside etherealfabric.untracked() if no result depends on it",
        family, shown, more, fix,
    )  # fmt: skip
    return found


def _below(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep)
    return path == folder or path.startswith(folder + os.sep)
