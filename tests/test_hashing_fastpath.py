"""The direct encodings of a warm run's hot path give the same digests as the encoder."""

from __future__ import annotations

import pytest

from etherealfabric.hashing._cachekey import KEY_FORMAT_VERSION, cache_key, scalar_digest
from etherealfabric.hashing._digest import RefDigest
from etherealfabric.hashing._encoder import Encoder
from etherealfabric.hashing._values import hash_value

VALUES = [0, 1, -1, 127, 128, 255, 256, -129, 2**63, -(2**70), 10**40, "", "a", "é\u2603",
          "\ud800", "x" * 100_000, RefDigest("json", "0" * 32), RefDigest("=value", "ab" * 16)]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:20])
def test_scalar_digests_are_the_encoders(value: object) -> None:
    assert scalar_digest(value) == hash_value(value)


@pytest.mark.parametrize("value", [True, 1.0, None, b"1", (1,), [1]])
def test_other_values_take_the_general_path(value: object) -> None:
    assert scalar_digest(value) is None


@pytest.mark.parametrize("version", [None, "2"])
@pytest.mark.parametrize("params", [{}, {"x": "a" * 32}, {"b": "1" * 32, "a": "2" * 32}])
def test_cache_keys_are_the_encoders(version: str | None, params: dict[str, str]) -> None:
    outputs = ("result", "file:out/é.txt")
    e = Encoder(None)
    e.tag("cache-key")
    e.value((KEY_FORMAT_VERSION, "mod.fn", "c" * 32, version, tuple(sorted(params.items())), outputs))
    for _ in range(2):  # the second time with the remembered head
        key = cache_key(kind="mod.fn", code="c" * 32, version=version, params=params, outputs=outputs)
        assert key == e.hexdigest()
