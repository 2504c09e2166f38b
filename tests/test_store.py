"""The store contract, run against every implementation, plus LocalStore specifics.

A new store joins the contract by adding a harness factory to ``IMPLEMENTATIONS``: the
harness gives the store and the few store-specific tricks the tests need (damage an object,
list leftover temp files).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cloudpickle
import pytest

from etherealfabric.errors import ArtifactMissingError, CorruptArtifactError, StoreError
from etherealfabric.hashing._values import digest_bytes
from etherealfabric.store import LocalStore, ObjectWriter, Store, StoredObject, open_store
from etherealfabric.store import _local as local_module
from etherealfabric.store._base import create_temp_file

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
BAD_NAMES = ["../../etc", "../" * 10 + "passwd", "", "ABCDEF0123456789ABCDEF0123456789", "a" * 31, "a" * 33,
             "0123456789abcdef/123456789abcdef", "0123456789abcdef0123456789abcde\n", None, 12]  # fmt: skip


@dataclass
class Harness:
    """A store under test and the store-specific helpers the contract needs."""

    store: Store
    damage: Callable[[str, str], str]  # (digest, "flip" | "truncate" | "delete") -> location
    temp_files: Callable[[], list[str]]  # temp files left in the store
    all_files: Callable[[], list[str]]  # every file the store holds


def _local_harness(root: Path, *, durable: bool) -> Harness:
    store = LocalStore(root, durable=durable)

    def damage(digest: str, how: str) -> str:
        path = Path(store.object_path(digest))
        data = path.read_bytes()
        if how == "flip":
            middle = len(data) // 2
            path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
        elif how == "truncate":
            path.write_bytes(data[: len(data) // 2])
        else:
            path.unlink()
        return str(path)

    def files() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def temp_files() -> list[str]:
        return [f for f in files() if Path(f).name.startswith(".tmp-")]

    return Harness(store, damage, temp_files, files)


# -- an S3 store on a real moto server (loopback), shared by this module and test_objectstore --
class MotoServer:
    """A ``moto.server`` process on 127.0.0.1 with one bucket; started on first use."""

    bucket = "etherealfabric-test"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    @property
    def options(self) -> dict[str, object]:
        """fsspec storage options that reach this server."""
        return {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": self.endpoint,
        }

    def ensure(self) -> MotoServer:
        """Start the server (if it is not running) and create the bucket."""
        pytest.importorskip("s3fs")
        pytest.importorskip("moto.server")
        if self.process is None or self.process.poll() is not None:
            self._start()
        return self

    def _start(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{port}"
        atexit.register(self.stop)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.05)
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True, **self.options)
        fs.mkdir(self.bucket)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


MOTO = MotoServer()
SIGNING_KEY = b"contract-suite-signing-key-0123456789"


@pytest.fixture(scope="module", autouse=True)
def _stop_moto_after_the_module() -> Iterator[None]:
    yield
    MOTO.stop()


def _s3_harness(root: Path) -> Harness:
    from etherealfabric.store._objectstore import ObjectStore

    server = MOTO.ensure()
    root.mkdir(parents=True)  # the local folder of spilled (temp) files
    url = f"s3://{server.bucket}/{uuid.uuid4().hex}"
    store = ObjectStore(url, storage_options=server.options, signing_key=SIGNING_KEY, temp_dir=root)
    fs = store.fs

    def damage(digest: str, how: str) -> str:
        path = f"{store.root}/objects/{digest[:2]}/{digest}"
        data = fs.cat_file(path)
        if how == "flip":
            middle = len(data) // 2
            fs.pipe_file(path, data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
        elif how == "truncate":
            fs.pipe_file(path, data[: len(data) // 2])
        else:
            fs.rm_file(path)
        return store.object_url(digest)

    def temp_files() -> list[str]:
        return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))

    def files() -> list[str]:
        remote = [str(p)[len(store.root) + 1 :] for p in fs.find(store.root)]
        return sorted(remote) + temp_files()

    return Harness(store, damage, temp_files, files)


IMPLEMENTATIONS: dict[str, Callable[[Path], Harness]] = {
    "local": lambda root: _local_harness(root, durable=False),
    "local-durable": lambda root: _local_harness(root, durable=True),
    "s3": _s3_harness,
}


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return IMPLEMENTATIONS[request.param](tmp_path / "store")


def _write(store: Store, data: bytes, *, inline_limit: int = 1024, pieces: int = 3) -> StoredObject:
    step = max(1, len(data) // pieces)
    with store.writer(inline_limit=inline_limit) as writer:
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
        return writer.commit()


def _big(size: int = 300_000, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


@pytest.mark.parametrize("harness", list(IMPLEMENTATIONS), indirect=True)
class TestStoreContract:
    # -- writing ---------------------------------------------------------------------------------
    def test_small_output_stays_inline_and_nothing_is_stored(self, harness: Harness) -> None:
        stored = _write(harness.store, b"tiny output")
        assert stored == StoredObject(digest_bytes(b"tiny output"), 11, b"tiny output")
        assert not harness.store.has_object(stored.digest)
        assert harness.all_files() == []

    def test_output_at_the_limit_is_inline_one_byte_more_is_stored(self, harness: Harness) -> None:
        at_limit = _write(harness.store, b"x" * 1024)
        over = _write(harness.store, b"x" * 1025)
        assert at_limit.inline == b"x" * 1024
        assert over.inline is None
        assert list(harness.store.iter_objects()) == [over.digest]

    def test_large_output_is_stored_under_the_digest_of_its_bytes(self, harness: Harness) -> None:
        data = _big()
        stored = _write(harness.store, data, pieces=7)
        assert stored == StoredObject(digest_bytes(data), len(data), None)
        assert harness.store.read_bytes(stored.digest) == data
        assert harness.store.object_size(stored.digest) == len(data)
        with harness.store.open_object(stored.digest) as fp:
            assert fp.read() == data
        assert harness.temp_files() == []

    def test_writer_accepts_any_buffer(self, harness: Harness) -> None:
        data = _big(5000)
        with harness.store.writer(inline_limit=0) as writer:
            writer.write(bytearray(data[:1000]))
            writer.write(memoryview(data)[1000:3000])
            writer.write(memoryview(data[3000:]).cast("B", (len(data[3000:]) // 4, 4))[:])
            assert writer.tell() == len(data)
            stored = writer.commit()
        assert harness.store.read_bytes(stored.digest) == data

    def test_identical_content_twice_gives_one_object(self, harness: Harness) -> None:
        first = _write(harness.store, _big())
        second = _write(harness.store, _big(), pieces=2)
        assert first == second
        assert list(harness.store.iter_objects()) == [first.digest]
        assert harness.temp_files() == []

    def test_concurrent_writers_of_the_same_content(self, harness: Harness) -> None:
        data, threads = _big(), 8
        barrier = threading.Barrier(threads)

        def write(_: int) -> StoredObject:
            with harness.store.writer(inline_limit=0) as writer:
                writer.write(data[:1000])
                barrier.wait()  # every writer has its temp file open
                writer.write(data[1000:])
                return writer.commit()

        with ThreadPoolExecutor(threads) as pool:
            results = set(pool.map(write, range(threads)))
        assert results == {StoredObject(digest_bytes(data), len(data), None)}
        assert list(harness.store.iter_objects()) == [digest_bytes(data)]
        assert harness.store.read_bytes(digest_bytes(data)) == data
        assert harness.temp_files() == []

    def test_put_bytes_always_stores(self, harness: Harness) -> None:
        digest = harness.store.put_bytes(b"small")
        assert digest == digest_bytes(b"small")
        assert harness.store.read_bytes(digest) == b"small"
        assert harness.store.put_bytes(b"small") == digest
        assert harness.store.read_bytes(harness.store.put_bytes(b"")) == b""

    # -- giving up -------------------------------------------------------------------------------
    def test_abort_leaves_no_temp_file(self, harness: Harness) -> None:
        writer = harness.store.writer(inline_limit=10)
        writer.write(_big(1000))
        assert harness.temp_files() != []  # spilled
        writer.abort()
        writer.abort()
        assert harness.all_files() == []
        with pytest.raises(ValueError):
            writer.write(b"more")

    def test_exception_inside_with_writer_leaves_nothing(self, harness: Harness) -> None:
        with pytest.raises(RuntimeError, match="serializer broke"):  # noqa: SIM117
            with harness.store.writer(inline_limit=10) as writer:
                writer.write(_big(1000))
                raise RuntimeError("serializer broke")
        assert harness.all_files() == []
        assert list(harness.store.iter_objects()) == []

    def test_leaving_with_writer_without_commit_keeps_nothing(self, harness: Harness) -> None:
        with harness.store.writer(inline_limit=10) as writer:
            writer.write(_big(1000))
        assert harness.all_files() == []

    def test_forgotten_writer_removes_its_temp_file(self, harness: Harness) -> None:
        writer = harness.store.writer(inline_limit=10)
        writer.write(_big(1000))
        del writer
        gc.collect()
        assert harness.all_files() == []

    def test_negative_inline_limit_stores_even_an_empty_object(self, harness: Harness) -> None:
        with harness.store.writer(inline_limit=-1) as writer:
            stored = writer.commit()
        assert stored == StoredObject(digest_bytes(b""), 0, None)
        assert harness.store.read_bytes(stored.digest) == b""

    def test_commit_is_idempotent_and_survives_exit(self, harness: Harness) -> None:
        with harness.store.writer(inline_limit=10) as writer:
            writer.write(_big(1000))
            stored = writer.commit()
            assert writer.commit() == stored
        assert harness.store.read_bytes(stored.digest) == _big(1000)

    # -- damage ----------------------------------------------------------------------------------
    @pytest.mark.parametrize("how", ["flip", "truncate"])
    def test_damaged_object_is_reported_with_its_location(self, harness: Harness, how: str) -> None:
        digest = harness.store.put_bytes(_big())
        location = harness.damage(digest, how)
        with pytest.raises(CorruptArtifactError) as info:
            harness.store.read_bytes(digest)
        assert location in str(info.value) and info.value.path == location
        with pytest.raises(CorruptArtifactError, match="corrupt"):
            harness.store.open_object(digest)

    def test_deleted_object_is_reported_missing_with_its_location(self, harness: Harness) -> None:
        digest = harness.store.put_bytes(_big())
        location = harness.damage(digest, "delete")
        for read in (harness.store.read_bytes, harness.store.open_object):
            with pytest.raises(ArtifactMissingError) as info:
                read(digest)
            assert location in str(info.value)
        assert not harness.store.has_object(digest)
        assert harness.store.object_size(digest) is None

    def test_a_corrupt_object_can_be_deleted_and_rewritten(self, harness: Harness) -> None:
        data = _big()
        digest = harness.store.put_bytes(data)
        harness.damage(digest, "flip")
        harness.store.delete_object(digest)
        harness.store.delete_object(digest)  # absent: no error
        assert _write(harness.store, data, inline_limit=0).digest == digest
        assert harness.store.read_bytes(digest) == data

    def test_a_truncated_object_is_replaced_by_the_next_write(self, harness: Harness) -> None:
        data = _big()
        digest = harness.store.put_bytes(data)
        harness.damage(digest, "truncate")
        _write(harness.store, data, inline_limit=0)
        assert harness.store.read_bytes(digest) == data

    # -- action records --------------------------------------------------------------------------
    def test_put_get_replace_delete_action(self, harness: Harness) -> None:
        record = {"node": "fit", "outputs": {"model": {"digest": "ab" * 16, "size": 3}}}
        assert harness.store.get_action(KEY) is None
        harness.store.put_action(KEY, record)
        assert harness.store.get_action(KEY) == record
        harness.store.put_action(KEY, {"node": "fit", "outputs": {}})
        assert harness.store.get_action(KEY) == {"node": "fit", "outputs": {}}
        harness.store.put_action(OTHER_KEY, record)
        assert sorted(harness.store.iter_actions()) == sorted([KEY, OTHER_KEY])
        harness.store.delete_action(KEY)
        harness.store.delete_action(KEY)
        assert harness.store.get_action(KEY) is None
        assert list(harness.store.iter_actions()) == [OTHER_KEY]
        assert harness.temp_files() == []

    def test_unserializable_action_record_is_refused(self, harness: Harness) -> None:
        with pytest.raises(StoreError, match="not valid JSON"):
            harness.store.put_action(KEY, {"bad": object()})
        assert harness.store.get_action(KEY) is None
        assert harness.temp_files() == []

    # -- checkpoints -------------------------------------------------------------------------------
    def test_put_get_replace_delete_checkpoint(self, harness: Harness) -> None:
        store = harness.store
        assert store.get_checkpoint(KEY) is None
        store.put_checkpoint(KEY, b"epoch 1")
        assert store.get_checkpoint(KEY) == b"epoch 1"
        store.put_checkpoint(KEY, _big())
        assert store.get_checkpoint(KEY) == _big()
        store.put_checkpoint(OTHER_KEY, b"")
        assert store.get_checkpoint(OTHER_KEY) == b""
        store.delete_checkpoint(KEY)
        store.delete_checkpoint(KEY)
        assert store.get_checkpoint(KEY) is None
        assert store.get_checkpoint(OTHER_KEY) == b""
        # checkpoints are neither objects nor action records
        assert list(store.iter_objects()) == []
        assert list(store.iter_actions()) == []
        assert store.get_action(OTHER_KEY) is None
        assert harness.temp_files() == []

    def test_checkpoint_and_action_record_of_one_key_are_separate(self, harness: Harness) -> None:
        store = harness.store
        store.put_checkpoint(KEY, b"state")
        store.put_action(KEY, {"node": "train"})
        store.delete_checkpoint(KEY)
        assert store.get_action(KEY) == {"node": "train"}
        assert store.get_checkpoint(KEY) is None

    def test_readers_see_a_whole_checkpoint_while_it_is_replaced(self, harness: Harness) -> None:
        store = harness.store
        versions = [_big(200_000, seed) for seed in range(4)]
        store.put_checkpoint(KEY, versions[0])
        stop = threading.Event()

        def write() -> None:
            for i in range(40):
                store.put_checkpoint(KEY, versions[i % len(versions)])
            stop.set()

        writer = threading.Thread(target=write)
        writer.start()
        reads = 0
        while not stop.is_set() or reads == 0:
            assert store.get_checkpoint(KEY) in versions
            reads += 1
        writer.join()
        assert harness.temp_files() == []

    @pytest.mark.parametrize("name", BAD_NAMES)
    def test_invalid_checkpoint_key_is_refused_and_nothing_is_written(
        self, harness: Harness, name: str
    ) -> None:
        store = harness.store
        calls: list[Callable[[], object]] = [
            lambda: store.put_checkpoint(name, b"state"),
            lambda: store.get_checkpoint(name),
            lambda: store.delete_checkpoint(name),
        ]
        for call in calls:
            with pytest.raises(StoreError, match="invalid cache key"):
                call()
        assert harness.all_files() == []

    # -- names -----------------------------------------------------------------------------------
    @pytest.mark.parametrize("name", BAD_NAMES)
    def test_invalid_digest_or_key_is_refused_and_nothing_is_written(
        self, harness: Harness, name: str
    ) -> None:
        store = harness.store
        calls: list[Callable[[], object]] = [
            lambda: store.has_object(name),
            lambda: store.open_object(name),
            lambda: store.read_bytes(name, verify=False),
            lambda: store.object_size(name),
            lambda: store.delete_object(name),
            lambda: store.get_action(name),
            lambda: store.put_action(name, {"a": 1}),
            lambda: store.delete_action(name),
        ]
        for call in calls:
            with pytest.raises(StoreError, match="invalid"):
                call()
        assert harness.all_files() == []

    def test_store_is_picklable(self, harness: Harness) -> None:
        digest = harness.store.put_bytes(_big())  # fills any caches
        for module in (pickle, cloudpickle):
            copy = module.loads(module.dumps(harness.store))
            assert copy.read_bytes(digest) == _big()
            assert _write(copy, _big(seed=1), inline_limit=0).digest == digest_bytes(_big(seed=1))


# -- LocalStore specifics ----------------------------------------------------------------------------
def test_local_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_bytes(b"hello")
    store.put_action(KEY, {"x": 1})
    assert (tmp_path / "objects" / digest[:2] / digest).read_bytes() == b"hello"
    assert (tmp_path / "actions" / KEY[:2] / f"{KEY}.json").read_text() == '{"x":1}'
    assert store.url == tmp_path.as_uri()


def test_verify_false_returns_bytes_as_stored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_bytes(_big())
    Path(store.object_path(digest)).write_bytes(b"changed")
    assert store.read_bytes(digest, verify=False) == b"changed"
    with store.open_object(digest, verify=False) as fp:
        assert fp.read() == b"changed"


@pytest.mark.parametrize(
    "content", [b"{not json", b"\xff\xfe", b"", b"[1, 2]", b'"text"', b'{"cut": "in the mid']
)
def test_corrupt_action_record_reads_as_absent_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path)
    store.put_action(KEY, {"x": 1})
    Path(store.action_path(KEY)).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        assert store.get_action(KEY) is None
    assert store.action_path(KEY) in caplog.text
    store.delete_action(KEY)
    assert not Path(store.action_path(KEY)).exists()


def test_nothing_is_written_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "inner" / "store"
    store = LocalStore(root)
    for name in ("../../etc", "../" + "a" * 29):
        with pytest.raises(StoreError):
            store.put_action(name, {"x": 1})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


UNWRITABLE = """
import re, sys
from etherealfabric.errors import StoreError
from etherealfabric.store import LocalStore
root = sys.argv[1]
store = LocalStore(root)
for call in (lambda: store.put_bytes(b"x"), lambda: store.put_action("a" * 32, {"x": 1})):
    try:
        call()
    except StoreError as exc:
        assert root in str(exc), exc
        print("StoreError:", exc)
    else:
        raise SystemExit("no StoreError")
"""


def test_unwritable_root_gives_a_store_error_naming_it(tmp_path: Path) -> None:
    """As root (CI), drop the capability that ignores folder permissions for the check."""
    root = tmp_path / "store"
    root.mkdir()
    root.chmod(0o500)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", UNWRITABLE, str(root)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        root.chmod(0o700)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.count("StoreError") == 2
    assert "writable" in done.stdout


@pytest.mark.parametrize("where", ["root", "parent"])
def test_root_that_is_a_file_gives_a_store_error_naming_it(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("I am not a folder")
    root = tmp_path / "file" if where == "root" else tmp_path / "file" / "store"
    store = LocalStore(root)
    with pytest.raises(StoreError, match="writable") as info:
        _write(store, _big(), inline_limit=0)
    assert str(root) in str(info.value) and info.value.path == str(root)
    with pytest.raises(StoreError, match=re.escape(str(root))):
        store.put_action(KEY, {"x": 1})
    assert _write(store, b"small").inline == b"small"  # inline outputs need no folder
    assert store.get_action(KEY) is None
    assert list(store.iter_objects()) == []


def test_folders_removed_behind_the_store_are_recreated(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes(_big())
    store.put_action(KEY, {"x": 1})
    for folder in (tmp_path / "store").rglob("*"):
        if folder.is_dir():
            for file in folder.iterdir():
                if file.is_file():
                    file.unlink()
    for folder in sorted((tmp_path / "store").rglob("*"), reverse=True):
        folder.rmdir()
    assert store.read_bytes(store.put_bytes(_big())) == _big()
    store.put_action(KEY, {"x": 2})
    assert store.get_action(KEY) == {"x": 2}


@pytest.mark.parametrize("durable", [False, True])
def test_durable_mode_fsyncs_files_and_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    store = LocalStore(tmp_path / "store", durable=durable)
    _write(store, _big(), inline_limit=0)
    store.put_action(KEY, {"x": 1})
    # file + object folder + the folders created on the way, per write
    assert (len(synced) >= 4) if durable else (synced == [])


def test_cleanup_temp_removes_only_stale_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    writer = store.writer(inline_limit=0)
    writer.write(b"in progress")
    temp = tmp_path / "objects" / ".tmp"
    stale = temp / ".tmp-killed-writer"
    stale.write_bytes(b"left by kill -9")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.cleanup_temp() == 1
    assert not stale.exists()
    assert len(list(temp.iterdir())) == 1  # the live writer's file
    assert store.read_bytes(writer.commit().digest) == b"in progress"


def test_local_checkpoint_layout_and_format(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_checkpoint(KEY, b"state bytes")
    path = tmp_path / "checkpoints" / KEY[:2] / KEY
    assert store.checkpoint_path(KEY) == str(path)
    magic, digest, payload = path.read_bytes().split(b"\n", 2)
    assert (magic, digest, payload) == (
        b"EFCHECKPOINT1",
        digest_bytes(b"state bytes").encode(),
        b"state bytes",
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [".tmp", KEY[:2]]


@pytest.mark.parametrize("how", ["flip", "truncate", "no header", "bad digest", "empty"])
def test_damaged_checkpoint_reads_as_absent_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    store = LocalStore(tmp_path)
    data = _big(5000)
    store.put_checkpoint(KEY, data)
    path = Path(store.checkpoint_path(KEY))
    raw = path.read_bytes()
    header = raw[: len(raw) - len(data)]
    path.write_bytes(
        {
            "flip": header + data[:100] + bytes([data[100] ^ 0x80]) + data[101:],
            "truncate": raw[:-1],
            "no header": data,
            "bad digest": header.replace(digest_bytes(data).encode(), b"0" * 32) + data,
            "empty": b"",
        }[how]
    )
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        assert store.get_checkpoint(KEY) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(path) in caplog.records[0].getMessage()
    assert path.exists()  # left for inspection; the next save replaces it
    store.put_checkpoint(KEY, b"fresh")
    assert store.get_checkpoint(KEY) == b"fresh"


def test_cleanup_temp_removes_stale_checkpoint_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_checkpoint(KEY, b"state")
    stale = tmp_path / "checkpoints" / ".tmp" / ".tmp-killed-saver"
    stale.write_bytes(b"half a checkpoint")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.cleanup_temp() == 1
    assert not stale.exists()
    assert store.get_checkpoint(KEY) == b"state"


@pytest.mark.parametrize("durable", [False, True])
def test_durable_mode_fsyncs_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    store = LocalStore(tmp_path / "store", durable=durable)
    store.put_checkpoint(KEY, b"state")
    assert (len(synced) >= 2) if durable else (synced == [])


def test_iter_objects_ignores_foreign_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_bytes(b"a")
    (tmp_path / "objects" / "zz").mkdir()
    (tmp_path / "objects" / "zz" / ("zz" * 16)).write_text("")
    (tmp_path / "objects" / digest[:2] / "notes.txt").write_text("")
    (tmp_path / "objects" / "README").write_text("")
    assert list(store.iter_objects()) == [digest]


def test_writer_is_an_io_stream(tmp_path: Path) -> None:
    writer = LocalStore(tmp_path).writer()
    assert isinstance(writer, ObjectWriter)
    assert writer.writable() and not writer.readable() and not writer.seekable()
    writer.close()
    assert writer.closed


# -- open_store ----------------------------------------------------------------------------------
def test_open_store_accepts_paths_and_file_urls(tmp_path: Path) -> None:
    for location in (str(tmp_path), tmp_path, tmp_path.as_uri(), f"file://localhost{tmp_path}"):
        store = open_store(location, durable=True)
        assert isinstance(store, LocalStore)
        assert store.root == str(tmp_path) and store.durable


def test_open_store_relative_path_with_colon_is_a_path(tmp_path: Path) -> None:
    store = open_store("odd:name")
    assert isinstance(store, LocalStore) and store.root == str(tmp_path / "odd:name")


@pytest.mark.parametrize("url", ["https://example.com/x", "http://example.com/x"])
def test_open_store_read_only_schemes_are_refused(url: str) -> None:
    with pytest.raises(StoreError, match="read-only"):
        open_store(url)


def test_open_store_file_url_on_another_host_is_refused() -> None:
    with pytest.raises(StoreError, match="host"):
        open_store("file://server/share/store")


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """A store whose temp files write to /dev/full (every write fails with ENOSPC)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    store = LocalStore(tmp_path / "store")

    def open_full_temp(folder: str) -> tuple[BinaryIO, str]:
        file, path = create_temp_file(folder)
        file.close()
        return open("/dev/full", "wb", buffering=0), path

    monkeypatch.setattr(local_module, "create_temp_file", open_full_temp)
    return store


def test_full_disk_gives_a_store_error_and_leaves_nothing(full_disk: LocalStore) -> None:
    with pytest.raises(StoreError, match="disk space"):  # noqa: SIM117
        with full_disk.writer(inline_limit=10) as writer:
            writer.write(_big(1000))
    assert [p for p in Path(full_disk.root).rglob("*") if p.is_file()] == []


def test_full_disk_checkpoint_gives_a_store_error_and_leaves_nothing(full_disk: LocalStore) -> None:
    with pytest.raises(StoreError, match="disk space"):
        full_disk.put_checkpoint(KEY, _big(1000))
    assert [p for p in Path(full_disk.root).rglob("*") if p.is_file()] == []
