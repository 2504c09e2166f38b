"""The Store API that callers and extension authors use, on every store of the package.

- The narrow base: a store implements five primitives over named entries and inherits the
  rest; a minimal in-memory store written that way passes the whole store contract.
- What callers use instead of probing a store's type: ``location(digest)`` for messages and
  ``object_info(digest)`` (size, modification time) for ages in ``cache gc``.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from etherealfabric.errors import CorruptArtifactError, StoreError
from etherealfabric.hashing._digest import digest_bytes
from etherealfabric.journal._audit import check_object
from etherealfabric.store import EntryInfo, LocalStore, ObjectStore, Store
from etherealfabric.testing import StoreContract
from etherealfabric.testing._stores import Damage
from test_store import MOTO

SRC = Path(__file__).resolve().parents[1] / "src" / "etherealfabric"


# -- a third-party store: only the primitives -------------------------------------------------------
class DictStore(Store):
    """Entries in a dict: what an extension author writes, and nothing more."""

    def __init__(self, temp_dir: Path) -> None:
        self.url = f"dict://{uuid.uuid4().hex}"
        self.temp_dir = str(temp_dir)
        self.entries: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def open_entry(self, name: str) -> BinaryIO:
        with self._lock:
            if name not in self.entries:
                raise FileNotFoundError(name)
            return io.BytesIO(self.entries[name][0])

    def write_entry(self, name: str, *parts: bytes) -> None:
        data = b"".join(parts)
        with self._lock:
            self.entries[name] = (data, time.time())

    def entry_info(self, name: str) -> EntryInfo | None:
        with self._lock:
            found = self.entries.get(name)
        return None if found is None else EntryInfo(len(found[0]), found[1])

    def delete_entry(self, name: str) -> None:
        with self._lock:
            self.entries.pop(name, None)

    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        with self._lock:
            names = list(self.entries)
        for name in names:
            top, folder, entry = name.split("/")
            if top == kind:
                yield folder, entry


class TestDictStore(StoreContract):
    """The five primitives are enough: the base derives everything the contract checks."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> DictStore:
        (tmp_path / "spill").mkdir()
        return DictStore(tmp_path / "spill")

    def damage(self, store: Store, digest: str, how: Damage) -> str:
        assert isinstance(store, DictStore)
        name = f"objects/{digest[:2]}/{digest}"
        data, _ = store.entries[name]
        if how == "delete":
            del store.entries[name]
        elif how == "flip":
            middle = len(data) // 2
            flipped = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
            store.entries[name] = (flipped, time.time())
        else:
            store.entries[name] = (data[: len(data) // 2], time.time())
        return store.location(digest)

    def temp_files(self, store: Store) -> list[str]:
        assert store.temp_dir is not None
        return sorted(p.name for p in Path(store.temp_dir).iterdir())

    def all_files(self, store: Store) -> list[str]:
        assert isinstance(store, DictStore)
        return sorted(store.entries) + self.temp_files(store)


def test_the_abstract_methods_are_the_five_primitives() -> None:
    assert Store.__abstractmethods__ == {
        "open_entry", "write_entry", "entry_info", "delete_entry", "list_entries",
    }  # fmt: skip


def test_a_minimal_store_names_its_entries_in_messages(tmp_path: Path) -> None:
    store = DictStore(tmp_path)
    digest = store.put_bytes(b"x" * 1000)
    assert store.location(digest) == f"{store.url}/objects/{digest[:2]}/{digest}"
    store.entries[f"objects/{digest[:2]}/{digest}"] = (b"y" * 1000, 0.0)
    with pytest.raises(CorruptArtifactError) as info:
        store.read_bytes(digest)
    assert info.value.path == store.location(digest) and info.value.digest == digest
    problem = check_object(store, digest)  # what `cache verify` reports
    assert problem is not None and problem.kind == "corrupt_object"
    assert problem.path == store.location(digest)


def test_a_minimal_store_spills_to_its_temp_dir_and_cleans_it(tmp_path: Path) -> None:
    store = DictStore(tmp_path)
    writer = store.writer(inline_limit=0)
    writer.write(b"in progress")
    assert [p.name[:5] for p in tmp_path.iterdir()] == [".tmp-"]
    stale = tmp_path / ".tmp-killed-writer"
    stale.write_bytes(b"left by kill -9")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.cleanup_temp() == 1
    assert store.read_bytes(writer.commit().digest) == b"in progress"
    assert list(tmp_path.iterdir()) == []


def test_read_errors_of_a_primitive_become_store_errors(tmp_path: Path) -> None:
    class Unreadable(DictStore):
        def open_entry(self, name: str) -> BinaryIO:
            raise PermissionError(13, "Permission denied", name)

    store = Unreadable(tmp_path)
    digest = store.put_bytes(b"bytes")
    with pytest.raises(StoreError, match="Permission denied") as info:
        store.open_object(digest)
    assert info.value.path == store.location(digest)


# -- location and object_info on the package's stores -------------------------------------------
def _local(tmp_path: Path) -> Store:
    return LocalStore(tmp_path / "store")


def _memory(tmp_path: Path) -> Store:
    return ObjectStore(f"memory://api-{uuid.uuid4().hex}", temp_dir=tmp_path / "spill")


def _s3(tmp_path: Path) -> Store:
    server = MOTO.ensure()
    url = f"s3://{server.bucket}/{uuid.uuid4().hex}"
    return ObjectStore(url, storage_options=server.options, temp_dir=tmp_path / "spill")


STORES: dict[str, Callable[[Path], Store]] = {
    "local": _local,
    "memory": _memory,
    "s3": _s3,
    "dict": lambda tmp_path: DictStore(tmp_path),
}


@pytest.fixture(scope="module", autouse=True)
def _stop_moto_after_the_module() -> Iterator[None]:
    yield
    MOTO.stop()


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return STORES[request.param](tmp_path)


def test_location_names_where_the_object_is(store: Store) -> None:
    digest = store.put_bytes(b"located")
    where = store.location(digest)
    if isinstance(store, LocalStore):
        assert where == store.object_path(digest)
        assert Path(where).read_bytes() == b"located"
    else:
        assert where == f"{store.url}/objects/{digest[:2]}/{digest}"
    if isinstance(store, ObjectStore):
        assert where == store.object_url(digest)
    with pytest.raises(StoreError, match="invalid digest"):
        store.location("../../etc/passwd")


def test_object_info_gives_size_and_modification_time(store: Store) -> None:
    data = b"z" * 5000
    digest = digest_bytes(data)
    assert store.object_info(digest) is None
    before = time.time()
    store.put_bytes(data)
    info = store.object_info(digest)
    assert info is not None and info.size == len(data) == store.object_size(digest)
    assert info.modified is not None
    assert before - 5 <= info.modified <= time.time() + 5  # S3 keeps whole seconds
    store.delete_object(digest)
    assert store.object_info(digest) is None
    with pytest.raises(StoreError, match="invalid digest"):
        store.object_info("not a digest")


def test_object_info_follows_a_local_file_s_age(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_bytes(b"old")
    old = time.time() - 86_400
    os.utime(store.location(digest), (old, old))
    info = store.object_info(digest)
    assert info is not None and info.modified == pytest.approx(old)


def test_entries_are_written_whole_read_and_removed(store: Store) -> None:
    name = f"checkpoints/ab/ab{'0' * 30}"
    with pytest.raises(FileNotFoundError):
        store.read_entry(name)
    assert store.entry_info(name) is None
    store.write_entry(name, b"one ", b"two ", b"three")
    assert store.read_entry(name) == b"one two three"
    with store.open_entry(name) as fp:
        assert fp.read() == b"one two three"
    info = store.entry_info(name)
    assert info is not None and info.size == len(b"one two three")
    store.delete_entry(name)
    store.delete_entry(name)
    assert store.entry_info(name) is None


# -- callers never probe a store ------------------------------------------------------------------
def test_no_code_outside_the_store_layer_probes_a_store() -> None:
    probe = re.compile(r"\b(?:getattr|hasattr)\(\s*(?:self\.)?\w*store\b")
    found = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted(SRC.rglob("*.py"))
        if "store" not in path.relative_to(SRC).parts[:1]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line) or "object_path" in line
    ]
    assert found == []
