"""The direct paths for small plain outputs give what the general paths give.

``value_digest`` encodes a scalar from ``_builtins.SCALARS`` in one piece, at the top and
inside lists and dicts (the general path: every value through its handler), ``SerializerRegistry.choose`` remembers the MRO walk per exact type
(a later registration still wins), and ``write_value`` keeps the built-in json's bytes
inline without a writer (the writer is the general path).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, BinaryIO
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etherealfabric.hashing import _encoder, _outputs
from etherealfabric.hashing._outputs import value_digest
from etherealfabric.run._worker import store_values
from etherealfabric.store import LocalStore, StoredObject
from etherealfabric.store._json import JsonSerializer, is_json_safe
from etherealfabric.store._serializers import (
    Serializer,
    SerializerRegistry,
    builtin_serializers,
    dump_value,
    write_value,
)
from etherealfabric.store._writer import inline_object

SCALARS = [None, True, False, 0, 1, -1, 127, 128, 255, 256, -128, -129, 2**63 - 1, 2**63,
           -(2**63), 2**64, -(2**70), 10**40, 10**5000, -(10**5000), 0.0, -0.0, 1.5, -2.25,
           1e-320, 1e308, math.pi, math.inf, -math.inf, math.nan, -math.nan, "", "a", "0",
           "é\u2603", "\ud800", "\x00", "x" * 70_000]  # fmt: skip
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


class Tagged(Serializer):
    name = "tagged"

    def dump(self, value: object, fp: BinaryIO) -> None:
        fp.write(b"tagged:" + repr(value).encode())

    def load(self, fp: BinaryIO) -> object:
        return fp.read()


class MyInt(int):
    pass


def _encoded_digest(value: object) -> str | None:
    """The general path: every value, scalars too, through its handler."""
    with mock.patch.object(_outputs, "_scalar_encoding", lambda value: None):
        return value_digest(value)


# -- value digests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", SCALARS, ids=[type(v).__name__ for v in SCALARS])
def test_scalar_value_digests_are_the_encoders(value: object) -> None:
    assert value_digest(value) == _encoded_digest(value) is not None


@settings(max_examples=300, deadline=None)
@given(PLAIN)
def test_plain_value_digests_are_the_encoders(value: object) -> None:
    assert value_digest(value) == _encoded_digest(value)


@settings(max_examples=300, deadline=None)
@given(st.integers() | st.floats() | st.text() | st.booleans())
def test_random_scalars_agree(value: object) -> None:
    assert value_digest(value) == _encoded_digest(value)


@pytest.mark.parametrize("size", [99_999, 100_000])
def test_the_budget_counts_scalars_alike(size: int) -> None:
    values = [[1] * size, ["a"] * size, dict.fromkeys(map(str, range(size)), None)]
    for value in values:
        assert value_digest(value) == _encoded_digest(value)
    assert (value_digest(values[0]) is None) == (size == 100_000)


def test_scalars_of_different_types_differ() -> None:
    digests = {value_digest(v) for v in (1, True, 1.0, "1", 0, False, 0.0, "", None)}
    assert len(digests) == 9
    assert value_digest(math.nan) == value_digest(-math.nan)  # every NaN alike, as encoded
    assert value_digest(0.0) != value_digest(-0.0)
    assert value_digest(MyInt(3)) is None  # a subclass never stands in for its base


def test_a_changed_handler_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    before = value_digest(7)

    def odd(value: Any, encoder: _encoder.Encoder) -> None:
        encoder.tag("odd")
        encoder.integer(value)

    monkeypatch.setitem(_encoder._RESOLVED, int, odd)  # as a hasher registered for a base
    assert value_digest(7) == _encoded_digest(7) != before


# -- the choice of serializer ----------------------------------------------------------------------
def _reference_choice(registry: SerializerRegistry, value: object) -> str:
    """The choice as the module docstring orders it, walking the MRO every time."""
    for kind in type(value).__mro__:
        if kind in registry._by_type:
            return registry._by_type[kind].name
    chosen = registry._by_library(value)
    if chosen is not None:
        return chosen.name
    return "json" if is_json_safe(value) else "cloudpickle"


@settings(max_examples=200, deadline=None)
@given(PLAIN | st.tuples(st.integers()) | st.builds(MyInt, st.integers()))
def test_choice_is_the_reference(value: object) -> None:
    registry = SerializerRegistry(builtin_serializers())
    assert registry.choose(value).name == _reference_choice(registry, value)
    assert registry.choose(value).name == _reference_choice(registry, value)  # remembered


def test_a_later_registration_wins() -> None:
    registry = SerializerRegistry(builtin_serializers())
    assert [registry.choose(v).name for v in (5, MyInt(5), "s")] == ["json", "cloudpickle", "json"]
    registry.register(Tagged(), types=(MyInt,))
    assert [registry.choose(v).name for v in (5, MyInt(5), "s")] == ["json", "tagged", "json"]
    registry.register(Tagged(), types=(int,))
    assert [registry.choose(v).name for v in (5, True, "s")] == ["tagged", "tagged", "json"]
    registry.register(Tagged(), types=(object,))
    assert registry.choose("s").name == "tagged"
    assert registry.choose(None).name == "tagged"


def test_a_replaced_json_is_used_and_written_the_general_way(tmp_path: Path) -> None:
    class OtherJson(JsonSerializer):
        def dumps(self, value: object) -> bytes:
            return b"other:" + super().dumps(value)

        def dump(self, value: object, fp: BinaryIO) -> None:
            fp.write(b"dumped:" + super().dumps(value))

    registry = SerializerRegistry(builtin_serializers())
    assert registry.choose(5).name == "json"
    registry.register(OtherJson(), replace=True)
    chosen = registry.choose(5)
    assert isinstance(chosen, OtherJson)
    stored = write_value(LocalStore(tmp_path), 5, chosen, 1024)
    assert stored.inline == b"dumped:5"


def test_an_extended_registry_honours_its_types() -> None:
    registry = SerializerRegistry(builtin_serializers())
    assert registry.choose(MyInt(1)).name == "cloudpickle"
    extended = registry.extended(((Tagged(), (MyInt,)),))
    assert extended.choose(MyInt(1)).name == "tagged"
    assert registry.choose(MyInt(1)).name == "cloudpickle"


# -- writing ---------------------------------------------------------------------------------------
def _written(store: LocalStore, value: object, serializer: Serializer, limit: int) -> StoredObject:
    """The general path: the serializer dumps into the store's writer."""
    with store.writer(inline_limit=limit) as writer:
        dump_value(value, writer, serializer)
        return writer.commit()


@pytest.mark.parametrize("value", [5, "abc", [1, 2.5, None], {"b": [True], "a": "é"}, "x" * 300])
def test_json_values_are_written_as_the_writer_writes_them(tmp_path: Path, value: object) -> None:
    store = LocalStore(tmp_path)
    serializer = JsonSerializer()
    size = len(serializer.dumps(value))
    for limit in (-1, 0, size - 1, size, size + 1, 65536):
        direct = write_value(store, value, serializer, limit)
        assert direct == _written(store, value, serializer, limit)
        if direct.inline is None:
            assert store.read_bytes(direct.digest) == serializer.dumps(value)


@pytest.mark.parametrize("data", [b"", b"x", b"y" * 100])
def test_inline_object_is_what_a_writer_commits(tmp_path: Path, data: bytes) -> None:
    store = LocalStore(tmp_path)
    for limit in (-1, 0, len(data) - 1, len(data), 1024):
        with store.writer(inline_limit=limit) as writer:
            writer.write(data)
            committed = writer.commit()
        direct = inline_object(data, limit)
        assert direct == (committed if committed.inline is not None else None)


def test_unwritable_json_fails_as_before(tmp_path: Path) -> None:
    from etherealfabric.errors import SerializationError

    with pytest.raises(SerializationError, match=r"output 'out'.*'json'"):
        write_value(LocalStore(tmp_path), math.nan, JsonSerializer(), 1024, node="n", output="out")


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("store"))


@settings(max_examples=100, deadline=None)
@given(value=PLAIN)
def test_records_are_the_general_paths(shared_store: LocalStore, value: object) -> None:
    store = shared_store
    records, inline = store_values("n", ("out",), {"out": value}, {}, store, 65536)
    record = records["out"]
    registry = SerializerRegistry(builtin_serializers())
    serializer = registry.get(_reference_choice(registry, value))
    stored = _written(store, value, serializer, 65536)
    expected = {
        "digest": stored.digest,
        "serializer": serializer.name,
        "size": stored.size,
        "type": f"builtins.{type(value).__qualname__}",
        "inline": stored.inline is not None,
    }
    canonical = _encoded_digest(value)
    if canonical is not None:
        expected["value"] = canonical
    assert record == expected
    assert inline == ({stored.digest: stored.inline} if stored.inline is not None else {})
