"""Where a store spills large objects before it sends them: this user's private folder.

An object store (and a store given no ``temp_dir``) writes a large object to a local temp file
first. By default that is ``etherealfabric-<uid>`` in the system temp folder (``TMPDIR``),
which other local users may enter: the folder must be this user's own (not a link, not made
first by someone else, who could then read or replace what is spilled there).
"""

from __future__ import annotations

import os
import stat

from ..errors import StoreError

__all__ = ["check_private", "default_temp_dir", "spill_folder"]


def default_temp_dir() -> str:
    """This user's private folder for spilled objects, in the system temp folder (``TMPDIR``)."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    import tempfile  # (and random, shutil...) only when a store spills outside its folder

    return os.path.join(tempfile.gettempdir(), f"etherealfabric-{user}")


def spill_folder(folder: str | None) -> str:
    """``folder`` (made again if it was removed), or the user's own in the system temp folder
    (:func:`default_temp_dir`), checked to be private (others may enter the system's)."""
    chosen = folder or default_temp_dir()
    os.makedirs(chosen, mode=0o700, exist_ok=True)
    if chosen == default_temp_dir():
        check_private(chosen)
    return chosen


def check_private(folder: str) -> None:
    """A :class:`StoreError` when the shared temp folder's ``etherealfabric-<uid>`` folder is
    not this user's own (another local user made it first, or it is a link): the objects
    spilled there would be theirs to read or replace; one of ours that others may enter is
    made private."""
    if not hasattr(os, "getuid"):
        return
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
        raise StoreError(
            f"the temp folder {folder} is not this user's own (a link, or made by user "
            f"{info.st_uid}): remove it, or point TMPDIR at a folder of yours"
        )
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)
