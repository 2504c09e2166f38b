"""Files and folders in the store: capture a declared output, put it back on a cache hit.

A node's declared file outputs (``writes=``, or a returned ``File``/``Directory``) are stored
as objects like any other output:

- a **file** is one object, the bytes of the file (its digest is the file's content digest,
  the same one :func:`~etherealfabric.hashing._files.file_digest` computes);
- a **folder** is one *manifest* object, canonical JSON listing every entry below it (sorted
  relative paths: folders, and files with their digest, size and executable bit), plus one
  object per file. The manifest's digest is the folder's digest.

The action record names them under ``files`` (root-relative path → entry)::

    "files": {"reports/summary.md": {"kind": "file", "digest": ..., "size": 812, "exec": false},
              "models/": {"kind": "dir", "digest": <manifest>, "size": 412, "bytes": 10240,
                          "count": 4}}

``size`` is always the size of the object named (the manifest's, for a folder), so a record's
objects are checked alike; ``bytes`` and ``count`` describe the folder's content.

:func:`restore_entry` puts an entry back under a root: each file that is missing or whose
content differs is written to a temp file next to it and renamed over it (a reader never sees
half a file). The copy is a reflink where the file system can (``FICLONE``: btrfs, XFS), else
``copy_file_range``/``sendfile`` (the kernel copies), else a stream; never a hard link, which a
later in-place write to the restored file would turn into a change of the stored object. The
copy is checked against its digest (``verify``): in the home's own store, whose objects never
change once written, by hashing the object while the kernel copies it (on another core); in a
store others can write, by hashing the copy once it is made. A restored folder is made exactly
the recorded one: what is below it and not in its manifest (a stale partition, a file a later
version of the node wrote) is removed. Nothing outside a declared folder is ever deleted.

No symbolic link is followed to delete or write (``store/_links.py``): an output whose path,
or a folder on the way to it below the root, is a link is refused (capturing and restoring
raise ``LinkedOutputError``); inside a restored folder a link where a file or folder belongs
is replaced by it, and one the manifest does not name is removed (the link, never its target).

Paths read from a record or a manifest may come from a store others write: each is checked
(:func:`path_problem`) before it becomes a path, so nothing is ever written outside the root.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import functools
import json
import logging
import os
import posixpath
import stat
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ArtifactMissingError, CorruptArtifactError, OutputError, StoreError
from ..hashing._digest import digest_bytes, is_digest
from ..hashing._files import FileHashCache, file_digest, mapped_digest
from ._base import Store, check_digest
from ._json import parse_json
from ._links import real_folders, refuse_links
from ._writer import restore_temp_name

log = logging.getLogger("etherealfabric")

__all__ = [
    "DIRECTORY_SERIALIZER",
    "FILE_SERIALIZER",
    "already_there",
    "capture_path",
    "entry_objects",
    "files_problem",
    "manifest_objects",
    "path_problem",
    "read_manifest",
    "restore_entry",
]

#: The serializer names of outputs that are a returned ``File`` / ``Directory``.
FILE_SERIALIZER = "file"
DIRECTORY_SERIALIZER = "directory"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20
_FICLONE = 0x40049409  # Linux ioctl: make the destination share the source's extents


# -- paths ------------------------------------------------------------------------------------
def path_problem(path: object, *, folder: bool | None = None) -> str:
    """Why ``path`` is not a safe root-relative path; ``""`` if it is.

    Safe: a non-empty str of ``/``-separated names, normalised (no ``.``, ``..`` or empty
    names, no leading ``/``, no backslash or NUL). ``folder``: it must (True) or must not
    (False) end with ``/``.
    """
    if not isinstance(path, str) or not path:
        return "not a non-empty string"
    bare = path[:-1] if path.endswith("/") else path
    if folder is not None and path.endswith("/") != folder:
        return "a folder must end with '/', a file must not"
    if "\\" in path or "\0" in path or bare.startswith("/"):
        return f"{path!r} is not a relative path"
    if not bare or posixpath.normpath(bare) != bare or bare.split("/")[0] in ("..", "."):
        return f"{path!r} is not a normalised path inside the root"
    return ""


def _under(root: str, relative: str) -> str:
    return os.path.join(root, *relative.rstrip("/").split("/"))


# -- capturing ----------------------------------------------------------------------------------
def capture_path(store: Store, root: str, relative: str) -> dict[str, Any]:
    """Store the file or folder ``relative`` (under ``root``) and return its record entry.

    A relative path ending with ``/`` must be a folder, any other a file;
    :class:`OutputError` (naming the path) if it is missing or of the other kind.
    """
    refuse_links(root, relative)  # (LinkedOutputError: an OutputError naming the link)
    path = _under(root, relative)
    want_folder = relative.endswith("/")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise OutputError(
            f"the declared output {relative!r} was not written: {path} does not exist after "
            "the node ran (paths in writes= are relative to the workflow's root folder; use "
            "etherealfabric.root_path(...) to write there whatever the current folder)",
            node="",
        ) from None
    if stat.S_ISDIR(info.st_mode) != want_folder:
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a folder"
        hint = f"declare it as {relative.rstrip('/') + '/'!r}" if not want_folder else "fix it"
        raise OutputError(f"the declared output {relative!r} is {what} ({path}): {hint}", node="")
    if want_folder:
        return _capture_tree(store, path)
    digest, size = _store_file(store, path)
    return {"kind": "file", "digest": digest, "size": size, "exec": _executable(info)}


def _executable(info: os.stat_result) -> bool:
    return bool(info.st_mode & stat.S_IXUSR)


def _store_file(store: Store, path: str) -> tuple[str, int]:
    """Stream a file into the store as an object; its digest and size."""
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with store.writer(inline_limit=-1) as writer:
        try:
            with open(path, "rb", buffering=0) as fh:
                while count := fh.readinto(buffer):
                    writer.write(view[:count])
        except OSError as exc:
            raise OutputError(f"cannot read the declared output {path}: {exc}", node="") from exc
        stored = writer.commit()
    return stored.digest, stored.size


def _capture_tree(store: Store, folder: str) -> dict[str, Any]:
    entries: list[list[Any]] = []
    total = 0
    for relative, info in _walk(folder):
        if stat.S_ISDIR(info.st_mode):
            entries.append([relative + "/", "dir"])
        elif stat.S_ISREG(info.st_mode):
            digest, size = _store_file(store, os.path.join(folder, *relative.split("/")))
            entries.append([relative, "file", digest, size, _executable(info)])
            total += size
    data = _manifest_bytes(entries)
    digest = store.put_bytes(data)
    return {
        "kind": "dir",
        "digest": digest,
        "size": len(data),
        "bytes": total,
        "count": len(entries),
    }


def _walk(folder: str, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, stat) below ``folder`` in sorted order; symlinks followed, loops refused."""
    try:
        with os.scandir(os.path.join(folder, prefix) if prefix else folder) as scan:
            children = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        raise OutputError(
            f"cannot read the declared output folder {folder}: {exc}", node=""
        ) from exc
    for child in children:
        relative = f"{prefix}/{child.name}" if prefix else child.name
        try:
            info = os.stat(child.path)
        except OSError as exc:
            raise OutputError(
                f"cannot read {child.path} in a declared output: {exc}", node=""
            ) from exc
        yield relative, info
        if stat.S_ISDIR(info.st_mode):
            if relative.count("/") > 64:
                raise OutputError(
                    f"{child.path}: folders nested too deeply (a symlink loop?)", node=""
                )
            yield from _walk(folder, relative)


def _manifest_bytes(entries: list[list[Any]]) -> bytes:
    body = {"format": MANIFEST_FORMAT, "entries": entries}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


# -- what a record names -----------------------------------------------------------------------
def files_problem(files: object) -> str:
    """Why a record's ``files`` is malformed; ``""`` if it is well formed (or absent)."""
    if files is None:
        return ""
    if not isinstance(files, dict):
        return "its 'files' is not an object"
    for relative, entry in files.items():
        if not isinstance(entry, dict) or entry.get("kind") not in ("file", "dir"):
            return f"its file entry {relative!r} is not a file or folder entry"
        problem = path_problem(relative, folder=entry["kind"] == "dir")
        if problem:
            return f"its file entry {relative!r} is unsafe: {problem}"
        if not isinstance(entry.get("digest"), str) or not is_digest(entry["digest"]):
            return f"its file entry {relative!r} has no valid digest"
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return f"its file entry {relative!r} has no valid size"
        if entry.get("unwritten", True) is not True:  # (run/_files.py: true or absent)
            return f"its file entry {relative!r} has an 'unwritten' mark that is not true"
    return ""


def entry_objects(files: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """The digests a record's ``files`` names directly: files, and folders' manifests."""
    return [str(e["digest"]) for e in (files or {}).values() if isinstance(e, Mapping)]


def read_manifest(store: Store, digest: str, *, verify: bool = True) -> list[list[Any]]:
    """A folder manifest's entries, each path checked; :class:`CorruptArtifactError` if bad."""
    data = store.read_bytes(digest, verify=verify)
    try:
        body = parse_json(data)
        entries = body["entries"]
        if body.get("format") != MANIFEST_FORMAT or not isinstance(entries, list):
            raise ValueError("not a folder manifest")
        for entry in entries:
            _check_manifest_entry(entry)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptArtifactError(
            f"the folder manifest {digest} at {store.location(digest)} is unusable: {exc}",
            path=store.location(digest),
            digest=digest,
        ) from None
    return entries


def _check_manifest_entry(entry: Any) -> None:
    folder = entry[1] == "dir"
    problem = path_problem(entry[0], folder=folder)
    if problem:
        raise ValueError(f"unsafe entry: {problem}")
    if not folder and not (entry[1] == "file" and is_digest(entry[2]) and entry[3] >= 0):
        raise ValueError(f"malformed entry {entry!r}")


def manifest_objects(store: Store, files: Mapping[str, Mapping[str, Any]] | None) -> set[str]:
    """The file digests the folder manifests of ``files`` list (unreadable ones: none)."""
    found: set[str] = set()
    for entry in (files or {}).values():
        if isinstance(entry, Mapping) and entry.get("kind") == "dir":
            with contextlib.suppress(StoreError, OSError):
                found.update(
                    e[2] for e in read_manifest(store, str(entry["digest"])) if e[1] != "dir"
                )
    return found


# -- restoring ----------------------------------------------------------------------------------
def restore_entry(
    store: Store,
    root: str,
    relative: str,
    entry: Mapping[str, Any],
    *,
    verify: bool = True,
    file_cache: FileHashCache | None = None,
) -> int:
    """Put the file or folder ``entry`` back at ``root/relative``; how many files it wrote.

    Files already there with the recorded content are left as they are (their digest comes
    from ``file_cache`` when their stat is unchanged). Raises :class:`ArtifactMissingError` or
    :class:`CorruptArtifactError` (with ``digest``) when a stored object is unusable, a
    :class:`StoreError` for an entry of the wrong shape or a path out of ``root`` (a record of
    an edited journal: records of shared stores were checked when read).
    """
    problem = files_problem({relative: entry})
    if problem:
        raise StoreError(f"the record is malformed: {problem}")
    refuse_links(root, relative)  # never through a link: it would act on what it points to
    names = relative.rstrip("/").split("/")
    if entry["kind"] == "file":
        folder = real_folders(root, names[:-1], replace_links=False)
        item = (str(entry["digest"]), int(entry["size"]), bool(entry.get("exec", False)))
        target = os.path.join(folder, names[-1])
        return _restore_file(store, target, *item, verify=verify, file_cache=file_cache)
    written = 0
    target = real_folders(root, names, replace_links=False)
    members = read_manifest(store, str(entry["digest"]), verify=verify)
    ready: set[str] = {""}  # folders below target made real already (links inside replaced)
    for member in members:
        name = member[0].rstrip("/")
        folder = name if member[1] == "dir" else name.rpartition("/")[0]
        if folder not in ready:
            real_folders(target, folder.split("/"), replace_links=True)
            parts = folder.split("/")
            ready.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        if member[1] != "dir":
            written += _restore_file(
                store, _under(target, name), member[2], member[3], bool(member[4]),
                verify=verify, file_cache=file_cache,
            )  # fmt: skip
    return written + _remove_extras(target, members)


def _remove_extras(folder: str, members: list[list[Any]]) -> int:
    """Remove what is below ``folder`` but not in its manifest (files a later version of the
    node wrote there, a stale partition...): the folder is then exactly the one recorded. How
    many entries it removed."""
    files = {m[0] for m in members if m[1] != "dir"}
    folders = {m[0].rstrip("/") for m in members if m[1] == "dir"}
    removed = 0
    for current, dirs, names in os.walk(folder, topdown=False):
        prefix = os.path.relpath(current, folder).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        for name in names:
            if prefix + name not in files:
                os.unlink(os.path.join(current, name))
                removed += 1
        for name in dirs:
            relative, path = prefix + name, os.path.join(current, name)
            if relative in folders:
                continue
            if os.path.islink(path):
                os.unlink(path)
            else:
                os.rmdir(path)  # its extras are gone already (bottom-up)
            removed += 1
    if removed:
        log.info(
            "restored the folder %s as recorded: removed %d entries not in it", folder, removed
        )
    return removed


def _restore_file(
    store: Store,
    target: str,
    digest: str,
    size: int,
    executable: bool,
    *,
    verify: bool,
    file_cache: FileHashCache | None,
) -> int:
    if already_there(target, digest, size, file_cache):
        return 0
    folder = os.path.dirname(target)  # a real folder (restore_entry): no link on the way
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(target).st_mode):  # (a link is replaced, never followed)
            raise StoreError(f"cannot restore the file {target}: a folder is there", path=target)
    temp = os.path.join(folder, restore_temp_name())
    try:
        _copy_object(store, digest, temp, verify=verify)
        if executable:
            os.chmod(temp, os.stat(temp).st_mode | 0o111)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return 1


def already_there(target: str, digest: str, size: int, file_cache: FileHashCache | None) -> bool:
    """Whether the regular file at ``target`` holds ``digest`` (of ``size`` bytes)."""
    try:
        info = os.lstat(target)  # a symbolic link is not the file: it is replaced
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        return False
    try:
        return file_digest(target, file_cache=file_cache) == digest
    except Exception:  # unreadable: write it again
        return False


def _copy_object(store: Store, digest: str, temp: str, *, verify: bool) -> None:
    """Copy the object ``digest`` to the new file ``temp``, checked against its digest."""
    source = _local_object(store, digest)
    if source is None:
        _stream_object(store, digest, temp, verify=verify)
        return
    if store.always_verify:  # others can write the source: check the copy, after it is made
        _copy_file(source, temp)
        check_digest(file_digest(temp), digest, store.location(digest))
        return
    hashing = None
    if verify and os.path.getsize(source) >= _HASH_ALONGSIDE:
        # the home's own objects never change once written: hash the source, mapped, on a
        # second core while the kernel copies it (both release the GIL)
        hashing = _pool().submit(mapped_digest, source)
    try:
        _copy_file(source, temp)
    finally:
        actual = hashing.result() if hashing is not None else None
    if verify:
        check_digest(actual or mapped_digest(source), digest, store.location(digest))


_HASH_ALONGSIDE = 8 << 20  # below this, a thread hand-off costs more than the overlap saves


@functools.lru_cache(maxsize=1)
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ef-restore-hash")


def _copy_file(source: str, temp: str) -> None:
    with open(source, "rb") as src, open(temp, "xb") as dst:
        if not _reflink(src, dst):
            _kernel_copy(src, dst)


def _local_object(store: Store, digest: str) -> str | None:
    """The object's file when the store is a local folder that holds it."""
    object_path = getattr(store, "object_path", None)
    if object_path is None:
        return None
    path = str(object_path(digest))
    if not os.path.isfile(path):
        raise ArtifactMissingError(
            f"object {digest} is missing from the store {store.url} (expected at {path}); the "
            "node that wrote this file runs again",
            path=path,
            digest=digest,
        )
    return path


def _reflink(src: Any, dst: Any) -> bool:
    """Share the source's extents (copy-on-write); False where the file system cannot."""
    try:
        import fcntl

        fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
    except (OSError, ImportError, AttributeError):
        return False
    return True


def _kernel_copy(src: Any, dst: Any) -> None:
    """Let the kernel copy (``copy_file_range``); where it cannot, stream the bytes."""
    import shutil  # here: a run that restores no tree never imports it

    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        remaining = os.fstat(src.fileno()).st_size
        try:
            while remaining > 0:
                done = copy_range(src.fileno(), dst.fileno(), min(remaining, 1 << 30))
                if done == 0:
                    break
                remaining -= done
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
        else:
            if remaining == 0:
                return
        src.seek(0)
        dst.seek(0)
        dst.truncate()
    shutil.copyfileobj(src, dst, _CHUNK)


def _stream_object(store: Store, digest: str, temp: str, *, verify: bool) -> None:
    import shutil

    with store.open_object(digest, verify=verify) as src, open(temp, "xb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def manifest_digest_of(entries: list[list[Any]]) -> str:
    """The digest a manifest of ``entries`` is stored under (for tests and tools)."""
    return digest_bytes(_manifest_bytes(entries))
