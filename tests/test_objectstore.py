"""ObjectStore: an S3 (here: a real moto server on loopback) store that a team shares.

The contract every store passes is in ``test_store.py`` (its ``s3`` entry). Here: the layout,
signing and the security model (unsigned, tampered or foreign-key records are misses, never
loaded), and teammates with separate homes sharing one bucket through the public API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import pickle
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from etherealfabric import Workflow, checkpoint, node
from etherealfabric.errors import ConfigError, CorruptArtifactError, StoreError
from etherealfabric.store import LocalStore, ObjectStore, open_store
from test_store import MOTO, MotoServer

TEAM_KEY = "team-secret-0123456789abcdef"
OTHER_KEY = "someone-elses-secret-0123456789"
KEY = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
BIG_ROWS = 120  # a 120 x 120 float64 matrix: 115 kB, stored as an object (> 64 KiB inline)


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    server = MOTO.ensure()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for moto, and nothing from the machine's own AWS configuration."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)


def _prefix_url(server: MotoServer) -> str:
    return f"s3://{server.bucket}/{uuid.uuid4().hex}"


def _store(server: MotoServer, key: str | None = TEAM_KEY, url: str | None = None) -> ObjectStore:
    return ObjectStore(
        url or _prefix_url(server),
        storage_options=server.options,
        signing_key=key.encode() if key else None,
    )


def _record(digest: str, serializer: str = "json") -> dict[str, Any]:
    out = {"digest": digest, "serializer": serializer, "size": 5, "type": "x", "inline": True}
    return {"node": "n", "outputs": {"result": out}, "created_at": 1.5}


def _raw(store: ObjectStore, relative: str) -> bytes:
    return bytes(store.fs.cat_file(f"{store.root}/{relative}"))


def _write_raw(store: ObjectStore, relative: str, data: bytes) -> None:
    store.fs.pipe_file(f"{store.root}/{relative}", data)


def _action(key: str) -> str:
    return f"actions/{key[:2]}/{key}.json"


# -- opening -----------------------------------------------------------------------------------
def test_open_store_dispatches_urls_to_object_stores(s3: MotoServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", s3.endpoint)
    url = _prefix_url(s3)
    store = open_store(url + "/")
    assert isinstance(store, ObjectStore) and store.url == url
    assert store.storage_options["endpoint_url"] == s3.endpoint
    assert store.root == url.removeprefix("s3://")
    assert isinstance(open_store("memory://team"), ObjectStore)
    assert isinstance(open_store("file:///tmp/x"), LocalStore)
    digest = store.put_bytes(b"through the environment's endpoint")
    assert store.read_bytes(digest) == b"through the environment's endpoint"


def test_explicit_storage_options_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    store = ObjectStore("s3://bucket/x", storage_options={"endpoint_url": "http://127.0.0.1:2"})
    assert store.storage_options["endpoint_url"] == "http://127.0.0.1:2"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("s3://", "names no bucket"),
        ("s3://Bad_Bucket!!/ef", "which is no bucket name"),
        ("https://example.com/store", "read-only"),
        ("simplecache::s3://bucket/x", "chained"),
        ("nosuchprotocol://x", "cannot open the store"),
    ],
)
def test_unusable_urls_are_refused_with_a_store_error(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        ObjectStore(url)


def test_a_missing_bucket_is_a_store_error_naming_the_url(s3: MotoServer) -> None:
    store = _store(s3, url=f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/team")
    with pytest.raises(StoreError, match="bucket") as info:
        store.put_action(KEY, _record("ab" * 16))
    assert store.url in str(info.value)


def test_importing_and_running_locally_never_imports_fsspec(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "from etherealfabric import Workflow, node\n"
        "@node\n"
        "def one():\n"
        "    return 1\n"
        "with Workflow('light', home=sys.argv[1]) as wf:\n"
        "    one()\n"
        "assert wf.execute().executed == 1\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fsspec', 's3fs', 'boto3',"
        " 'botocore', 'aiobotocore')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "home")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- layout and signing ----------------------------------------------------------------------------
def test_a_download_stops_at_the_size_the_entry_had_when_asked(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object swapped for a bigger one between its size check (HEAD) and its download is
    cut at the size it had: a teammate cannot fill the disk of the one reading it (before,
    the whole replacement was downloaded, then refused by its digest)."""
    store = _store(s3)
    digest = store.put_bytes(b"0123456789")
    name = f"objects/{digest[:2]}/{digest}"
    real = store.entry_info

    def as_before(entry: str) -> Any:  # the HEAD saw the entry when it held 4 bytes
        info = real(entry)
        return dataclasses.replace(info, size=4) if info is not None else None

    monkeypatch.setattr(store, "entry_info", as_before)
    target = tmp_path / "copy"
    target.write_bytes(b"")
    assert store.get_file(name, str(target)) == 4
    assert target.read_bytes() == b"0123"
    assert store.get_file(name, str(target), max_bytes=3) == 4  # larger than asked: not read
    assert target.read_bytes() == b"0123"


def test_layout_and_signed_action_record(s3: MotoServer) -> None:
    store = _store(s3)
    small = store.put_bytes(b"small")
    with store.writer(inline_limit=10) as writer:
        writer.write(b"x" * 100_000)
        big = writer.commit().digest
    record = _record(small)
    store.put_action(KEY, record)
    store.put_checkpoint(KEY, b"state")
    assert sorted(str(p)[len(store.root) + 1 :] for p in store.fs.find(store.root)) == sorted(
        [
            f"objects/{small[:2]}/{small}",
            f"objects/{big[:2]}/{big}",
            _action(KEY),
            f"checkpoints/{KEY[:2]}/{KEY}",
        ]
    )
    stored = json.loads(_raw(store, _action(KEY)))
    signature = stored.pop("signature")
    assert stored == record
    assert signature["alg"] == "hmac-sha256" and signature["key_id"] == store.key_id
    assert len(signature["mac"]) == 64
    assert TEAM_KEY not in _raw(store, _action(KEY)).decode()
    assert store.get_action(KEY) == record  # the signature is checked and removed
    assert _raw(store, f"checkpoints/{KEY[:2]}/{KEY}").startswith(b"EFSIGNED1 ")
    assert store.get_checkpoint(KEY) == b"state"


def _tamper_digest(raw: bytes) -> bytes:
    stored = json.loads(raw)
    stored["outputs"]["result"]["digest"] = "cd" * 16
    return json.dumps(stored).encode()


def _tamper_node(raw: bytes) -> bytes:
    stored = json.loads(raw)
    stored["node"] = "other"
    return json.dumps(stored).encode()


def _malformed_signature(raw: bytes) -> bytes:
    stored = json.loads(raw)
    stored["signature"]["mac"] = 1
    return json.dumps(stored).encode()


def _strip_signature(raw: bytes) -> bytes:
    stored = json.loads(raw)
    del stored["signature"]
    return json.dumps(stored).encode()


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_tamper_digest, "changed after it was signed"),
        (_tamper_node, "changed after it was signed"),
        (_strip_signature, "not signed"),
        (lambda raw: raw.replace(b'"mac":"', b'"mac":"0'), "changed after it was signed"),
        (_malformed_signature, "malformed"),
        (lambda raw: b'{"node": NaN}', "not canonical JSON"),
        (lambda raw: b"[1, 2]", "not a JSON object"),
        (lambda raw: b"{cut", "not JSON"),
    ],
)
def test_tampered_action_record_is_a_miss_with_a_warning(
    s3: MotoServer, caplog: pytest.LogCaptureFixture, tamper: Any, reason: str
) -> None:
    store = _store(s3)
    store.put_action(KEY, _record(store.put_bytes(b"value")))
    _write_raw(store, _action(KEY), tamper(_raw(store, _action(KEY))))
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        assert store.get_action(KEY) is None
        assert store.get_action(KEY) is None  # warned once per key and reason
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert reason in message and f"{store.url}/{_action(KEY)}" in message


def test_a_signed_record_copied_under_another_key_is_a_miss(s3: MotoServer) -> None:
    store = _store(s3)
    store.put_action(KEY, _record(store.put_bytes(b"value")))
    _write_raw(store, _action(OTHER), _raw(store, _action(KEY)))
    assert store.get_action(KEY) is not None
    assert store.get_action(OTHER) is None


def test_a_record_signed_with_another_key_is_a_miss_naming_both_key_ids(
    s3: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    ours = _store(s3)
    theirs = _store(s3, key=OTHER_KEY, url=ours.url)
    theirs.put_action(KEY, _record(theirs.put_bytes(b"value")))
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        assert ours.get_action(KEY) is None
    message = caplog.text
    assert "another key" in message and ours.key_id and theirs.key_id
    assert ours.key_id in message and theirs.key_id in message


def test_without_a_key_only_records_that_cannot_run_code_are_used(
    s3: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    signed = _store(s3)
    unsigned = _store(s3, key=None, url=signed.url)
    assert not unsigned.signed and unsigned.key_id is None
    digest = signed.put_bytes(b"[1]")
    names = ["json", "npy", "parquet", "arrow", "pickle", "cloudpickle", "custom"]
    for n, serializer in enumerate(names):
        signed.put_action(f"{n:032x}", _record(digest, serializer))
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        usable = [unsigned.get_action(f"{n:032x}") is not None for n in range(len(names))]
    assert usable == [True, True, True, True, False, False, False]
    assert caplog.text.count("ETHEREALFABRIC_SIGNING_KEY") == 3
    assert "'pickle' serializer" in caplog.text


@pytest.mark.parametrize(
    "outputs", [[], {"result": "not a dict"}, {"result": {"digest": "../../x"}}]
)
def test_without_a_key_malformed_records_are_misses(s3: MotoServer, outputs: Any) -> None:
    store = _store(s3, key=None)
    _write_raw(store, _action(KEY), json.dumps({"node": "n", "outputs": outputs}).encode())
    assert store.get_action(KEY) is None


def test_without_a_key_records_of_pickled_outputs_are_not_published(
    s3: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    signed = _store(s3)
    unsigned = _store(s3, key=None, url=signed.url)
    digest = signed.put_bytes(b"pickled bytes")
    signed.put_action(KEY, _record(digest, "pickle"))
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        unsigned.put_action(KEY, _record(digest, "pickle"))  # would replace the signed one
        unsigned.put_action(OTHER, _record(digest, "json"))
    assert signed.get_action(KEY) == _record(digest, "pickle")
    assert "signature" not in json.loads(_raw(signed, _action(OTHER)))
    assert "ETHEREALFABRIC_SIGNING_KEY" in caplog.text


def test_signing_key_from_the_environment(s3: MotoServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", f"  {TEAM_KEY}\n")
    from_env = _store(s3, key=None)
    explicit = _store(s3, url=from_env.url)
    assert from_env.signed and from_env.key_id == explicit.key_id
    explicit.put_action(KEY, _record(explicit.put_bytes(b"v")))
    assert from_env.get_action(KEY) is not None
    assert TEAM_KEY not in repr(from_env) and TEAM_KEY not in repr(from_env._signer)


def test_a_short_signing_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", "short")
    with pytest.raises(ConfigError, match="ETHEREALFABRIC_SIGNING_KEY is too short"):
        ObjectStore("memory://short-key")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        ObjectStore("memory://short-key", signing_key=b"tiny")


def test_the_key_travels_with_a_pickled_store(s3: MotoServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", TEAM_KEY)
    store = _store(s3, key=None)
    monkeypatch.delenv("ETHEREALFABRIC_SIGNING_KEY")  # a worker whose environment differs
    copy = pickle.loads(pickle.dumps(store))
    copy.put_action(KEY, _record(copy.put_bytes(b"from a worker")))
    assert copy.key_id == store.key_id and store.get_action(KEY) is not None


# -- objects -----------------------------------------------------------------------------------------
def test_reads_always_verify_even_when_asked_not_to(s3: MotoServer) -> None:
    store = _store(s3)
    digest = store.put_bytes(b"x" * 200_000)
    _write_raw(store, f"objects/{digest[:2]}/{digest}", b"y" * 200_000)
    with pytest.raises(CorruptArtifactError, match="corrupt") as info:
        store.read_bytes(digest, verify=False)
    assert info.value.path == store.object_url(digest) and info.value.digest == digest
    with pytest.raises(CorruptArtifactError):
        store.open_object(digest, verify=False)


def test_an_object_already_there_is_not_uploaded_again(
    s3: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = ObjectStore(
        _prefix_url(s3), storage_options=s3.options, signing_key=TEAM_KEY.encode(),
        temp_dir=tmp_path / "spill",
    )  # fmt: skip
    uploads: list[str] = []
    real = store.fs._put_file  # (called through the store's bounded requests)
    monkeypatch.setattr(
        store.fs, "_put_file", lambda *a, **k: (uploads.append(a[1]), real(*a, **k))[1]
    )
    for _ in range(3):
        with store.writer(inline_limit=0) as writer:
            writer.write(b"z" * 100_000)
            writer.commit()
    assert len(uploads) == 1
    assert list((tmp_path / "spill").iterdir()) == []  # spilled files are removed


def test_cleanup_temp_removes_stale_spill_files(tmp_path: Path) -> None:
    store = ObjectStore("memory://cleanup", temp_dir=tmp_path)
    (tmp_path / ".tmp-stale").write_bytes(b"left by a killed writer")
    assert store.cleanup_temp(max_age=-1) == 1
    assert list(tmp_path.iterdir()) == []


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoints_load_only_when_signed_with_our_key(
    s3: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    ours = _store(s3)
    theirs = _store(s3, key=OTHER_KEY, url=ours.url)
    unsigned = _store(s3, key=None, url=ours.url)
    path = f"checkpoints/{KEY[:2]}/{KEY}"
    with caplog.at_level(logging.WARNING, logger="etherealfabric.store"):
        theirs.put_checkpoint(KEY, b"their state")
        assert ours.get_checkpoint(KEY) is None
        assert "another key" in caplog.text
        unsigned.put_checkpoint(KEY, b"unsigned state")
        assert "not signed" in caplog.text
        assert ours.get_checkpoint(KEY) is None and unsigned.get_checkpoint(KEY) is None
        ours.put_checkpoint(KEY, b"our state")
        assert unsigned.get_checkpoint(KEY) is None  # no key: never unpickled
        assert ours.get_checkpoint(KEY) == b"our state"
        _write_raw(ours, f"checkpoints/{OTHER[:2]}/{OTHER}", _raw(ours, path))
        assert ours.get_checkpoint(OTHER) is None  # signed for another cache key
        raw = _raw(ours, path)
        _write_raw(ours, path, raw[:-1] + b"!")
        assert ours.get_checkpoint(KEY) is None  # damaged bytes
    assert "ETHEREALFABRIC_SIGNING_KEY" in caplog.text


# -- teammates sharing one bucket, through the public API --------------------------------------------
CALLS: Counter[str] = Counter()
LOCK = threading.Lock()


def _count(name: str) -> None:
    with LOCK:
        CALLS[name] += 1


class Model:
    """Pickled by reference (this module is importable): deterministic bytes."""

    def __init__(self, weights: np.ndarray, scale: int) -> None:
        self.weights = weights
        self.scale = scale

    def score(self) -> float:
        return round(float(self.weights.sum()) * self.scale, 6)


@node
def numbers(n):
    _count("numbers")
    return list(range(n))  # json, inline


@node
def matrix(n):
    _count("matrix")
    return np.arange(n * n, dtype=np.float64).reshape(n, n) / 7  # npy, an object


@node(serializers={"result": "pickle"})
def vocab(words):
    _count("vocab")
    return {w: i for i, w in enumerate(words)}  # pickle, inline


@node
def fit(m, nums, scale):
    _count("fit")
    return Model(m * sum(nums), scale)  # cloudpickle, an object


@node
def report(model, words):
    _count("report")
    return {"score": model.score(), "words": len(words)}  # json, inline


PICKLED = {"vocab", "fit"}
NODES = {"numbers", "matrix", "vocab", "fit", "report"}


def build(scale: int = 1) -> Workflow:
    with Workflow("team") as wf:
        nums = numbers(10)
        m = matrix(BIG_ROWS)
        words = vocab(["a", "b", "c"])
        report(fit(m, nums, scale), words)
    return wf


def expected(scale: int = 1) -> dict[str, Any]:
    m = np.arange(BIG_ROWS * BIG_ROWS, dtype=np.float64).reshape(BIG_ROWS, BIG_ROWS) / 7
    model = Model(m * 45, scale)
    return {
        "numbers": list(range(10)),
        "matrix": m,
        "vocab": {"a": 0, "b": 1, "c": 2},
        "fit": model.weights,
        "report": {"score": model.score(), "words": 3},
    }


class Team:
    """Teammates with their own homes (empty journals) and one bucket prefix."""

    def __init__(self, server: MotoServer, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = _prefix_url(server)
        self.root = root
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("ETHEREALFABRIC_STORE", self.url)
        monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", server.endpoint)
        self.store = ObjectStore(self.url, signing_key=TEAM_KEY.encode())

    def run(
        self, who: str, *, key: str | None = TEAM_KEY, scale: int = 1
    ) -> tuple[set[str], dict[str, Any]]:
        """Run the workflow as ``who``: the nodes it executed and a copy of every result."""
        self.monkeypatch.setenv("ETHEREALFABRIC_HOME", str(self.root / who))
        if key is None:
            self.monkeypatch.delenv("ETHEREALFABRIC_SIGNING_KEY", raising=False)
        else:
            self.monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", key)
        gc.collect()  # no value of an earlier run stays in the workers' shared memory cache
        CALLS.clear()
        results = build(scale).execute()
        assert results.ok, results.errors
        executed = {n for n, s in results.statuses.items() if s == "succeeded"}
        assert executed == set(CALLS), (executed, CALLS)
        values: dict[str, Any] = {}
        for name in NODES:
            try:
                value = results[name]["result"]
            except CorruptArtifactError as exc:
                values[name] = exc
                continue
            values[name] = value.weights.copy() if isinstance(value, Model) else _copy(value)
        return executed, values

    def key_of(self, name: str) -> str:
        """The cache key whose action record was made by node ``name``."""
        for key in self.store.iter_actions():
            record = self.store.get_action(key)
            if record is not None and record["node"] == name:
                return key
        raise KeyError(name)

    def output(self, name: str) -> dict[str, Any]:
        record = self.store.get_action(self.key_of(name))
        assert record is not None
        return dict(record["outputs"]["result"])


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def assert_same(values: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        got = values[name]
        assert not isinstance(got, Exception), f"{name}: {got}"
        same = np.array_equal(got, value) if isinstance(value, np.ndarray) else got == value
        assert same, f"{name} returned wrong data: {str(got)[:80]}"


@pytest.fixture
def team(s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Team:
    """A team whose first member (``alice``) has run the workflow: everything is shared."""
    team = Team(s3, tmp_path, monkeypatch)
    executed, values = team.run("alice")
    assert executed == NODES
    assert_same(values, expected())
    outputs = {name: team.output(name) for name in NODES}
    assert {n: o["serializer"] for n, o in outputs.items()} == {
        "numbers": "json", "matrix": "npy", "vocab": "pickle", "fit": "cloudpickle",
        "report": "json",
    }  # fmt: skip
    assert not outputs["matrix"]["inline"] and not outputs["fit"]["inline"]
    assert outputs["numbers"]["inline"] and outputs["vocab"]["inline"]
    return team


def test_a_teammate_with_an_empty_journal_gets_every_node_from_the_bucket(team: Team) -> None:
    executed, values = team.run("bob")
    assert executed == set()
    assert_same(values, expected())
    # the large outputs bob loaded are now in his local layer (store/_layered.py)
    filled = {p.name for p in (team.root / "bob" / "objects").glob("*/*")}
    assert {team.output("matrix")["digest"], team.output("fit")["digest"]} <= filled


ALICE_ELSEWHERE = """
import sys
sys.path.insert(0, sys.argv[1])
from test_objectstore import build
results = build().execute(backend="processes", max_workers=2)
print(results.executed)
"""


def test_a_teammate_in_another_process_publishes_signed_records_from_worker_processes(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = Team(s3, tmp_path, monkeypatch)
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "alice"))
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", TEAM_KEY)
    done = subprocess.run(
        [sys.executable, "-c", ALICE_ELSEWHERE, str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(len(NODES))
    executed, values = team.run("bob")
    assert executed == set()
    assert_same(values, expected())


def test_a_teammate_with_another_key_recomputes_with_a_warning(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("carol", key=OTHER_KEY)
    # with a key configured only verified records count: every record is a miss, pickled or not
    assert executed == NODES and executed >= PICKLED
    assert_same(values, expected())
    assert caplog.text.count("signed with another key") == len(NODES)


def test_a_teammate_without_a_key_shares_json_and_npy_but_not_pickles(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("dave", key=None)
    # the pickled nodes recompute identical bytes, so `report` (json) is still a hit
    assert executed == PICKLED
    assert_same(values, expected())
    assert "ETHEREALFABRIC_SIGNING_KEY" in caplog.text
    # dave published nothing that replaces the team's signed records
    executed, _ = team.run("erin")
    assert executed == set()


def test_a_tampered_object_is_detected_and_recomputed_never_loaded(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    matrix_digest = team.output("matrix")["digest"]
    path = f"{team.store.root}/objects/{matrix_digest[:2]}/{matrix_digest}"
    data = bytearray(team.store.fs.cat_file(path))
    data[-1] ^= 0x40  # the exponent of the last float: a very different value, same size
    team.store.fs.pipe_file(path, bytes(data))
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("frank", scale=2)  # `fit` must run: it reads the matrix
    assert {"matrix", "fit"} <= executed and "numbers" not in executed
    assert_same(values, expected(scale=2))
    assert team.store.object_url(matrix_digest) in caplog.text
    team.store.read_bytes(matrix_digest)  # verifies: the bucket holds the right bytes again


def test_a_tampered_object_asked_for_as_a_result_is_recomputed(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    digest = team.output("matrix")["digest"]
    path = f"{team.store.root}/objects/{digest[:2]}/{digest}"
    data = bytearray(team.store.fs.cat_file(path))
    data[-1] ^= 0x40
    team.store.fs.pipe_file(path, bytes(data))
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("grace")  # the hit's object is checked as it is fetched
    assert executed == {"matrix"}  # into the local layer: recomputed (the same bytes)
    assert_same(values, expected())  # never the tampered bytes
    assert team.store.object_url(digest) in caplog.text
    team.store.read_bytes(digest)  # verifies: recomputed and published again


def test_a_tampered_inline_output_in_the_bucket_is_recomputed(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    digest = team.output("numbers")["digest"]
    path = f"{team.store.root}/objects/{digest[:2]}/{digest}"
    team.store.fs.pipe_file(path, b"[0,1,2,3,4,5,6,7,8,99]")  # valid JSON, wrong data
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("heidi")
    assert executed == {"numbers"}
    assert_same(values, expected())
    assert "corrupt" in caplog.text
    assert team.store.read_bytes(digest) == b"[0,1,2,3,4,5,6,7,8,9]"  # republished


def test_a_tampered_action_record_is_a_miss_and_recomputed(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    key = team.key_of("matrix")
    relative = _action(key)
    stored = json.loads(_raw(team.store, relative))
    # point the matrix at another object that exists: a hit would return wrong data
    stored["outputs"]["result"]["digest"] = team.output("fit")["digest"]
    _write_raw(team.store, relative, json.dumps(stored).encode())
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("ivan")
    assert executed == {"matrix"}  # same bytes again: nothing downstream re-runs
    assert_same(values, expected())
    assert "changed after it was signed" in caplog.text and key in caplog.text
    assert team.store.get_action(key) is not None  # re-signed by ivan's run


@node(retries=1)
def resumable(steps):
    state = checkpoint.load(default={"done": 0})
    _count(f"start at {state['done']}")
    for step in range(state["done"], steps):
        state["done"] = step + 1
        checkpoint.save(state)
        if step == 1 and CALLS["crashed"] == 0:
            _count("crashed")
            raise RuntimeError("the machine died")
    return state["done"]


@pytest.mark.parametrize("key", [TEAM_KEY, None])
def test_a_retried_node_resumes_from_its_checkpoint_only_when_signed(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    team = Team(s3, tmp_path, monkeypatch)
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "alice"))
    if key:
        monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", key)
    CALLS.clear()
    with Workflow("resume") as wf:
        out = resumable(4)
    assert wf.execute()[out] == 4
    starts = {k: v for k, v in CALLS.items() if k.startswith("start")}
    # with a key from the bucket or the local layer; without one from the local layer only
    # (the home's own store is trusted; the bucket gets no unsigned checkpoint)
    assert starts == {"start at 0": 1, "start at 2": 1}
    assert list(team.store.fs.find(f"{team.store.root}/checkpoints")) == []  # cleared


def test_a_bucket_that_refuses_writes_says_to_use_read_only_mode(s3: MotoServer) -> None:
    """A teammate whose bucket policy (or credentials) only allows reads, left in the default
    read-write mode: the refused upload is an error that says how to share read-only."""
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    bucket = f"read-only-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    deny = {"Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject", "s3:DeleteObject"]}
    policy = {
        "Version": "2012-10-17",
        "Statement": [{**deny, "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    store = _store(s3, url=f"s3://{bucket}/team")
    with pytest.raises(StoreError) as info:
        store.put_action(KEY, _record("ab" * 16))
    message = str(info.value)
    assert store.url in message and "ETHEREALFABRIC_STORE_MODE=read-only" in message, message


def test_a_server_trickling_its_answer_is_a_store_that_did_not_answer(tmp_path: Path) -> None:
    """A server that sends an object's bytes a few at a time, each in time for the read
    timeout, held a run for hours (an 800 KB object at 64 bytes a second): a read is given the
    store's timeout plus the time to receive its bytes at 256 KiB/s, then the store counts as
    not answering (and a run goes on with its local layer)."""
    import http.server
    import socketserver
    import time

    from etherealfabric.errors import StoreUnreachableError

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.25)

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = ObjectStore(
            "s3://bucket/prefix",
            storage_options={
                "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
                "key": "x", "secret": "y",
            },
            timeout=2,
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(StoreUnreachableError, match="did not answer"):
            store.read_head("objects/ab/entry", 100_000)
        assert time.monotonic() - started < 20  # not the 50 s the trickle takes
    finally:
        server.shutdown()
        server.server_close()


def test_cat_of_a_result_only_the_unreachable_shared_store_holds_says_so(
    tmp_path: Path, ef: Any
) -> None:
    """Not "no longer in the store (removed by gc, or lost)": the store did not answer."""
    private = MotoServer().ensure()  # (stopped below: not the module's shared server)
    try:
        (tmp_path / "flow.py").write_text(
            "import numpy as np\nfrom etherealfabric import Workflow, node\n\n@node\n"
            "def big():\n    return np.arange(100_000)\n\nwith Workflow('c') as wf:\n    big()\n"
        )
        settings = {
            "ETHEREALFABRIC_STORE": f"s3://{private.bucket}/ef",
            "ETHEREALFABRIC_S3_ENDPOINT_URL": private.endpoint,
            "ETHEREALFABRIC_STORE_TIMEOUT": "2",
            "ETHEREALFABRIC_SIGNING_KEY": TEAM_KEY,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        }  # fmt: skip
        assert ef(tmp_path, "run", "flow.py", "-q", **settings).returncode == 0
        for stored in (tmp_path / ".etherealfabric" / "objects").rglob("*"):
            if stored.is_file():
                stored.unlink()  # only the shared store holds the result now
    finally:
        private.stop()
    out = ef(tmp_path, "cat", "latest", "big", **settings)
    assert out.returncode == 2
    assert "is not in this home, and the shared store did not answer" in out.stderr
    assert "removed by" not in out.stderr and "Traceback" not in out.stderr
