"""A store in a local (or mounted) folder.

Layout under the root::

    objects/ab/<digest>          an object, named by the digest of its bytes
    objects/.tmp/.tmp-<random>   an object being written
    actions/ab/<key>.json        an action record
    actions/.tmp/.tmp-<random>   an action record being written
    checkpoints/ab/<key>         the intra-node checkpoint of a running node (header + bytes)
    checkpoints/.tmp/.tmp-<random>  a checkpoint being written

A ``checkpoints/ab`` folder is removed with its last checkpoint (it would otherwise stay, empty,
after every run): a writer whose folder vanished recreates it (``LocalStore._in_folder``).

Temp files live in a ``.tmp`` folder next to the final folders (the digest, hence the final
folder, is only known once the object is written). Keeping them under ``objects/`` means a
rename never crosses file systems, even when ``objects/`` is a symlink to another disk.

Every write is atomic: temp file → (``durable``: flush and ``fsync`` it) → ``os.replace`` →
(``durable``: ``fsync`` the folder, and the parents of folders it created). Without
``durable`` a write survives a killed process but maybe not a power loss; with it, it survives
both. Readers never see a partly written object, record or checkpoint under its final name.

A checkpoint file starts with a header (a magic line and the digest of the bytes that follow,
see :func:`~etherealfabric.store._base.checkpoint_header`); a checkpoint whose bytes do not match
is ignored with a warning.

**Trusted or shared.** The home's own store (the default) is trusted: records and checkpoints
are plain files, read as they are, at no signing cost. A *shared* folder
(``LocalStore(path, shared=True)``; ``ETHEREALFABRIC_STORE`` naming a folder other than the
home) can be written by others, so it is treated exactly like an object store: records and
checkpoints are signed with ``ETHEREALFABRIC_SIGNING_KEY`` (or ``signing_key=``) and checked
when read (:class:`~etherealfabric.store._trust.UntrustedEntries`: a pickle is never loaded
from an unsigned entry; an unsigned, tampered, foreign or malformed one is a miss with a
warning), and every object read is verified against its digest (``verify=False`` is ignored).

**Planted entries.** Where an entry belongs, others could put something that is not a file (a
folder, a FIFO, a symbolic link). Reads take it as absent (never followed nor blocked on);
a write, an exclusive create and a delete remove it first, with a warning naming it (a folder
with ``shutil.rmtree``, which never follows symbolic links); :meth:`LocalStore.damaged_entries`
lists them for ``cache verify`` and ``cache gc``. In a shared folder the same holds for the
folders between the root and an entry (``objects``, ``objects/ab``, ``objects/.tmp``...): one
that is not a real folder (a symbolic link to a folder outside the store) is never gone
through, so nothing is read, written or deleted outside the store; a write replaces it with a
real folder, and ``damaged_entries`` lists it. (The home's own ``objects/`` may be a link to
another disk: the home is trusted.)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from ..errors import StoreError
from ..hashing._files import mapped_digest
from ._base import EntryInfo, Store, action_name, checkpoint_name, object_name
from ._writer import create_temp_file, is_temp_file, remove_path, remove_quietly

if TYPE_CHECKING:
    from ._trust import UntrustedEntries

__all__ = ["LocalStore"]

log = logging.getLogger("etherealfabric.store")

_T = TypeVar("_T")

_TEMP = ".tmp"
_KINDS = ("objects", "actions", "checkpoints")
_FOLDER_TRIES = 20  # times a write recreates a folder removed under it
_MAP_FROM = 1 << 20  # smaller objects are read: a map's set-up costs more than the copy


class LocalStore(Store):
    """Objects and action records in a folder; see the module docstring for the layout.

    ``shared=True`` for a folder that others can write (not the home's own store): records and
    checkpoints are then signed and verified like an object store's, with ``signing_key``
    (default: ``ETHEREALFABRIC_SIGNING_KEY``), which is ignored for a private store.

    Folders are created on demand. Picklable: it holds only the root, the ``durable`` and
    ``shared`` flags, the signing key of a shared store (so that worker processes sign what
    they publish) and a cache of the folders known to exist (not pickled).
    """

    _untrusted: UntrustedEntries | None  # set for a shared folder

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durable: bool = False,
        shared: bool = False,
        signing_key: bytes | str | None = None,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self.url = Path(self.root).as_uri()
        self.shared = shared
        self.always_verify = shared  # others may have changed the bytes
        self._untrusted = None
        if shared:  # (the signing modules are imported for a shared folder only)
            from ._signing import load_signer
            from ._trust import UntrustedEntries

            self._untrusted = UntrustedEntries(load_signer(signing_key))
        self._dirs: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_dirs"]  # a per-process cache
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._dirs = set()

    def as_shared(self) -> LocalStore:
        """This folder as a shared (untrusted) store: itself if it already is one."""
        return self if self.shared else LocalStore(self.root, durable=self.durable, shared=True)

    @property
    def signed(self) -> bool:
        """True for a shared store with a signing key (its records are signed and checked)."""
        return self._untrusted is not None and self._untrusted.signer is not None

    @property
    def key_id(self) -> str | None:
        """The non-secret name of a shared store's signing key; None without one."""
        return self._untrusted.key_id if self._untrusted is not None else None

    # -- paths -----------------------------------------------------------------------------------
    def entry_location(self, name: str) -> str:
        """The file of the entry ``name``."""
        return os.path.join(self.root, *name.split("/"))

    def object_path(self, digest: str) -> str:
        """Where the object ``digest`` lives (validated); the same as :meth:`location`."""
        return self.entry_location(object_name(digest))

    def action_path(self, key: str) -> str:
        """Where the action record of ``key`` lives (validated)."""
        return self.entry_location(action_name(key))

    def checkpoint_path(self, key: str) -> str:
        """Where the checkpoint of ``key`` lives (validated)."""
        return self.entry_location(checkpoint_name(key))

    def _temp_dir(self, kind: str) -> str:
        return os.path.join(self.root, kind, _TEMP)

    # -- the store's primitives --------------------------------------------------------------------
    def _digest_of(self, fp: BinaryIO) -> str:
        """The home's own objects are never rewritten in place: hashed through a memory map
        (half the CPU of reading them). A shared folder's are read: others could truncate
        them while mapped."""
        if self.always_verify or os.fstat(fp.fileno()).st_size < _MAP_FROM:
            return super()._digest_of(fp)
        return mapped_digest(fp)

    def open_entry(self, name: str) -> BinaryIO:
        """The entry's bytes; an entry that is not a regular file (a FIFO, a device, a folder,
        a symbolic link: what a teammate with write access to a shared folder could plant) is
        absent, opened without blocking or following it: a miss, recomputed and replaced."""
        path = self.entry_location(name)
        planted = self._planted_under(os.path.dirname(path))
        if planted is not None:
            raise FileNotFoundError(f"{planted} is not a folder of the store")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (IsADirectoryError, NotADirectoryError) as exc:
            raise FileNotFoundError(f"{path} is not a regular file") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symbolic link
                raise FileNotFoundError(f"{path} is a symbolic link, not an entry") from exc
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileNotFoundError(f"{path} is not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def entry_info(self, name: str) -> EntryInfo | None:
        """Size and time of a regular file (a symbolic link is not followed: absent)."""
        path = self.entry_location(name)
        if self._planted_under(os.path.dirname(path)) is not None:
            return None
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return EntryInfo(info.st_size, info.st_mtime) if stat.S_ISREG(info.st_mode) else None

    def write_entry(self, name: str, *parts: bytes) -> None:
        """Write ``parts`` to a temp file, then rename it (without joining them in memory)."""
        fp, temp_path = self._open_temp(name.partition("/")[0])
        try:
            with fp:
                for part in parts:
                    fp.write(part)
                fp.flush()
                if self.durable:
                    os.fsync(fp.fileno())
            self._move(temp_path, self.entry_location(name))
        except OSError as exc:
            remove_quietly(temp_path)
            raise self._unwritable(exc) from exc
        except BaseException:
            remove_quietly(temp_path)
            raise

    def put_file(self, name: str, path: str, size: int) -> None:
        """Rename the finished temp file ``path`` (in ``objects/.tmp``) to its final name.

        An object already there is replaced, not kept: a rename costs what keeping it costs,
        and a copy damaged in place (same size, other bytes) is repaired by the next write of
        its content, a ``run --force`` of its node for one."""
        final = self.entry_location(name)
        try:
            if self.durable:
                _fsync_path(path)
            self._move(path, final)
        except OSError as exc:
            raise self._unwritable(exc) from exc

    def create_entry(self, name: str, data: bytes) -> bool:
        """Write a temp file, then hard-link it to the final name: fails if the name exists."""
        final = self.entry_location(name)
        fp, temp_path = self._open_temp(name.partition("/")[0])
        try:
            with fp:
                fp.write(data)
            try:
                self._in_folder(os.path.dirname(final), lambda: os.link(temp_path, final))
            except FileExistsError:
                if not self._remove_planted(final):
                    return False  # a real entry: someone else created it
                try:
                    os.link(temp_path, final)
                except FileExistsError:
                    return False
            return True
        except OSError as exc:
            raise self._unwritable(exc) from exc
        finally:
            remove_quietly(temp_path)

    def delete_entry(self, name: str) -> None:
        """Remove the entry (a folder planted in its place too, see the module); a checkpoint's
        prefix folder goes with its last checkpoint (a writer recreates it: ``_in_folder``)."""
        path = self.entry_location(name)
        if self._planted_under(os.path.dirname(path)) is not None:
            return  # nothing of the store's is behind it (damaged_entries names it)
        try:
            os.unlink(path)
            if name.startswith("checkpoints/"):
                with contextlib.suppress(OSError):  # not empty (ENOTEMPTY, EEXIST), or gone
                    os.rmdir(os.path.dirname(path))
        except FileNotFoundError:
            pass
        except OSError as exc:  # EISDIR (Linux) or EPERM (macOS) for a folder
            try:
                planted = self._remove_planted(path)
            except StoreError:
                planted = False
            if not planted:
                raise StoreError(f"cannot remove {path}: {exc}", path=path) from exc

    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        """``(prefix, file name)`` of the files in the two-hex-digit folders of ``kind``."""
        for folder in self._prefixes(kind):
            if folder.is_dir(follow_symlinks=not self.shared):
                for entry in _entries(folder.path):
                    yield folder.name, entry.name

    def damaged_entries(self, kind: str) -> Iterator[str]:
        """The entries under ``kind`` that are not regular files, and in a shared folder the
        folders on their way that are not real folders (planted: see the module)."""
        if self._planted_under(os.path.join(self.root, kind)) is not None:
            yield kind
            return
        for folder in self._prefixes(kind):
            if not folder.is_dir(follow_symlinks=not self.shared):
                yield f"{kind}/{folder.name}"
                continue
            for entry in _entries(folder.path):
                if not entry.is_file(follow_symlinks=False):
                    yield f"{kind}/{folder.name}/{entry.name}"

    def _prefixes(self, kind: str) -> Iterator[os.DirEntry[str]]:
        """The two-hex-digit entries of ``kind`` (none through a planted ``kind`` folder)."""
        folder = os.path.join(self.root, kind)
        if self._planted_under(folder) is None:
            for entry in _entries(folder):
                if len(entry.name) == 2 and _is_hex(entry.name):
                    yield entry

    def open_temp(self) -> tuple[BinaryIO, str]:
        """A temp file in ``objects/.tmp``: on the file system of the final objects."""
        return self._open_temp("objects")

    def temp_folders(self) -> list[str]:
        """``objects/.tmp``, ``actions/.tmp`` and ``checkpoints/.tmp`` (not through a planted
        folder)."""
        folders = [self._temp_dir(kind) for kind in _KINDS]
        return [folder for folder in folders if self._planted_under(folder) is None]

    def local_folders(self) -> list[str]:
        """The store's folder (its temp folders are inside)."""
        return [self.root]

    def refresh_entry(self, name: str) -> None:
        """Set the entry's modification time to now (gc then sees it as recent)."""
        path = self.entry_location(name)
        if self._planted_under(os.path.dirname(path)) is None:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, follow_symlinks=False)

    # -- helpers -----------------------------------------------------------------------------------
    def _open_temp(self, kind: str) -> tuple[BinaryIO, str]:
        folder = self._temp_dir(kind)
        try:
            return self._in_folder(folder, lambda: create_temp_file(folder))
        except OSError as exc:
            raise self._unwritable(exc) from exc

    def _move(self, temp_path: str, final: str) -> None:
        """Rename a finished temp file to its final name, creating the folder if needed (and
        removing a folder planted there: a file cannot replace one)."""
        folder = os.path.dirname(final)
        try:
            self._in_folder(folder, lambda: os.replace(temp_path, final))
        except IsADirectoryError:
            self._remove_planted(final)
            os.replace(temp_path, final)
        if self.durable:
            _fsync_path(folder)

    def _planted_under(self, folder: str) -> str | None:
        """In a shared folder, the first of the folders from the root down to ``folder`` that
        exists and is not a real folder (a symbolic link: planted, see the module); None if
        there is none, and always for the home's own store."""
        if not self.shared:
            return None
        path = self.root
        for part in os.path.relpath(folder, self.root).split(os.sep):
            if part in ("", ".", ".."):
                continue
            path = os.path.join(path, part)
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISDIR(mode):
                return path
        return None

    def _remove_planted(self, path: str, *, folder: bool = False) -> bool:
        """Remove what is at the entry ``path`` if it is not a regular file (a folder, a FIFO,
        a symbolic link: planted, see the module), with a warning; True if it was removed.
        A regular file is left alone (False). ``folder``: ``path`` is where one of the store's
        folders belongs (:meth:`_planted_under` found something else there, a file too)."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISREG(mode) and not folder:
            return False
        if folder and stat.S_ISDIR(mode):  # a real folder now: another thread replaced the
            return False  # planted one first (and may have written into it since)
        belongs = "a folder of the store" if folder else "a stored file"
        kinds = {stat.S_ISDIR: "a folder", stat.S_ISLNK: "a symbolic link", stat.S_ISREG: "a file"}
        what = next((name for test, name in kinds.items() if test(mode)), "not a file")
        log.warning(
            "removing %s (in the store %s): it is %s where %s belongs, which no "
            "EtherealFabric process makes (someone with write access to the store did)",
            path, self.root, what, belongs,
        )  # fmt: skip
        try:
            return remove_path(path, files=folder, folders=not folder)
        except OSError as exc:
            raise StoreError(
                f"cannot remove {path}, {what} where {belongs} belongs: "
                f"{exc.strerror or exc}. Remove it by hand.",
                path=path,
            ) from exc

    def _in_folder(self, folder: str, action: Callable[[], _T]) -> _T:
        """``action()``, after making sure ``folder`` exists (again, if it was removed: the
        deletion of another process's last checkpoint of a prefix removes its folder, maybe
        again right after we recreated it). In a shared folder, a folder on the way that is not
        a real folder (planted) is replaced first."""
        planted = self._planted_under(folder)
        if planted is not None:
            self._remove_planted(planted, folder=True)
            self._dirs = {d for d in self._dirs if not d.startswith(planted)}
        self._ensure_dir(folder)
        for _ in range(_FOLDER_TRIES):
            try:
                return action()
            except FileNotFoundError:  # removed behind our back since we cached it
                self._dirs.discard(folder)
                self._ensure_dir(folder)
        return action()

    def _ensure_dir(self, folder: str) -> None:
        if folder in self._dirs:
            return
        created = _missing_folders(folder) if self.durable else []
        for _ in range(_FOLDER_TRIES):
            try:
                os.makedirs(folder, exist_ok=True)
                break
            except FileExistsError:  # made, then removed by another process before makedirs
                continue  # could see it (a deletion of its last checkpoint): made again
        else:
            os.makedirs(folder, exist_ok=True)
        for path in created:
            _fsync_path(os.path.dirname(path))
        self._dirs.add(folder)

    def _unwritable(self, exc: OSError) -> StoreError:
        if exc.errno == errno.ENOENT and is_temp_file(exc.filename) and os.path.isdir(self.root):
            return StoreError(
                f"cannot write to the artifact store at {self.root}: another process removed "
                f"this write's temporary file {exc.filename} while it was being written (a "
                "`cache verify --fix` or `cache gc` run elsewhere on this store, maybe by an "
                "older version that took it for a leftover). Nothing is wrong with the store: "
                "run again.",
                path=self.root,
            )
        where = f" ({exc.filename})" if exc.filename else ""
        # a shared folder is ETHEREALFABRIC_STORE; the home's own store moves with the home
        setting = "ETHEREALFABRIC_STORE" if self.shared else "ETHEREALFABRIC_HOME"
        advice = (
            f"Free some disk space, or point the store elsewhere ({setting})."
            if exc.errno == errno.ENOSPC
            else "Make sure this folder (or its parent) exists and is writable by this user, "
            f"or point the store elsewhere ({setting})."
        )
        return StoreError(
            f"cannot write to the artifact store at {self.root}: {exc.strerror or exc}{where}. "
            + advice,
            path=self.root,
        )


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _missing_folders(folder: str) -> list[str]:
    """``folder`` and those of its parents that do not exist yet, outermost first."""
    missing: list[str] = []
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing[::-1]


def _fsync_path(path: str) -> None:
    """Flush a file's or folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
