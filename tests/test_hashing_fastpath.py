"""The direct encodings of a warm run's hot path give the same digests as the encoder."""

from __future__ import annotations

import pytest

from etherealfabric.hashing._cachekey import (
    KEY_FORMAT_VERSION,
    cache_key,
    ref_digest,
    scalar_digest,
)
from etherealfabric.hashing._digest import RefDigest
from etherealfabric.hashing._encoder import Encoder
from etherealfabric.hashing._values import hash_value

VALUES = [0, 1, -1, 127, 128, 255, 256, -129, 2**63, -(2**70), 10**40, "", "a", "é\u2603",
          "\ud800", "x" * 100_000, RefDigest("json", "0" * 32), RefDigest("=value", "ab" * 16)]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:20])
def test_scalar_digests_are_the_encoders(value: object) -> None:
    assert scalar_digest(value) == hash_value(value)


@pytest.mark.parametrize(
    "ref", [RefDigest("json", "0" * 32), RefDigest("=value", "ab" * 16), RefDigest("é", "x")]
)
def test_an_upstream_outputs_digest_is_the_encoders(ref: RefDigest) -> None:
    for _ in range(2):  # the second time with the remembered serializer's frame
        assert ref_digest(ref.serializer, ref.digest) == hash_value(ref)


@pytest.mark.parametrize("value", [True, 1.0, None, b"1", (1,), [1]])
def test_other_values_take_the_general_path(value: object) -> None:
    assert scalar_digest(value) is None


@pytest.mark.parametrize("version", [None, "2"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"x": "a" * 32},
        {"b": "1" * 32, "a": "2" * 32},
        {"short": "abc", "é": "é" * 16},  # not 32 bytes: framed by their own length
        {f"p{i:02d}": f"{i:032x}" for i in range(20)},  # past the table of tuple heads
    ],
)
def test_cache_keys_are_the_encoders(version: str | None, params: dict[str, str]) -> None:
    outputs = ("result", "file:out/é.txt")
    e = Encoder(None)
    e.tag("cache-key")
    e.value(
        (KEY_FORMAT_VERSION, "mod.fn", "c" * 32, version, tuple(sorted(params.items())), outputs)
    )
    for _ in range(2):  # the second time with the remembered head
        key = cache_key(
            kind="mod.fn", code="c" * 32, version=version, params=params, outputs=outputs
        )
        assert key == e.hexdigest()


@pytest.mark.parametrize("root", [None, "/data/root"])
@pytest.mark.parametrize("container", [list, tuple])
@pytest.mark.parametrize("size", [1, 3, 5000])
def test_a_list_of_upstream_outputs_is_keyed_as_the_encoder_would(
    root: str | None, container: type, size: int
) -> None:
    """A gather's input (a list or tuple of upstream outputs) takes a direct encoding; its
    digest and the inputs it reads are the general path's (``hash_value`` of the resolved
    list, paths inside the root looked for)."""
    from etherealfabric.plan._graph import InputRef
    from etherealfabric.plan._keys import _refs_param

    refs = container(InputRef(f"n{i}", "out") for i in range(size))
    upstream = {  # value digests, bytes digests under two serializers, a repeated digest
        f"n{i}": {"out": {"value": f"{i:032x}"} if i % 3 == 0 else
                  {"serializer": "json" if i % 3 == 1 else "pickle", "digest": f"{i % 7:032x}"}}
        for i in range(size)
    }  # fmt: skip

    class Spec:
        pass

    spec = Spec()
    spec.root = root  # type: ignore[attr-defined]
    found = _refs_param(spec, refs, upstream)  # type: ignore[arg-type]
    resolved = [
        RefDigest("=value", r["value"]) if "value" in r else RefDigest(r["serializer"], r["digest"])
        for r in (upstream[ref.node][ref.output] for ref in refs)
    ]
    assert found is not None
    assert found[0] == hash_value(container(resolved))
    assert found[1] == tuple(
        f"{ref.node}.out@{d.digest}" for ref, d in zip(refs, resolved, strict=True)
    )


@pytest.mark.parametrize("value", [[], (), [1], ["a", "b"], {"x": 1}])
def test_other_lists_are_not_a_list_of_upstream_outputs(value: object) -> None:
    from etherealfabric.plan._keys import _refs_param

    assert _refs_param(None, value, {}) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("container", [list, tuple])
def test_a_list_of_references_of_any_digest_length_is_keyed_as_the_encoder_would(
    container: type,
) -> None:
    """The direct encoding of a gather's input frames a 32-character digest with a cached
    head; a digest of another length (or non-ASCII) takes the general frame: the same bytes."""
    from etherealfabric.hashing._cachekey import ref_sequence_digest

    pairs = [("=value", "a" * 32), ("pickle", ""), ("json", "b" * 31), ("json", "c" * 64),
             ("pickle", "ü" * 16), ("=value", "d" * 32), ("json", "e" * 32)]  # fmt: skip
    resolved = container(RefDigest(s, d) for s, d in pairs)
    assert ref_sequence_digest(container, pairs) == hash_value(resolved)
