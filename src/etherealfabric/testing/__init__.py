"""Contract test suites for extension authors: run them against your own store, backend or
serializer to check that the engine can rely on it.

Each suite is a pytest test class to subclass; the subclass provides a fixture (``store``,
``backend_name``, or ``serializer`` with sample ``values`` and ``unsupported`` values) and
inherits every test::

    import pytest
    from etherealfabric.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path / "store")

        ...  # damage(), temp_files() and all_files(): see StoreContract

This package imports pytest (``import etherealfabric`` never does). For pytest's detailed
assertion messages inside the suites, call ``pytest.register_assert_rewrite(
"etherealfabric.testing")`` in your ``conftest.py`` before importing it.
"""

from __future__ import annotations

from ._backends import BackendContract
from ._serializers import SerializerContract
from ._stores import StoreContract

__all__ = ["BackendContract", "SerializerContract", "StoreContract"]
