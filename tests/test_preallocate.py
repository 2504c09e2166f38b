"""A store writer told the size to come allocates its temp file at once (store/_writer.py).

The bytes stored never change: an object is exactly what was written and hashed, whether more
or fewer bytes came than announced; file systems that cannot allocate without writing are left
alone.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from etherealfabric.hashing._digest import digest_bytes
from etherealfabric.store import LocalStore
from etherealfabric.store import _writer as writer_module
from etherealfabric.store._serializers import get_serializer
from etherealfabric.store._writer import PREALLOCATE_BYTES, allocates_natively

MIB = 1024 * 1024


def _native(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not allocates_natively(str(folder)):
        pytest.skip(f"{folder} is not on a file system that allocates without writing")


def test_a_writer_told_the_size_allocates_its_temp_file_at_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _native(tmp_path / "objects" / ".tmp")
    writer = store.writer(inline_limit=0)
    writer.expect_size(16 * MIB)
    writer.write(b"x" * 100_000)  # spilled to its temp file, which holds 16 MiB of blocks
    allocated = os.stat(writer.name).st_blocks * 512
    assert allocated >= 16 * MIB
    writer.write(b"y" * (16 * MIB - 100_000))
    stored = writer.commit()
    data = b"x" * 100_000 + b"y" * (16 * MIB - 100_000)
    assert (stored.digest, stored.size) == (digest_bytes(data), len(data))
    assert store.read_bytes(stored.digest) == data  # read back and verified


def test_an_object_is_what_was_written_when_fewer_bytes_came_than_announced(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    _native(tmp_path / "objects" / ".tmp")
    data = os.urandom(9 * MIB)
    writer = store.writer(inline_limit=0)
    writer.expect_size(16 * MIB)
    writer.write(data)
    assert os.path.getsize(writer.name) == 16 * MIB  # allocated for more than it got
    stored = writer.commit()
    assert (stored.digest, stored.size) == (digest_bytes(data), len(data))
    assert store.object_size(stored.digest) == len(data)  # cut to what was written
    assert store.read_bytes(stored.digest) == data


def test_more_bytes_than_announced_are_all_stored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = os.urandom(PREALLOCATE_BYTES + MIB)
    writer = store.writer(inline_limit=0)
    writer.expect_size(PREALLOCATE_BYTES)
    writer.write(data)
    stored = writer.commit()
    assert store.read_bytes(stored.digest) == data


@pytest.mark.parametrize("fstype", ["nfs4", "tmpfs", "btrfs", ""])
def test_a_file_system_where_allocating_costs_more_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    """NFS: glibc would write a byte per block; tmpfs: every page zeroed first (measured
    slower); Btrfs: preallocated ranges are not compressed; unknown: do nothing."""
    monkeypatch.setattr(writer_module, "_native", {})
    monkeypatch.setattr(writer_module, "filesystem_type", lambda folder: fstype)
    store = LocalStore(tmp_path)
    writer = store.writer(inline_limit=0)
    writer.expect_size(16 * MIB)
    writer.write(b"x" * 100_000)
    stat = os.stat(writer.name)  # not allocated: written as it comes
    assert stat.st_size <= 100_000
    assert stat.st_blocks * 512 < MIB
    writer.abort()
    assert not allocates_natively(str(tmp_path))


def test_filesystem_is_read_from_the_longest_mount_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "server:/x /data nfs4 rw 0 0\n"
        "tmpfs /data/scratch\\040space tmpfs rw 0 0\n"
    )
    real_open = open

    def fake_open(path: str, *args: object, **kwargs: object) -> object:
        return real_open(mounts if path == "/proc/mounts" else path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", fake_open)
    assert writer_module.filesystem_type("/data/a/b") == "nfs4"
    assert writer_module.filesystem_type("/database") == "ext4"  # /data is not its mount point
    assert writer_module.filesystem_type("/data/scratch space/x") == "tmpfs"


class _Recording(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.expected: list[int] = []

    def expect_size(self, size: int) -> None:
        self.expected.append(size)


def test_npy_announces_the_size_of_what_it_writes() -> None:
    array = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
    sink = _Recording()
    get_serializer("npy").dump(array, sink)
    saved = io.BytesIO()
    np.save(saved, array)
    assert sink.getvalue() == saved.getvalue()
    assert sink.expected == [len(saved.getvalue())]
