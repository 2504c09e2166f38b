"""The serializer contract: what every :class:`~etherealfabric.store.Serializer` must do.

Subclass :class:`SerializerContract` in a test module (its name must start with ``Test``)
and give it three fixtures: ``serializer`` (an instance), ``values`` (sample values it must
write and read back) and ``unsupported`` (values it must refuse; may be empty). Override
:meth:`SerializerContract.assert_same` when ``==`` is not how your values compare::

    class TestPointSerializer(SerializerContract):
        @pytest.fixture
        def serializer(self):
            return PointSerializer()

        @pytest.fixture
        def values(self):
            return [Point(0), Point(-3)]

        @pytest.fixture
        def unsupported(self):
            return ["not a point", [Point(1)]]
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from ..errors import SerializationError
from ..store import LocalStore, Serializer, SerializerRegistry

# engine internal: the call the engine wraps every dump in (it turns a failure into a
# SerializationError naming the node, output, type and serializer)
from ..store._serializers import dump_value

__all__ = ["SerializerContract"]


class SerializerContract:
    """Tests every serializer passes. Subclasses provide ``serializer``, ``values`` and
    ``unsupported`` fixtures."""

    @pytest.fixture
    def serializer(self) -> Serializer:
        """The serializer under test."""
        raise NotImplementedError(f"{type(self).__name__} must define a serializer fixture")

    @pytest.fixture
    def values(self) -> list[Any]:
        """Values the serializer must write and read back equal."""
        raise NotImplementedError(f"{type(self).__name__} must define a values fixture")

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        """Values the serializer must refuse (its ``dump`` raises)."""
        raise NotImplementedError(f"{type(self).__name__} must define an unsupported fixture")

    def assert_same(self, back: Any, value: Any) -> None:
        """Assert that ``back`` (read back) stands for ``value``; ``==`` and the same type."""
        assert type(back) is type(value)
        assert back == value

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def dump(serializer: Serializer, value: object) -> bytes:
        buffer = io.BytesIO()
        dump_value(value, buffer, serializer)
        return buffer.getvalue()

    def round_trip(self, serializer: Serializer, value: object) -> Any:
        """Read ``value`` back through a stream and from bytes; both give the same type."""
        data = self.dump(serializer, value)
        from_stream = serializer.load(io.BytesIO(data))
        from_bytes = serializer.loads(data)
        assert type(from_stream) is type(from_bytes)
        self.assert_same(from_stream, from_bytes)
        return from_bytes

    # -- the contract ----------------------------------------------------------------------------
    def test_is_a_serializer_with_a_name_the_registry_accepts(self, serializer: Serializer) -> None:
        assert isinstance(serializer, Serializer)
        registry = SerializerRegistry()
        registry.register(serializer)
        assert registry.get(serializer.name) is serializer
        assert registry.names() == [serializer.name]

    def test_the_samples_are_not_empty(self, values: list[Any]) -> None:
        assert len(values) > 0, "give the contract at least one value to round-trip"

    def test_values_round_trip(self, serializer: Serializer, values: list[Any]) -> None:
        for value in values:
            self.assert_same(self.round_trip(serializer, value), value)

    def test_same_value_gives_same_bytes(self, serializer: Serializer, values: list[Any]) -> None:
        for value in values:
            assert self.dump(serializer, value) == self.dump(serializer, value)

    def test_read_back_bytes_write_the_same_bytes_again(
        self, serializer: Serializer, values: list[Any]
    ) -> None:
        for value in values:
            data = self.dump(serializer, value)
            assert self.dump(serializer, serializer.loads(data)) == data

    def test_writes_to_a_store_writer_and_reads_from_the_stored_object(
        self, serializer: Serializer, values: list[Any], tmp_path: Path
    ) -> None:
        """The engine dumps into a write-only, non-seekable stream and loads from a file."""
        store = LocalStore(tmp_path / "store")
        for value in values:
            with store.writer(inline_limit=-1) as writer:
                dump_value(value, writer, serializer, node="n", output="o")
                stored = writer.commit()
            assert stored.size == len(self.dump(serializer, value))
            with store.open_object(stored.digest) as fp:
                self.assert_same(serializer.load(fp), value)

    def test_unsupported_values_are_refused_naming_node_output_type_and_serializer(
        self, serializer: Serializer, unsupported: list[Any]
    ) -> None:
        for value in unsupported:
            with pytest.raises(SerializationError) as info:
                dump_value(value, io.BytesIO(), serializer, node="fit", output="model")
            error = info.value
            assert (error.node, error.output) == ("fit", "model")
            assert error.type_name is not None
            assert error.type_name.endswith(type(value).__qualname__)
            message = str(error)
            assert message.startswith("node 'fit' output 'model': cannot serialize value of type")
            assert type(value).__qualname__ in message and f"'{serializer.name}'" in message
            assert isinstance(error.__cause__, Exception)
