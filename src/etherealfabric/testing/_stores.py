"""The store contract: what every :class:`~etherealfabric.store.Store` must do.

Subclass :class:`StoreContract` in a test module (its name must start with ``Test``), give it
a ``store`` fixture and the three helpers that only the store itself knows how to do
(damage an object, list leftover temp files, list every file), and pytest runs the whole
contract against it::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path / "store")

        def damage(self, store, digest, how):
            ...  # flip a byte, truncate or delete the object; return its location

        def temp_files(self, store):
            return [...]  # temp files the store has left

        def all_files(self, store):
            return [...]  # every file the store holds, temp files included
"""

from __future__ import annotations

import gc
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import cloudpickle
import pytest

from ..errors import ArtifactMissingError, CorruptArtifactError, StoreError

# engine internal (no public digest function yet): the digest every store names objects by
from ..hashing._digest import digest_bytes
from ..store import Store, StoredObject

__all__ = ["BAD_NAMES", "KEY", "OTHER_KEY", "StoreContract", "big_bytes", "write_in_pieces"]

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
#: names a store must refuse (as digests, cache keys and checkpoint keys) without writing
BAD_NAMES: list[object] = [
    "../../etc", "../" * 10 + "passwd", "", "ABCDEF0123456789ABCDEF0123456789", "a" * 31,
    "a" * 33, "0123456789abcdef/123456789abcdef", "0123456789abcdef0123456789abcde\n", None, 12,
]  # fmt: skip

Damage = Literal["flip", "truncate", "delete"]


def write_in_pieces(
    store: Store, data: bytes, *, inline_limit: int = 1024, pieces: int = 3
) -> StoredObject:
    """Write ``data`` through ``store.writer`` in ``pieces`` calls and commit it."""
    step = max(1, len(data) // pieces)
    with store.writer(inline_limit=inline_limit) as writer:
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
        return writer.commit()


def big_bytes(size: int = 300_000, seed: int = 0) -> bytes:
    """``size`` bytes that do not compress away, different for each ``seed``."""
    return bytes((i * 7 + seed) % 251 for i in range(size))


class StoreContract:
    """Tests every store passes. Subclasses provide the ``store`` fixture and the helpers.

    ``store`` must give an empty store for each test. The tests write objects of up to a few
    hundred kilobytes, use threads, and pickle the store.
    """

    # -- what the subclass provides ------------------------------------------------------------
    def damage(self, store: Store, digest: str, how: Damage) -> str:
        """Damage the stored object ``digest`` behind the store's back; return its location.

        ``how``: ``"flip"`` one byte in the middle, ``"truncate"`` to half its size, or
        ``"delete"`` it. The location is what the store's errors name (a path or URL).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement damage()")

    def temp_files(self, store: Store) -> list[str]:
        """The temporary files (of writers, of checkpoint saves) the store holds now."""
        raise NotImplementedError(f"{type(self).__name__} must implement temp_files()")

    def all_files(self, store: Store) -> list[str]:
        """Every file the store holds now: objects, records, checkpoints and temp files."""
        raise NotImplementedError(f"{type(self).__name__} must implement all_files()")

    # -- writing ---------------------------------------------------------------------------------
    def test_small_output_stays_inline_and_nothing_is_stored(self, store: Store) -> None:
        stored = write_in_pieces(store, b"tiny output")
        assert stored == StoredObject(digest_bytes(b"tiny output"), 11, b"tiny output")
        assert not store.has_object(stored.digest)
        assert self.all_files(store) == []

    def test_output_at_the_limit_is_inline_one_byte_more_is_stored(self, store: Store) -> None:
        at_limit = write_in_pieces(store, b"x" * 1024)
        over = write_in_pieces(store, b"x" * 1025)
        assert at_limit.inline == b"x" * 1024
        assert over.inline is None
        assert list(store.iter_objects()) == [over.digest]

    def test_large_output_is_stored_under_the_digest_of_its_bytes(self, store: Store) -> None:
        data = big_bytes()
        stored = write_in_pieces(store, data, pieces=7)
        assert stored == StoredObject(digest_bytes(data), len(data), None)
        assert store.read_bytes(stored.digest) == data
        assert store.object_size(stored.digest) == len(data)
        with store.open_object(stored.digest) as fp:
            assert fp.read() == data
        assert self.temp_files(store) == []

    def test_writer_accepts_any_buffer(self, store: Store) -> None:
        data = big_bytes(5000)
        with store.writer(inline_limit=0) as writer:
            writer.write(bytearray(data[:1000]))
            writer.write(memoryview(data)[1000:3000])
            writer.write(memoryview(data[3000:]).cast("B", (len(data[3000:]) // 4, 4))[:])
            assert writer.tell() == len(data)
            stored = writer.commit()
        assert store.read_bytes(stored.digest) == data

    def test_identical_content_twice_gives_one_object(self, store: Store) -> None:
        first = write_in_pieces(store, big_bytes())
        second = write_in_pieces(store, big_bytes(), pieces=2)
        assert first == second
        assert list(store.iter_objects()) == [first.digest]
        assert self.temp_files(store) == []

    def test_concurrent_writers_of_the_same_content(self, store: Store) -> None:
        data, threads = big_bytes(), 8
        barrier = threading.Barrier(threads)

        def write(_: int) -> StoredObject:
            with store.writer(inline_limit=0) as writer:
                writer.write(data[:1000])
                barrier.wait()  # every writer has its temp file open
                writer.write(data[1000:])
                return writer.commit()

        with ThreadPoolExecutor(threads) as pool:
            results = set(pool.map(write, range(threads)))
        assert results == {StoredObject(digest_bytes(data), len(data), None)}
        assert list(store.iter_objects()) == [digest_bytes(data)]
        assert store.read_bytes(digest_bytes(data)) == data
        assert self.temp_files(store) == []

    def test_put_bytes_always_stores(self, store: Store) -> None:
        digest = store.put_bytes(b"small")
        assert digest == digest_bytes(b"small")
        assert store.read_bytes(digest) == b"small"
        assert store.put_bytes(b"small") == digest
        assert store.read_bytes(store.put_bytes(b"")) == b""

    # -- giving up -------------------------------------------------------------------------------
    def test_abort_leaves_no_temp_file(self, store: Store) -> None:
        writer = store.writer(inline_limit=10)
        writer.write(big_bytes(1000))
        assert self.temp_files(store) != []  # spilled
        writer.abort()
        writer.abort()
        assert self.all_files(store) == []
        with pytest.raises(ValueError):
            writer.write(b"more")

    def test_exception_inside_with_writer_leaves_nothing(self, store: Store) -> None:
        with pytest.raises(RuntimeError, match="serializer broke"):  # noqa: SIM117
            with store.writer(inline_limit=10) as writer:
                writer.write(big_bytes(1000))
                raise RuntimeError("serializer broke")
        assert self.all_files(store) == []
        assert list(store.iter_objects()) == []

    def test_leaving_with_writer_without_commit_keeps_nothing(self, store: Store) -> None:
        with store.writer(inline_limit=10) as writer:
            writer.write(big_bytes(1000))
        assert self.all_files(store) == []

    def test_forgotten_writer_removes_its_temp_file(self, store: Store) -> None:
        writer = store.writer(inline_limit=10)
        writer.write(big_bytes(1000))
        del writer
        gc.collect()
        assert self.all_files(store) == []

    def test_negative_inline_limit_stores_even_an_empty_object(self, store: Store) -> None:
        with store.writer(inline_limit=-1) as writer:
            stored = writer.commit()
        assert stored == StoredObject(digest_bytes(b""), 0, None)
        assert store.read_bytes(stored.digest) == b""

    def test_commit_is_idempotent_and_survives_exit(self, store: Store) -> None:
        with store.writer(inline_limit=10) as writer:
            writer.write(big_bytes(1000))
            stored = writer.commit()
            assert writer.commit() == stored
        assert store.read_bytes(stored.digest) == big_bytes(1000)

    # -- damage ----------------------------------------------------------------------------------
    @pytest.mark.parametrize("how", ["flip", "truncate"])
    def test_damaged_object_is_reported_with_its_location(self, store: Store, how: Damage) -> None:
        digest = store.put_bytes(big_bytes())
        location = self.damage(store, digest, how)
        with pytest.raises(CorruptArtifactError) as info:
            store.read_bytes(digest)
        assert location in str(info.value) and info.value.path == location
        with pytest.raises(CorruptArtifactError, match="corrupt"):
            store.open_object(digest)

    def test_deleted_object_is_reported_missing_with_its_location(self, store: Store) -> None:
        digest = store.put_bytes(big_bytes())
        location = self.damage(store, digest, "delete")
        for read in (store.read_bytes, store.open_object):
            with pytest.raises(ArtifactMissingError) as info:
                read(digest)
            assert location in str(info.value)
        assert not store.has_object(digest)
        assert store.object_size(digest) is None

    def test_a_corrupt_object_can_be_deleted_and_rewritten(self, store: Store) -> None:
        data = big_bytes()
        digest = store.put_bytes(data)
        self.damage(store, digest, "flip")
        store.delete_object(digest)
        store.delete_object(digest)  # absent: no error
        assert write_in_pieces(store, data, inline_limit=0).digest == digest
        assert store.read_bytes(digest) == data

    def test_a_truncated_object_is_replaced_by_the_next_write(self, store: Store) -> None:
        data = big_bytes()
        digest = store.put_bytes(data)
        self.damage(store, digest, "truncate")
        write_in_pieces(store, data, inline_limit=0)
        assert store.read_bytes(digest) == data

    # -- action records --------------------------------------------------------------------------
    def test_put_get_replace_delete_action(self, store: Store) -> None:
        record = {"node": "fit", "outputs": {"model": {"digest": "ab" * 16, "size": 3}}}
        assert store.get_action(KEY) is None
        store.put_action(KEY, record)
        assert store.get_action(KEY) == record
        store.put_action(KEY, {"node": "fit", "outputs": {}})
        assert store.get_action(KEY) == {"node": "fit", "outputs": {}}
        store.put_action(OTHER_KEY, record)
        assert sorted(store.iter_actions()) == sorted([KEY, OTHER_KEY])
        store.delete_action(KEY)
        store.delete_action(KEY)
        assert store.get_action(KEY) is None
        assert list(store.iter_actions()) == [OTHER_KEY]
        assert self.temp_files(store) == []

    def test_unserializable_action_record_is_refused(self, store: Store) -> None:
        with pytest.raises(StoreError, match="not valid JSON"):
            store.put_action(KEY, {"bad": object()})
        assert store.get_action(KEY) is None
        assert self.temp_files(store) == []

    # -- checkpoints -----------------------------------------------------------------------------
    def test_put_get_replace_delete_checkpoint(self, store: Store) -> None:
        assert store.get_checkpoint(KEY) is None
        store.put_checkpoint(KEY, b"epoch 1")
        assert store.get_checkpoint(KEY) == b"epoch 1"
        store.put_checkpoint(KEY, big_bytes())
        assert store.get_checkpoint(KEY) == big_bytes()
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
        assert self.temp_files(store) == []

    def test_checkpoint_and_action_record_of_one_key_are_separate(self, store: Store) -> None:
        store.put_checkpoint(KEY, b"state")
        store.put_action(KEY, {"node": "train"})
        store.delete_checkpoint(KEY)
        assert store.get_action(KEY) == {"node": "train"}
        assert store.get_checkpoint(KEY) is None

    def test_readers_see_a_whole_checkpoint_while_it_is_replaced(self, store: Store) -> None:
        versions = [big_bytes(200_000, seed) for seed in range(4)]
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
        assert self.temp_files(store) == []

    @pytest.mark.parametrize("name", BAD_NAMES)
    def test_invalid_checkpoint_key_is_refused_and_nothing_is_written(
        self, store: Store, name: str
    ) -> None:
        calls: list[Callable[[], object]] = [
            lambda: store.put_checkpoint(name, b"state"),
            lambda: store.get_checkpoint(name),
            lambda: store.delete_checkpoint(name),
        ]
        for call in calls:
            with pytest.raises(StoreError, match="invalid cache key"):
                call()
        assert self.all_files(store) == []

    # -- names -----------------------------------------------------------------------------------
    @pytest.mark.parametrize("name", BAD_NAMES)
    def test_invalid_digest_or_key_is_refused_and_nothing_is_written(
        self, store: Store, name: str
    ) -> None:
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
        assert self.all_files(store) == []

    def test_store_is_picklable(self, store: Store) -> None:
        digest = store.put_bytes(big_bytes())  # fills any caches
        for module in (pickle, cloudpickle):
            copy = module.loads(module.dumps(store))
            assert copy.read_bytes(digest) == big_bytes()
            assert write_in_pieces(copy, big_bytes(seed=1), inline_limit=0).digest == digest_bytes(
                big_bytes(seed=1)
            )
