"""The store contract (``etherealfabric.testing.StoreContract``) for every store of the
package, plus LocalStore specifics.

Each store joins the contract by subclassing it with a ``store`` fixture and the three
store-specific helpers the contract needs (damage an object, list leftover temp files, list
every file): ``TestLocalStore`` (plain and durable) and ``TestObjectStore`` (S3 on a real
moto server).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from etherealfabric.errors import StoreError
from etherealfabric.hashing._digest import digest_bytes
from etherealfabric.store import LocalStore, ObjectStore, ObjectWriter, Store, open_store
from etherealfabric.store import _local as local_module
from etherealfabric.store._base import create_temp_file, object_name
from etherealfabric.testing import StoreContract
from etherealfabric.testing._stores import KEY, Damage
from etherealfabric.testing._stores import big_bytes as _big
from etherealfabric.testing._stores import write_in_pieces as _write


def _damage_bytes(data: bytes, how: Damage) -> bytes:
    if how == "flip":
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
    return data[: len(data) // 2]


class TestLocalStore(StoreContract):
    @pytest.fixture(params=[False, True], ids=["local", "local-durable"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "store", durable=request.param)

    def damage(self, store: Store, digest: str, how: Damage) -> str:
        assert isinstance(store, LocalStore)
        path = Path(store.object_path(digest))
        if how == "delete":
            path.unlink()
        else:
            path.write_bytes(_damage_bytes(path.read_bytes(), how))
        return str(path)

    def all_files(self, store: Store) -> list[str]:
        assert isinstance(store, LocalStore)
        root = Path(store.root)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def temp_files(self, store: Store) -> list[str]:
        return [f for f in self.all_files(store) if Path(f).name.startswith(".tmp-")]


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
            [sys.executable, str(Path(__file__).with_name("moto_s3.py")), "127.0.0.1", str(port)],
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


class TestObjectStore(StoreContract):
    """An S3 store on the moto server; its temp (spilled) files live in a local folder."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> ObjectStore:
        server = MOTO.ensure()
        temp = tmp_path / "store"
        temp.mkdir()
        url = f"s3://{server.bucket}/{uuid.uuid4().hex}"
        return ObjectStore(
            url, storage_options=server.options, signing_key=SIGNING_KEY, temp_dir=temp
        )

    def damage(self, store: Store, digest: str, how: Damage) -> str:
        assert isinstance(store, ObjectStore)
        path = f"{store.root}/objects/{digest[:2]}/{digest}"
        if how == "delete":
            store.fs.rm_file(path)
        else:
            store.fs.pipe_file(path, _damage_bytes(store.fs.cat_file(path), how))
        return store.object_url(digest)

    def temp_files(self, store: Store) -> list[str]:
        assert isinstance(store, ObjectStore)
        return sorted(p.name for p in Path(store.temp_dir).iterdir() if p.name.startswith(".tmp-"))

    def all_files(self, store: Store) -> list[str]:
        assert isinstance(store, ObjectStore)
        remote = [str(p)[len(store.root) + 1 :] for p in store.fs.find(store.root)]
        return sorted(remote) + self.temp_files(store)


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


# -- large objects of the home's store are checked through a memory map ----------------------------
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("size", [0, 3 << 20])
def test_a_large_object_is_checked_whole_however_it_is_read(
    tmp_path: Path, shared: bool, size: int
) -> None:
    """The home's own objects of 1 MiB or more are hashed through a map, a shared folder's are
    read: both find a flipped byte anywhere, and an intact object reads back whole."""
    from etherealfabric.errors import CorruptArtifactError

    store = LocalStore(tmp_path / "store", shared=shared)
    data = os.urandom(size)
    digest = store.put_bytes(data)
    with store.open_object(digest) as fp:
        assert fp.read() == data
    if not size:
        return
    path = Path(store.object_path(digest))
    for where in (0, size // 2, size - 1):
        damaged = bytearray(data)
        damaged[where] ^= 0x01
        path.chmod(0o644)
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptArtifactError, match=digest):
            store.open_object(digest).close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("planted", ["fifo", "dev-zero", "folder"])
def test_an_entry_that_is_not_a_regular_file_is_absent_never_read(
    tmp_path: Path, planted: str
) -> None:
    """A teammate with write access to a shared folder could plant a FIFO (every reader
    blocked forever) or a symbolic link to /dev/zero (read without end) where an object is:
    the entry is absent (a miss, recomputed), opened without blocking or following it."""
    store = LocalStore(tmp_path / "store")
    digest = store.put_bytes(b"payload")
    name = object_name(digest)
    path = store.entry_location(name)
    os.remove(path)
    if planted == "fifo":
        os.mkfifo(path)
    elif planted == "dev-zero":
        os.symlink("/dev/zero", path)
    else:
        os.mkdir(path)
    with pytest.raises(FileNotFoundError, match=r"not a regular file|symbolic link"):
        store.open_entry(name)
    assert not store.has_object(digest)


def _plant_folder(path: str, victim: Path) -> None:
    """A folder where an entry belongs, holding a file and a symbolic link to ``victim``."""
    if os.path.lexists(path):
        os.remove(path)
    os.makedirs(os.path.join(path, "sub"))
    Path(path, "sub", "file").write_text("planted")
    os.symlink(victim, os.path.join(path, "sub", "link"))


@pytest.mark.parametrize("shared", [False, True], ids=["home", "shared"])
def test_a_folder_planted_for_an_entry_is_replaced_by_writes_and_removed_by_deletes(
    tmp_path: Path, shared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder where an object, a record, a lease or a roots entry belongs: reads take it as
    absent, writes replace it (a warning names it), an exclusive create takes its name,
    a delete removes it, and ``damaged_entries`` lists it; nothing behind a symbolic link
    in it is touched."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    store = LocalStore(tmp_path / "store", shared=shared, signing_key=KEY if shared else None)
    data = b"payload" * 100
    digest = store.put_bytes(data)
    key = "ab" * 16
    store.put_action(key, {"node": "n", "outputs": {}, "created_at": 1.0})
    action = store.entry_location(f"actions/ab/{key}.json")
    obj = store.object_path(digest)
    names = [object_name(digest), f"actions/ab/{key}.json", f"leases/ab/{key}.1", "roots/cd/x.json"]
    for name in names:
        _plant_folder(store.entry_location(name), victim)
    assert store.object_info(digest) is None and store.get_action(key) is None
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        assert store.put_bytes(data) == digest  # replaced: a file again
        store.put_action(key, {"node": "n", "outputs": {}, "created_at": 2.0})
        assert store.create_entry(f"leases/ab/{key}.1", b"lease")  # the name is free
        assert not store.create_entry(f"leases/ab/{key}.1", b"lease")  # and now taken
        store.write_entry("roots/cd/x.json", b"{}")
    assert os.path.isfile(obj) and os.path.isfile(action)
    assert store.read_bytes(digest) == data
    assert (store.get_action(key) or {}).get("created_at") == 2.0
    assert store.read_entry(f"leases/ab/{key}.1") == b"lease"
    assert "a folder where a stored file belongs" in caplog.text and obj in caplog.text
    for name in names:
        _plant_folder(store.entry_location(name), victim)
    assert sorted(n for kind in ("objects", "actions", "leases", "roots")
                  for n in store.damaged_entries(kind)) == sorted(names)  # fmt: skip
    for name in names:  # a delete removes a planted folder too
        store.delete_entry(name)
        assert not os.path.lexists(store.entry_location(name))
    assert not list(store.damaged_entries("objects"))
    assert (victim / "precious").read_text() == "keep me"  # never followed


def test_a_large_object_is_written_over_a_planted_folder(tmp_path: Path) -> None:
    """The writer's path (a temp file renamed into place) replaces a planted folder as well,
    even one whose size (a folder's, 4096) equals the object's."""
    store = LocalStore(tmp_path / "store")
    data = os.urandom(4096)
    digest = digest_bytes(data)
    path = store.object_path(digest)
    os.makedirs(os.path.join(path, "sub"))
    with store.writer(inline_limit=0) as writer:
        writer.write(data)
        assert writer.commit().digest == digest
    assert os.path.isfile(path) and store.read_bytes(digest) == data


def test_a_temp_folder_another_user_made_first_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/tmp/etherealfabric-<uid>`` made first by another local user (mode 0777): the objects
    spilled there would be theirs to read or replace. As root, the folder is given to nobody."""
    import tempfile

    from etherealfabric.errors import StoreError
    from etherealfabric.store._spill import default_temp_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # (TMPDIR is read again)
    folder = default_temp_dir()
    os.makedirs(folder)
    os.chmod(folder, 0o777)
    pytest.importorskip("s3fs")
    from etherealfabric.store import ObjectStore

    store = ObjectStore("s3://bucket/prefix")  # (spills in the system temp folder; no request)
    if os.getuid() == 0:
        os.chown(folder, 65534, 65534)
        with pytest.raises(StoreError, match="not this user's own"):
            store.open_temp()
        os.chown(folder, 0, 0)
    handle, path = store.open_temp()  # ours: made private, and used
    handle.close()
    assert os.stat(folder).st_mode & 0o777 == 0o700 and os.path.dirname(path) == folder
