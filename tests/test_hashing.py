"""Value hashing, files and folders, cache keys: golden digests and the properties keys rely on."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import types
import uuid
import warnings
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etherealfabric.define._files import Directory, File
from etherealfabric.errors import HashingError
from etherealfabric.hashing._cachekey import KEY_FORMAT_VERSION, cache_key
from etherealfabric.hashing._describe import describe_value
from etherealfabric.hashing._digest import RefDigest, digest_bytes, is_digest, new_hasher
from etherealfabric.hashing._encoder import UnstableHashWarning
from etherealfabric.hashing._files import file_digest
from etherealfabric.hashing._values import hash_value, register_value_hasher

D1 = "0123456789abcdef0123456789abcdef"
D2 = "fedcba9876543210fedcba9876543210"
OLD = time.time() - 3600  # an mtime old enough for the file cache to remember


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float
    layers: tuple[int, ...] = (32, 32)
    note: str = dataclasses.field(default="", compare=False)


class Point(NamedTuple):
    x: int
    y: int


# pin the type names the digests include, however pytest imports this module; "golden" is a
# loaded module without a file, as a library's compiled module is (a class whose module cannot
# be found at all is taken for code of a file run with runpy.run_path: user code)
Color.__module__ = Config.__module__ = Point.__module__ = "golden"
sys.modules.setdefault("golden", types.ModuleType("golden"))


GOLDEN: list[tuple[object, str]] = [
    (None, "520a39d07743e44bf46ab2a1503bed32"),
    (True, "7c59dd2f36cc71eef450e66e2fc55668"),
    (False, "d8be9912d7de254fad34fb18684a7782"),
    (0, "c07de599066c8bbe755fac1e651db194"),
    (1, "343d21ad172b13e43b6405393aee648e"),
    (-1, "ca095a1a513afc4837d25b23945ff40c"),
    (2**100, "feca58415b04b6f08d55239f3f464487"),
    (1.0, "5294a70eaf2fe49885dc3cdb559921de"),
    (-0.0, "d61c77a3e3cfa94a20e975697579c94c"),
    (math.nan, "1a177a75827a4924ef4e55531a96bc27"),
    (math.inf, "15eb8381309041cabe38872244b45986"),
    (1 + 2j, "40adfd25752c47025d12f5e700bdbb47"),
    ("", "77144db8b181cd72ca52d4fc678a0d56"),
    ("1", "21788a6f3008bf5c8d09f0287847c985"),
    ("héllo ✓", "d1e5ab1aef6a45b3d96334da6eaaa1e4"),
    (b"", "8fbe9fac3ad15ab37eb8668e4879b245"),
    (b"abc", "7c54674dc7db3e4d90e95e0d579bb2a5"),
    ([], "65eaa4f128ece8f9770452376b3eeb19"),
    ([1, "a", None], "0ee1d2effdd6d77cb093437ff8a6a945"),
    ((), "714d5f53fd52f6cbf8f16f9b71196c12"),
    ((1,), "32d8cfd2c7ba692662295d1a9903d431"),
    ({"a": 1, "b": [1, 2]}, "1769462f80d4a604653989ff64fc24c9"),
    ({1, 2}, "97ae979674df6687d1889974d25a43cb"),
    (frozenset(), "f2bd271dc84ae494ee683a398e02f4a2"),
    (range(0, 10, 2), "5419b05a949c7e5962a463ef2c62b267"),
    (..., "9034b9b90cf15cc0f88b904926b897b9"),
    (datetime.date(2024, 5, 17), "ed61a38fb091621d3dbf9e5100e5ebb8"),
    (datetime.datetime(2024, 5, 17, 12, 30, 1, 5), "39f8cad84ad4f6ae30c5bec2ace7d337"),
    (
        datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.timezone.utc),
        "91308fb5b42ead0ebc715d34dac90717",
    ),
    (datetime.time(23, 59, 59), "17cc37c6a3aac74cb5f41a59cd1a676c"),
    (datetime.timedelta(days=1, seconds=2, microseconds=3), "02262f1c880786d33be97d2229537dc0"),
    (Decimal("1.10"), "9aa6cb5bd411c85e26d2af32e131aae4"),
    (Fraction(1, 3), "befe62b9045757f60b051e326b7b2c53"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "9c3859a45fb047cf66bf6f549a7d5726"),
    (PurePosixPath("data/x.csv"), "4e2f4119a07d164c712eb9f3af2feab9"),
    (PureWindowsPath("data/x.csv"), "b5e509e18f91da8d8b0d9cbc6b8ee694"),
    (Color.RED, "65d35859d4a6222b2e3168e7c3a16fba"),
    (Config(0.1), "556f22cbcf3ce455d8bf915cd71002e8"),
    (Point(1, 2), "b0f13f0e7aa3577a8db621dd935f6641"),
    (RefDigest("pickle", D1), "c5cd4635c59aaa5d080a930ac1614b9a"),
    ({"x": [RefDigest("json", D2), (1, 2.5)]}, "26d344424ef263009395684a2ddc80b1"),
    (np.arange(6, dtype="<i8").reshape(2, 3), "5e621103d69675ff40a87e96d4388929"),
    (np.array([1.5, 2.5], dtype="<f4"), "2e2cec077c5d685a3dbaa2510822864c"),
    (np.array(["a", None, 3], dtype=object), "4e55b76362874aa36a4ab1921e6d3b26"),
    (np.float32(1.5), "ea0df94609129b3e50a0a4ef6fcc7bed"),
    (np.int64(7), "df06c60aa5bdcdf074523462a11f116f"),
    (np.str_("ab"), "fe038984d2623cfbfcc66406b58bb270"),
]


@pytest.mark.parametrize(("value", "expected"), GOLDEN, ids=[repr(v)[:40] for v, _ in GOLDEN])
def test_golden_digests_are_pinned(value: object, expected: str) -> None:
    assert hash_value(value) == expected


def test_golden_digests_are_all_different() -> None:
    digests = [d for _, d in GOLDEN]
    assert len(set(digests)) == len(digests)


def test_digest_primitives() -> None:
    assert digest_bytes(b"") == "99aa06d3014798d86001c324468d497f"
    assert digest_bytes(bytearray(b"abc")) == digest_bytes(memoryview(b"abc"))
    hasher = new_hasher()
    hasher.update(b"ab")
    hasher.update(b"c")
    assert hasher.hexdigest() == digest_bytes(b"abc")
    assert is_digest(digest_bytes(b"x"))
    for bad in ["", "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 32 + "\n", "../" + "0" * 29]:
        assert not is_digest(bad)
    assert not is_digest(123)  # type: ignore[arg-type]


# -- type tags and canonical forms -----------------------------------------------------------


def test_types_are_tagged() -> None:
    values = [1, "1", 1.0, True, b"1", [1], (1,), {1}, frozenset({1}), {1: None}, None, 0, False]
    assert len({hash_value(v) for v in values}) == len(values)


def test_floats_are_exact_and_all_nans_are_equal() -> None:
    other_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    assert math.isnan(other_nan)
    assert hash_value(math.nan) == hash_value(other_nan) == hash_value(-math.nan)
    assert hash_value(0.0) != hash_value(-0.0)
    assert hash_value(0.1 + 0.2) != hash_value(0.3)


def test_big_and_negative_ints() -> None:
    values = [0, -1, 1, 127, 128, -128, -129, 255, 256, 2**64, -(2**64), 10**100]
    assert len({hash_value(v) for v in values}) == len(values)


def test_buffers_hash_like_bytes() -> None:
    # bytearray used to hash like bytes (issue 16: a lossy encoding); it now has its own tag
    assert hash_value(b"abc") == hash_value(memoryview(b"abc"))
    assert hash_value(bytearray(b"abc")) != hash_value(b"abc")
    strided = memoryview(b"aXbXc")[::2]
    assert hash_value(strided) == hash_value(b"abc")


def test_dict_order_does_not_matter() -> None:
    a = {"x": 1, "y": [1, 2], 3: "z"}
    b = {3: "z", "y": [1, 2], "x": 1}
    assert hash_value(a) == hash_value(b)
    assert hash_value(a) != hash_value({"x": 1, "y": [2, 1], 3: "z"})
    assert hash_value({"a": 1, "b": 2}) != hash_value({"a": 2, "b": 1})


def test_sets_are_stable_across_processes() -> None:
    """String hashing is randomized per process; set digests must not be."""
    code = "from etherealfabric.hashing._values import hash_value; print(hash_value({'a','b','c','d'}))"
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }  # fmt: skip
    assert digests == {hash_value({"d", "c", "b", "a"})}


def test_simple_namespaces_hash_by_their_attributes_in_every_process() -> None:
    """A ``SimpleNamespace`` config holding a set hashed through cloudpickle, whose set order
    follows the per-process string hash: the node re-ran on every run."""
    code = (
        "import types, warnings; warnings.simplefilter('error');"
        "from etherealfabric.hashing._values import hash_value;"
        "print(hash_value(types.SimpleNamespace(cols={'a','b','c','d'}, k=1)))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }  # fmt: skip
    assert digests == {hash_value(types.SimpleNamespace(k=1, cols={"d", "c", "b", "a"}))}
    assert hash_value(types.SimpleNamespace(k=1)) != hash_value(types.SimpleNamespace(k=2))
    assert hash_value(types.SimpleNamespace(k=1)) != hash_value({"k": 1})
    assert hash_value(types.SimpleNamespace(k=1)) != hash_value(types.SimpleNamespace(j=1))
    import argparse  # what argparse hands a script: the same kind of value

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = hash_value(argparse.Namespace(k=1, cols={"a", "b"}))
    assert parsed == hash_value(argparse.Namespace(cols={"b", "a"}, k=1))
    assert parsed != hash_value(types.SimpleNamespace(k=1, cols={"a", "b"}))
    assert parsed != hash_value(argparse.Namespace(k=2, cols={"a", "b"}))


def test_refdigest_inside_containers() -> None:
    ref = RefDigest("pickle", D1)
    assert hash_value(ref) != hash_value(("pickle", D1))
    assert hash_value([ref]) != hash_value([RefDigest("pickle", D2)])
    assert hash_value([ref]) != hash_value([RefDigest("json", D1)])
    assert hash_value({"k": (1, [ref])}) == hash_value({"k": (1, [RefDigest("pickle", D1)])})


def test_dataclasses_enums_and_namedtuples() -> None:
    assert hash_value(Config(0.1)) != hash_value(Config(0.2))
    assert hash_value(Config(0.1, note="a")) == hash_value(Config(0.1, note="b"))  # compare=False
    assert hash_value(Point(1, 2)) != hash_value((1, 2))
    assert hash_value(Color.RED) != hash_value(1)

    class Other(enum.IntEnum):
        RED = 1

    assert hash_value(Other.RED) != hash_value(1)
    assert hash_value(Other.RED) != hash_value(Color.RED)


def test_paths_hash_as_paths_not_content(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("one")
    before = hash_value(target)
    target.write_text("two")
    assert hash_value(target) == before
    assert hash_value(Path("a")) == hash_value(PurePosixPath("a"))
    assert hash_value(Path("a")) != hash_value("a")


def test_functions_hash_by_code() -> None:
    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 2

    assert hash_value(f) != hash_value(g)
    assert hash_value(len) != hash_value(abs)
    assert hash_value(math.sqrt) == hash_value(math.sqrt)


# -- numpy -----------------------------------------------------------------------------------


def test_numpy_dtype_and_shape_matter() -> None:
    a = np.arange(12, dtype="<i4")
    same_bytes = [a, a.view("<f4"), a.view("<u4"), a.reshape(3, 4), a.reshape(4, 3), a.view("u1")]
    assert len({hash_value(x) for x in same_bytes}) == len(same_bytes)
    assert hash_value(a) != hash_value(a.tolist())
    assert hash_value(np.float64(1.0)) != hash_value(1.0)
    assert hash_value(np.float64(1.0)) != hash_value(np.float32(1.0))
    assert hash_value(np.dtype("<f8")) == hash_value(np.zeros(1).dtype)  # no pickle warning
    assert hash_value(np.dtype("<f8")) != hash_value(np.dtype("<f4"))


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a.T,
        lambda a: a[:, ::3],
        lambda a: a[::2],
        lambda a: np.asfortranarray(a),
        lambda a: a[:, 5:17],
        lambda a: a.reshape(3, 200, 2000)[:, :, ::-1],
    ],
    ids=["transposed", "column-stride", "row-stride", "fortran", "column-slice", "reversed"],
)
def test_non_contiguous_array_hashes_like_its_contiguous_copy(view: Any) -> None:
    base = np.random.default_rng(1).random((600, 2000))  # 9.6 MB: several chunks
    array = view(base)
    assert hash_value(array) == hash_value(np.ascontiguousarray(array))


def test_non_contiguous_rows_larger_than_a_chunk() -> None:
    wide = np.asfortranarray(np.random.default_rng(2).random((3, 200_000)))  # 1.6 MB rows
    assert not wide.flags.c_contiguous
    assert hash_value(wide) == hash_value(np.ascontiguousarray(wide))


def test_object_and_structured_arrays() -> None:
    objects = np.array([[1, "a"], [None, 2.5]], dtype=object)
    assert hash_value(objects) == hash_value(np.array([[1, "a"], [None, 2.5]], dtype=object))
    assert hash_value(objects.T) == hash_value(np.ascontiguousarray(objects.T))
    assert hash_value(objects) != hash_value(np.array([[1, "b"], [None, 2.5]], dtype=object))
    rec = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])
    renamed = np.zeros(2, dtype=[("a", "<i4"), ("c", "<f8")])
    assert hash_value(rec) != hash_value(renamed)


def test_masked_arrays_hash_their_mask() -> None:
    data = np.arange(4.0)
    assert hash_value(np.ma.masked_array(data, [False, True, False, False])) != hash_value(
        np.ma.masked_array(data, [False, False, True, False])
    )


# -- files and folders -----------------------------------------------------------------------


class RecordingCache:
    """A FileHashCache that records calls and may answer with a sentinel."""

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.gets: list[tuple[str, int, int, int, int]] = []
        self.puts: list[tuple[str, int, int, int, int, str]] = []

    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None:
        self.gets.append((path, size, mtime_ns, inode, ctime_ns))
        return self.answer

    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None:
        self.puts.append((path, size, mtime_ns, inode, ctime_ns, digest))


def write(path: Path, data: bytes | str, mtime: float | None = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_file_hash_follows_content_not_path_or_mtime(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "x,y\n1,2\n")
    b = write(tmp_path / "sub" / "b.csv", "x,y\n1,2\n")
    first = hash_value(File(a))
    assert hash_value(File(b)) == first
    os.utime(a, (OLD + 100, OLD + 100))  # touch: same bytes
    assert hash_value(File(a)) == first
    write(a, "x,y\n1,3\n")
    assert hash_value(File(a)) != first
    assert hash_value(File(a)) != hash_value(b.read_bytes())


def test_file_digest_is_the_digest_of_its_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 123)  # several read chunks
    path = write(tmp_path / "big.bin", data)
    assert file_digest(str(path)) == digest_bytes(data)


def test_file_cache_fast_path_skips_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "data.bin", b"real content")
    sentinel = "5e" * 16
    cache = RecordingCache(answer=sentinel)
    assert file_digest(str(path), file_cache=cache) == sentinel
    info = path.stat()
    assert cache.gets == [
        (str(path), info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)
    ]
    assert cache.puts == []
    assert hash_value(File(path), file_cache=cache) == hash_value(File(path), file_cache=cache)
    assert hash_value(File(path), file_cache=cache) != hash_value(File(path))


def test_file_cache_miss_reads_and_remembers(tmp_path: Path) -> None:
    path = write(tmp_path / "data.bin", b"real content")
    cache = RecordingCache()
    digest = file_digest(str(path), file_cache=cache)
    assert digest == digest_bytes(b"real content")
    info = path.stat()
    assert cache.puts == [
        (str(path), info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns, digest)
    ]


def test_a_file_modified_just_now_is_not_remembered(tmp_path: Path) -> None:
    """A same-size rewrite within the timestamp granularity must not hit a stale entry."""
    path = write(tmp_path / "fresh.bin", b"abc", mtime=None)
    cache = RecordingCache()
    assert file_digest(str(path), file_cache=cache) == digest_bytes(b"abc")
    assert cache.gets and cache.puts == []


def test_missing_file_or_wrong_kind_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HashingError, match=r"nope\.csv does not exist"):
        hash_value(File(tmp_path / "nope.csv"))
    with pytest.raises(HashingError, match="pass it as Directory"):
        hash_value(File(tmp_path))
    with pytest.raises(HashingError, match="does not exist"):
        hash_value(Directory(tmp_path / "nowhere"))
    write(tmp_path / "f.txt", "x")
    with pytest.raises(HashingError, match="is not a folder"):
        hash_value(Directory(tmp_path / "f.txt"))


def make_tree(root: Path) -> Path:
    write(root / "a.txt", "alpha")
    write(root / "sub" / "b.txt", "beta")
    write(root / "sub" / "deeper" / "c.bin", b"\x00\x01")
    return root


def test_directory_hash_follows_its_whole_content(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d")
    base = hash_value(Directory(root))
    assert hash_value(Directory(make_tree(tmp_path / "elsewhere"))) == base
    os.utime(root / "a.txt", (OLD + 5, OLD + 5))
    assert hash_value(Directory(root)) == base

    write(root / "sub" / "b.txt", "BETA")
    changed = hash_value(Directory(root))
    assert changed != base
    write(root / "sub" / "b.txt", "beta")
    assert hash_value(Directory(root)) == base

    (root / "sub" / "b.txt").rename(root / "sub" / "b2.txt")
    renamed = hash_value(Directory(root))
    assert renamed not in (base, changed)
    (root / "sub" / "b2.txt").rename(root / "sub" / "b.txt")

    write(root / "new.txt", "")
    added = hash_value(Directory(root))
    assert added not in (base, changed, renamed)
    (root / "new.txt").unlink()

    (root / "empty").mkdir()
    assert hash_value(Directory(root)) not in (base, changed, renamed, added)
    (root / "empty").rmdir()
    assert hash_value(Directory(root)) == base


def test_directory_moving_a_file_between_folders_changes_it(tmp_path: Path) -> None:
    one = tmp_path / "one"
    write(one / "x" / "f.txt", "same")
    (one / "y").mkdir()
    two = tmp_path / "two"
    (two / "x").mkdir(parents=True)
    write(two / "y" / "f.txt", "same")
    assert hash_value(Directory(one)) != hash_value(Directory(two))


def test_directory_uses_the_file_cache_for_each_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d")
    cache = RecordingCache()
    first = hash_value(Directory(root), file_cache=cache)
    assert sorted(p[0] for p in cache.puts) == sorted(
        str(p) for p in [root / "a.txt", root / "sub" / "b.txt", root / "sub" / "deeper" / "c.bin"]
    )
    assert hash_value(Directory(root), file_cache=RecordingCache("00" * 16)) != first


def test_directory_symlinks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d")
    outside = write(tmp_path / "outside.txt", "followed")
    (root / "link.txt").symlink_to(outside)
    before = hash_value(Directory(root))
    write(outside, "changed through the link")
    assert hash_value(Directory(root)) != before
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    with pytest.raises(HashingError, match="symlink loop"):
        hash_value(Directory(root))
    (root / "sub" / "loop").unlink()
    (root / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(HashingError, match="broken symlink"):
        hash_value(Directory(root))


# -- File and Directory values ---------------------------------------------------------------


def test_file_is_an_absolute_path_like_value(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "a,b\n")
    f = File("data.csv")  # the tests run in tmp_path
    assert f.path == str(path) and os.fspath(f) == str(path) and str(f) == str(path)
    assert f.name == "data.csv"
    assert Path(f) == path
    with open(f) as fh:
        assert fh.read() == "a,b\n"
    assert f == File(path) and hash(f) == hash(File(path))
    assert f != Directory(path) and f != str(path)
    assert repr(f) == f"File({str(path)!r})"
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(AttributeError):
        f.path = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        File(b"bytes")  # type: ignore[arg-type]


# -- the fallback and user hashers -----------------------------------------------------------


def test_unknown_library_types_go_through_cloudpickle_with_one_warning_per_type() -> None:
    # library types without a hasher (instances of user classes hash by class code and state)
    import ipaddress
    import zoneinfo

    from etherealfabric.hashing import _encoder

    _encoder._WARNED.discard(ipaddress.IPv4Address)  # another test may have hashed one first
    _encoder._WARNED.discard(zoneinfo.ZoneInfo)
    with pytest.warns(UnstableHashWarning, match=r"IPv4Address.*register_value_hasher"):
        first = hash_value(ipaddress.ip_address("10.0.0.1"))
    assert hash_value(ipaddress.ip_address("10.0.0.1")) == first  # no second warning (an error)
    assert hash_value([ipaddress.ip_address("10.0.0.2")]) != first
    with pytest.warns(UnstableHashWarning, match="zoneinfo.ZoneInfo"):
        hash_value(zoneinfo.ZoneInfo("UTC"))


def test_values_cloudpickle_cannot_handle_raise_hashing_error() -> None:
    class HoldsLock:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    with pytest.raises(HashingError, match=r"HoldsLock.*register_value_hasher"):
        hash_value({"k": HoldsLock()})


def test_self_containing_values_raise_hashing_error() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(HashingError, match="contains itself"):
        hash_value(loop)


def test_register_value_hasher() -> None:
    class Model:
        def __init__(self, name: str, weights: list[float]) -> None:
            self.name, self.weights = name, weights

    class Tuned(Model):
        pass

    register_value_hasher(Model, lambda m: (m.name, m.weights))
    assert hash_value(Model("a", [1.0])) == hash_value(Model("a", [1.0]))
    assert hash_value(Model("a", [1.0])) != hash_value(Model("a", [2.0]))
    assert hash_value(Model("a", [1.0])) != hash_value(("a", [1.0]))
    assert hash_value(Tuned("a", [1.0])) == hash_value(Model("a", [1.0]))  # subclasses too

    with pytest.raises(HashingError, match="built-in hasher"):
        register_value_hasher(int, str)

    class Selfish:
        pass

    register_value_hasher(Selfish, lambda s: s)
    with pytest.raises(HashingError, match="returned a"):
        hash_value(Selfish())


def test_importing_hashing_stays_light() -> None:
    code = (
        "import sys, etherealfabric.hashing._values as h; h.hash_value([1, 'a', {2: 3.0}]);"
        "print(sorted(m for m in ('numpy', 'pandas', 'cloudpickle', 'uuid', 'decimal')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- cache keys ------------------------------------------------------------------------------

KEY = {
    "kind": "pipeline.train",
    "code": D1,
    "version": None,
    "params": {"lr": D2, "data": D1},
    "outputs": ["model", "metrics"],
}


def test_cache_key_golden() -> None:
    assert KEY_FORMAT_VERSION == 1
    assert cache_key(**KEY) == "7f5f4f5dcc9fa864c33e0b982707ea8d"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "pipeline.train2"},
        {"code": D2},
        {"version": "1"},
        {"version": "None"},
        {"params": {"lr": D1, "data": D1}},
        {"params": {"lr2": D2, "data": D1}},
        {"params": {"lr": D2}},
        {"outputs": ["metrics", "model"]},
        {"outputs": ["model"]},
    ],
)
def test_cache_key_changes_with_each_component(change: dict[str, Any]) -> None:
    assert cache_key(**{**KEY, **change}) != cache_key(**KEY)  # type: ignore[arg-type]


def test_cache_key_ignores_param_order() -> None:
    reordered = {**KEY, "params": {"data": D1, "lr": D2}}
    assert cache_key(**reordered) == cache_key(**KEY)  # type: ignore[arg-type]
    assert is_digest(cache_key(**KEY))  # type: ignore[arg-type]


# -- descriptions ----------------------------------------------------------------------------


def test_describe_value(tmp_path: Path) -> None:
    assert describe_value(0.01) == "0.01"
    assert describe_value("abc") == "'abc'"
    assert describe_value(np.zeros((1000, 3))) == "ndarray float64 (1000, 3)"
    assert describe_value(File("data.csv")) == "File data.csv (missing)"
    assert describe_value(Directory(tmp_path / "imgs")) == "Directory imgs (missing)"
    (tmp_path / "data.csv").write_text("a,b\n")
    os.utime(tmp_path / "data.csv", (1_700_000_000, 1_700_000_000))
    assert describe_value(File("data.csv")).startswith("File data.csv (4 B, modified 2023-11-1")
    assert describe_value(RefDigest("pickle", D1)) == "<pickle 0123456789ab>"
    assert " at 0x" not in describe_value(object())
    assert len(describe_value(list(range(10_000)))) <= 80
    assert len(describe_value("x" * 500, limit=20)) == 20

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError

    assert "Broken" in describe_value(Broken())


# -- properties ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, -0.0, 1.0, 0.5])
    | st.text("ab", max_size=2)
    | st.binary(max_size=1)
)
values = st.recursive(
    scalars | st.just(math.nan),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(scalars, inner, max_size=3)
        | st.frozensets(scalars, max_size=3)
    ),
    max_leaves=8,
)


def canonical(value: Any) -> Any:
    """What the encoding promises to distinguish: exact type and exact value, NaNs alike."""
    if isinstance(value, float):
        return ("float", b"nan" if math.isnan(value) else struct.pack("<d", value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, frozenset):
        return ("frozenset", frozenset(canonical(v) for v in value))
    return (type(value).__name__, value)


@given(values, values)
def test_hash_equality_iff_canonical_equality(a: Any, b: Any) -> None:
    assert (hash_value(a) == hash_value(b)) == (canonical(a) == canonical(b))


@given(st.dictionaries(scalars, values, max_size=6), st.randoms())
def test_dict_permutations_hash_alike(mapping: dict[Any, Any], rnd: Any) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    assert hash_value(dict(items)) == hash_value(mapping)


@given(values)
def test_hash_is_a_digest_and_deterministic(value: Any) -> None:
    digest = hash_value(value)
    assert is_digest(digest)
    assert hash_value(pickle.loads(pickle.dumps(value))) == digest


def test_compiled_regexes_and_structs_hash_by_what_they_were_compiled_from() -> None:
    import re
    import struct
    import types

    assert hash_value(re.compile("a")) == hash_value(re.compile("a"))
    assert (
        len({hash_value(p) for p in (re.compile("a"), re.compile("b"), re.compile("a", re.I))}) == 3
    )
    assert hash_value(re.compile(b"a")) != hash_value(re.compile("a"))
    assert hash_value(struct.Struct("<i")) != hash_value(struct.Struct("<h"))
    proxy = types.MappingProxyType
    assert hash_value(proxy({"a": 1})) != hash_value(proxy({"a": 2}))
    assert hash_value(proxy({"a": 1})) != hash_value({"a": 1})  # another type to the code
