"""Serializers: the contract (``etherealfabric.testing.SerializerContract``: round trips,
determinism, refusing what they cannot store) for each built-in serializer and a user's own,
plus the automatic choice, the registry, error messages and streaming memory."""

from __future__ import annotations

import gc
import io
import json
import math
import os
import subprocess
import sys
import threading
import tracemalloc
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etherealfabric.errors import SerializationError, StoreError
from etherealfabric.store import LocalStore
from etherealfabric.store import _serializers as serializers
from etherealfabric.store._serializers import (
    Serializer,
    SerializerRegistry,
    builtin_serializers,
    default_registry,
    dump_value,
    get_serializer,
    register_serializer,
)
from etherealfabric.testing import SerializerContract

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


def _dump(value: object, name: str) -> bytes:
    buffer = io.BytesIO()
    dump_value(value, buffer, get_serializer(name))
    return buffer.getvalue()


def _round_trip(value: object, name: str) -> Any:
    serializer = get_serializer(name)
    data = _dump(value, name)
    from_stream = serializer.load(io.BytesIO(data))
    from_bytes = serializer.loads(data)
    assert type(from_stream) is type(from_bytes)
    return from_bytes


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


class Point3(Point):
    pass


class PointSerializer(Serializer):
    name = "point"

    def dump(self, value: object, fp: BinaryIO) -> None:
        if not isinstance(value, Point):
            raise TypeError("points only")
        fp.write(str(value.x).encode())

    def load(self, fp: BinaryIO) -> object:
        return Point(int(fp.read()))


def _generator() -> Any:
    yield 1


NON_JSON_VALUES = [
    (1, "a"),
    {1, 2},
    frozenset({3, 4}),  # ints: a set of str pickles in an order that depends on the hash seed
    b"bytes",
    3 + 4j,
    {"k": (1, 2)},
    OrderedDict(a=1),
    Point(3),
]
NPY_ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.asfortranarray(np.arange(12, dtype=">i8").reshape(3, 4)),
    np.arange(20)[::3],  # not contiguous
    np.array(5.5),  # 0-d
    np.zeros((0, 3)),
    np.array(["a", "bcd"]),
    np.array([b"x", b"yz"]),
    np.array([1, 2], dtype="datetime64[s]"),
    np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array([True, False]),
    np.arange(6, dtype=np.complex64),
    np.arange(1000.0).reshape(10, 100),
]
JSON_SAMPLES = [
    None,
    True,
    1.5,
    -0.0,
    10**100,
    "text \ud800 with a lone surrogate",
    {"a": [1, {"b": None}]},
    [],
    {"b": 1, "a": [1.5, "x"]},
]


# -- the contract, for every built-in serializer and a user's own ---------------------------------
class TestJsonSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("json")

    @pytest.fixture
    def values(self) -> list[Any]:
        return JSON_SAMPLES

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [[math.nan], [math.inf], Point(1), b"bytes"]  # strict: no NaN or infinity


class TestPickleSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("pickle")

    @pytest.fixture
    def values(self) -> list[Any]:
        return [*JSON_SAMPLES, *NON_JSON_VALUES, {"b": 1, "a": (1, 2), "c": b"x"}]

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [_generator(), threading.Lock(), lambda x: x]


class TestCloudpickleSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("cloudpickle")

    @pytest.fixture
    def values(self) -> list[Any]:
        return [*JSON_SAMPLES, *NON_JSON_VALUES, {"b": 1, "a": (1, 2), "c": Point(2)}]

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [_generator(), threading.Lock()]


class TestNpySerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("npy")

    @pytest.fixture
    def values(self) -> list[Any]:
        return NPY_ARRAYS

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [np.array([object()], dtype=object), [1, 2]]

    def assert_same(self, back: Any, value: Any) -> None:
        assert type(back) is type(value)
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)


class TestUserSerializer(SerializerContract):
    """A serializer written outside the package passes the same contract."""

    @pytest.fixture
    def serializer(self) -> Serializer:
        return PointSerializer()

    @pytest.fixture
    def values(self) -> list[Any]:
        return [Point(0), Point(-3), Point(10**20)]

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return ["not a point", [Point(1)], None]


@pytest.fixture
def registry() -> SerializerRegistry:
    return SerializerRegistry(builtin_serializers())


# -- round trips -------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_json_safe_values_choose_json_and_round_trip_exactly(value: object) -> None:
    assert default_registry.choose(value).name == "json"
    back = _round_trip(value, "json")
    assert back == value and repr(back) == repr(_round_trip(back, "json"))
    assert _dump(value, "json") == _dump(value, "json")


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_pickles_round_trip(value: object) -> None:
    for name in ("pickle", "cloudpickle"):
        assert _round_trip(value, name) == value


@pytest.mark.parametrize("value", NON_JSON_VALUES)
def test_non_json_values_choose_cloudpickle(value: object) -> None:
    """Their round trip is in ``TestCloudpickleSerializer`` (the contract)."""
    assert default_registry.choose(value).name == "cloudpickle"


def test_cloudpickle_stores_lambdas_and_local_classes() -> None:
    offset = 3

    class Local:
        size = 5

    func, cls = _round_trip((lambda x: x + offset, Local), "cloudpickle")
    assert func(1) == 4 and cls.size == 5


@pytest.mark.parametrize("array", NPY_ARRAYS, ids=lambda a: f"{a.dtype}-{a.shape}")
def test_npy_is_chosen_and_writes_what_numpy_save_writes(array: np.ndarray[Any, Any]) -> None:
    """Its round trip (dtype, shape and items) is in ``TestNpySerializer`` (the contract)."""
    assert default_registry.choose(array).name == "npy"
    reference = io.BytesIO()
    np.save(reference, array, allow_pickle=False)
    assert _dump(array, "npy") == reference.getvalue()


# -- automatic choice -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "json"),
        (True, "json"),
        (1.5, "json"),
        (-0.0, "json"),
        (10**100, "json"),
        ("text \ud800 with a lone surrogate", "json"),
        ({"a": [1, {"b": None}]}, "json"),
        ([], "json"),
        ((1, 2), "cloudpickle"),
        ([1, (2,)], "cloudpickle"),
        ({1: "int key"}, "cloudpickle"),
        (math.nan, "cloudpickle"),
        ([math.inf], "cloudpickle"),
        (10**5000, "cloudpickle"),
        (np.float64(1.5), "cloudpickle"),
        (np.int64(3), "cloudpickle"),
        (OrderedDict(a=1), "cloudpickle"),
        (np.arange(3), "npy"),
        (np.array([1, "a"], dtype=object), "cloudpickle"),
        (np.ma.masked_array([1, 2], mask=[0, 1]), "cloudpickle"),
        (Point(1), "cloudpickle"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 12 else type(v).__name__,
)
def test_automatic_choice(value: object, expected: str) -> None:
    assert default_registry.choose(value).name == expected


def test_choice_gives_up_on_huge_or_deep_containers() -> None:
    assert default_registry.choose(list(range(1000))).name == "json"
    assert default_registry.choose(list(range(200_000))).name == "cloudpickle"
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    assert default_registry.choose(deep).name == "cloudpickle"
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert default_registry.choose(cyclic).name == "cloudpickle"


def test_importing_and_choosing_never_import_numpy(tmp_path: Path) -> None:
    code = (
        "import sys, etherealfabric.store._serializers as s\n"
        "assert s.choose_serializer({'a': [1]}).name == 'json'\n"
        "assert s.choose_serializer((1,)).name == 'cloudpickle'\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        "assert 'cloudpickle' not in sys.modules, 'cloudpickle was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


# -- determinism ------------------------------------------------------------------------------------
def test_json_bytes_keep_the_key_order() -> None:
    """A dict's order is part of its value (its consumers iterate it): the bytes keep it."""
    assert _dump({"b": 1, "a": 2}, "json") == b'{"b":1,"a":2}'
    assert _dump({"a": 2, "b": 1}, "json") == b'{"a":2,"b":1}'


# -- registry ----------------------------------------------------------------------------------------
BUILTIN_NAMES = ["arrow", "cloudpickle", "json", "model", "npy", "parquet", "pickle", "polars"]


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(SerializationError) as info:
        get_serializer("feather")
    for name in BUILTIN_NAMES:
        assert name in str(info.value)
    assert default_registry.names() == BUILTIN_NAMES


def test_user_serializer_chosen_by_type_and_subclass(registry: SerializerRegistry) -> None:
    registry.register(PointSerializer(), types=(Point,))
    assert registry.choose(Point(1)).name == "point"
    assert registry.choose(Point3(1)).name == "point"  # by MRO
    assert registry.choose([Point(1)]).name == "cloudpickle"
    assert registry.get("point").loads(b"7") == Point(7)


def test_user_types_win_over_builtin_choices(registry: SerializerRegistry) -> None:
    class ArraySerializer(PointSerializer):
        name = "my-arrays"

    registry.register(ArraySerializer(), types=(np.ndarray,))
    assert registry.choose(np.arange(3)).name == "my-arrays"


def test_user_serializer_by_name_through_the_default_registry(
    registry: SerializerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serializers, "default_registry", registry)
    register_serializer(PointSerializer())
    assert get_serializer("point").name == "point"
    assert serializers.choose_serializer(Point(1)).name == "cloudpickle"  # not registered by type
    buffer = io.BytesIO()
    dump_value(Point(42), buffer, get_serializer("point"))
    assert get_serializer("point").loads(buffer.getvalue()) == Point(42)


def test_taken_names_and_types_need_replace(registry: SerializerRegistry) -> None:
    registry.register(PointSerializer(), types=(Point,))

    class Other(PointSerializer):
        name = "other"

    class Impostor(PointSerializer):
        name = "point"

    with pytest.raises(SerializationError, match=r"already registered.*replace=True"):
        registry.register(Impostor())
    with pytest.raises(SerializationError, match=r"already use serializer 'point'.*replace=True"):
        registry.register(Other(), types=(Point,))
    assert registry.names() == sorted([*BUILTIN_NAMES, "point"])
    registry.register(Other(), types=(Point,), replace=True)
    assert registry.choose(Point(1)).name == "other"


def test_registering_the_same_class_again_replaces_it(registry: SerializerRegistry) -> None:
    """A notebook cell that registers a serializer can be run twice."""
    first, again = PointSerializer(), PointSerializer()
    registry.register(first, types=(Point,))
    registry.register(again, types=(Point,))
    assert registry.get("point") is again and registry.choose(Point(1)) is again


@pytest.mark.parametrize("bad", [object(), "json"])
def test_register_refuses_non_serializers(registry: SerializerRegistry, bad: object) -> None:
    with pytest.raises(SerializationError, match="Serializer"):
        registry.register(bad)  # type: ignore[arg-type]


def test_register_refuses_bad_names(registry: SerializerRegistry) -> None:
    class Nameless(PointSerializer):
        name = "../evil name"

    with pytest.raises(SerializationError, match="name"):
        registry.register(Nameless())


# -- errors -------------------------------------------------------------------------------------------
def test_wrong_serializer_suggests_another() -> None:
    with pytest.raises(SerializationError) as info:
        dump_value(Point(1), io.BytesIO(), get_serializer("json"), node="fit", output="model")
    assert str(info.value).startswith(
        f"node 'fit' output 'model': cannot serialize value of type {__name__}.Point with 'json': "
    )
    assert str(info.value).endswith("serializers={'model': 'cloudpickle'}")


def test_the_advice_fits_what_could_not_be_pickled() -> None:
    """A value nested too deeply to pickle was told to return a list instead of a generator."""
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SerializationError) as info:
        dump_value(deep, io.BytesIO(), get_serializer("cloudpickle"), node="fit", output="tree")
    message = str(info.value)
    assert "it is nested too deeply" in message and "a flatter value" in message, message
    assert "generator" not in message and "recursion" not in message
    with pytest.raises(SerializationError) as info:
        dump_value((i for i in range(3)), io.BytesIO(), get_serializer("cloudpickle"))
    assert "return a list instead of a generator" in str(info.value)


# -- streaming ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_streams_through_a_writer_without_copying_the_array(tmp_path: Path, order: str) -> None:
    array = np.ones((50, 1024 * 1024 // 8), dtype=np.float64, order=order)  # 50 MiB
    store = LocalStore(tmp_path)
    gc.collect()
    tracemalloc.start()
    try:
        with store.writer(inline_limit=64 * 1024) as writer:
            dump_value(array, writer, get_serializer("npy"))
            stored = writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * array.nbytes, f"peak {peak / 2**20:.1f} MiB"
    with store.open_object(stored.digest) as fp:
        np.testing.assert_array_equal(get_serializer("npy").load(fp), array)


def test_pickle_streams_large_buffers(tmp_path: Path) -> None:
    payload = bytes(30 * 1024 * 1024)
    store = LocalStore(tmp_path)
    tracemalloc.start()
    try:
        with store.writer() as writer:
            dump_value({"blob": payload}, writer, get_serializer("pickle"))
            stored = writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * len(payload), f"peak {peak / 2**20:.1f} MiB"
    assert stored.size > len(payload)


def test_store_errors_are_not_blamed_on_the_value(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "file")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="artifact store"), store.writer(inline_limit=0) as writer:
        dump_value([1, 2, 3], writer, get_serializer("json"), node="n", output="o")


def test_a_dict_output_keeps_its_key_order(tmp_path: Path) -> None:
    """A ranked dict comes back to its consumers, and from the cache, in the order the node
    built it (the json serializer once sorted the keys: the top feature became 'alpha')."""
    from etherealfabric import Workflow, node

    @node
    def importances() -> dict[str, float]:
        return {"zeta": 0.9, "mid": 0.5, "alpha": 0.1}

    @node
    def top(imp: dict[str, float]) -> str:
        return next(iter(imp))

    with Workflow("ordered", home=str(tmp_path / "home")) as wf:
        ranked = importances()
        best = top(ranked)
    first = wf.execute()
    assert first[best] == "zeta" and list(first[ranked]) == ["zeta", "mid", "alpha"]
    again = wf.execute()
    assert again.cached == 2 and list(again[ranked]) == ["zeta", "mid", "alpha"]


NUMPY_SCALARS = """
import numpy as np
from etherealfabric import Workflow, node


@node
def accuracy():
    return np.mean(np.array([1, 0, 1, 1]) == 1)  # np.float64, as np.mean and metrics give


@node
def report(acc):
    return f"{acc:.2f}"


@node
def square(x):
    return x * x  # np.int64 items


@node
def total(xs):
    return int(sum(xs))


with Workflow("scalars") as wf:
    report(accuracy())
    total(square.map(list(np.arange(3))))
"""


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_numpy_scalar_output_reaches_its_consumers_and_cat(tmp_path: Path, backend: str) -> None:
    """np.float64 / np.int64 outputs (np.mean, df.sum(), sklearn metrics) were made read-only
    like arrays, which numpy refuses for scalars: every consumer failed, and so did cat."""
    (tmp_path / "flow.py").write_text(NUMPY_SCALARS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    for _ in range(2):  # cold (handed over in memory), then warm (loaded from the store)
        done = cli("run", "flow.py", "--backend", backend)
        assert done.returncode == 0, done.stderr[-3000:]
    for node, value in (("report", "0.75"), ("accuracy", 0.75), ("total", 5)):
        shown = cli("cat", "latest", node, "--json")
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert json.loads(shown.stdout) == value
