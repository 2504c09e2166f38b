"""The team cache (issue 9): one bad key harms no one, a local layer in front of a shared store,
store modes, push and pull, an unreachable store, housekeeping.

Everything runs against a real S3 API (a moto server on loopback, ``test_store.MOTO``) with
teammates who each have a home (journal and local layer) of their own.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import test_objectstore as shared
from etherealfabric import Workflow, node
from etherealfabric.cli import main
from etherealfabric.config import Settings
from etherealfabric.errors import StoreUnreachableError
from etherealfabric.journal import Journal
from etherealfabric.run._cache import ArtifactCache
from etherealfabric.run._teamcache import enforce_budget
from etherealfabric.store import LayeredStore, LocalStore, ObjectStore, open_run_store
from etherealfabric.store._budget import evict, local_objects
from test_objectstore import NODES, OTHER_KEY, TEAM_KEY, Team, assert_same, build, expected
from test_store import MOTO, MotoServer

# the fixtures of test_objectstore: a moto server, moto's credentials, and a team whose first
# member (alice, with the team's key) has run the workflow
s3 = shared.s3
team = shared.team
_aws_environment = shared._aws_environment


# -- one bad key harms no one --------------------------------------------------------------------
def test_a_teammate_with_a_wrong_key_neither_breaks_nor_hides_the_teams_records(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    """A (right key) ran (the ``team`` fixture); B (wrong key) runs; C (right key, empty home)
    runs and executes nothing."""
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("bob", key=OTHER_KEY)
    assert executed == NODES  # only verified records count: B recomputes, with warnings
    assert_same(values, expected())
    assert "signed with another key" in caplog.text
    executed, values = team.run("carol")
    assert executed == set()
    assert_same(values, expected())
    # B's records are kept apart, under his key id: a B with an empty home hits them
    executed, _ = team.run("bob-again", key=OTHER_KEY)
    assert executed == set()


def test_the_order_of_a_good_and_a_bad_key_does_not_matter(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = Team(s3, tmp_path, monkeypatch)
    assert team.run("bob", key=OTHER_KEY)[0] == NODES  # the wrong key publishes first
    assert team.run("alice")[0] == NODES
    executed, values = team.run("carol")
    assert executed == set()
    assert_same(values, expected())


def test_two_signers_publishing_the_same_keys_at_once_each_keep_their_record(
    s3: MotoServer,
) -> None:
    """The first record of a key is created exclusively: of two signers racing, one gets the
    canonical name and the other its own copy, never a record replaced by the other's."""
    url = f"s3://{s3.bucket}/{uuid.uuid4().hex}"
    stores = [
        ObjectStore(url, storage_options=s3.options, signing_key=key)
        for key in (TEAM_KEY, OTHER_KEY)
    ]
    keys = [f"{i:032x}" for i in range(24)]
    barrier = threading.Barrier(2)

    def publish(store: ObjectStore) -> None:
        barrier.wait()
        for key in keys:
            store.put_action(key, {"node": store.key_id, "outputs": {}, "created_at": 1.0})

    threads = [threading.Thread(target=publish, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        for key in keys:
            record = store.get_action(key)
            assert record is not None and record["node"] == store.key_id


# -- the local layer -----------------------------------------------------------------------------
class Requests:
    """Every S3 request this process makes (s3fs' one funnel, ``_call_s3``), by kind."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import s3fs

        self.made: list[tuple[str, str]] = []
        original = s3fs.S3FileSystem._call_s3
        made = self.made

        async def counting(fs: Any, method: str, *args: Any, **kwargs: Any) -> Any:
            key = str(kwargs.get("Key", kwargs.get("Prefix", "")))
            kind = next(
                (k for k in ("objects", "actions", "leases", "checkpoints") if f"{k}/" in key), ""
            )
            made.append((method, kind))
            return await original(fs, method, *args, **kwargs)

        monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counting)

    def clear(self) -> None:
        self.made.clear()

    def downloads(self) -> int:
        """GETs of objects (ranged or whole)."""
        return sum(1 for method, kind in self.made if method == "get_object" and kind == "objects")


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Requests:
    return Requests(monkeypatch)


def test_a_second_warm_run_on_the_same_machine_downloads_nothing(
    team: Team, requests: Requests
) -> None:
    requests.clear()
    executed, values = team.run("bob")  # an empty home: every result comes from the bucket
    assert executed == set()
    assert_same(values, expected())
    assert requests.downloads() >= 2  # the two large outputs (the small ones are inline)
    requests.clear()
    executed, values = team.run("bob")
    assert executed == set()
    assert_same(values, expected())
    assert requests.downloads() == 0, requests.made
    assert requests.made == []  # not even a lookup: the journal and the local layer answer


def _layers(root: Path, mode: str = "read-write") -> LayeredStore:
    """A home's local layer in front of a shared folder (the team's store)."""
    remote = LocalStore(root / "team", shared=True, signing_key=TEAM_KEY)
    return LayeredStore(LocalStore(root / "home"), remote, mode=mode)


def _age(store: LayeredStore, ages: dict[str, float], now: float) -> None:
    for digest, age in ages.items():
        os.utime(store.local.object_path(digest), (now - age, now - age))


def test_the_budget_evicts_the_least_recently_used_objects_the_team_also_has(
    tmp_path: Path,
) -> None:
    store = _layers(tmp_path)
    shared = [store.put_bytes(bytes([i]) * 100_000) for i in range(4)]  # both layers
    mine = store.local.put_bytes(b"x" * 100_000)  # only here (say, a read-only run's)
    now = time.time()
    _age(store, {mine: 50, shared[0]: 40, shared[1]: 30, shared[2]: 20, shared[3]: 10}, now)

    report = evict(store, 250_000, keep_since=now - 25, dry_run=True)
    assert report.evicted == shared[:2]  # shared[2] was used since the oldest live run began
    assert report.kept_unshared == 1 and report.kept_recent >= 1
    assert report.size_after == 300_000 and store.local.has_object(shared[0])  # a dry run

    report = evict(store, 250_000, keep_since=now)
    assert report.evicted == shared[:3] and report.size_after == 200_000
    left = {d for _, _, d in local_objects(store.local)}
    assert left == {mine, shared[3]}  # never the only copy of a result
    with store.open_object(shared[0]) as fp:  # evicted: fetched again, and back in the layer
        assert fp.read() == bytes([0]) * 100_000
    assert store.local.has_object(shared[0]) and store.fills == 1


def test_a_damaged_local_copy_is_fetched_again_from_the_team(tmp_path: Path) -> None:
    store = _layers(tmp_path)
    digest = store.put_bytes(b"y" * 100_000)
    Path(store.local.object_path(digest)).write_bytes(b"z" * 100_000)
    with store.open_object(digest) as fp:
        assert fp.read() == b"y" * 100_000
    assert store.fills == 1


# -- modes, push and pull ------------------------------------------------------------------------
_WRITES = {"put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload",
           "delete_object", "delete_objects", "copy_object"}  # fmt: skip


def cli(team: Team, who: str, *args: str) -> tuple[int, str, str]:
    """``etherealfabric cache ARGS --home <who's home>`` in this process."""
    result = CliRunner().invoke(
        main, ["cache", *args, "--home", str(team.root / who)], catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_read_only_home_never_writes_the_store_and_pushes_later(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, requests: Requests
) -> None:
    team = Team(s3, tmp_path, monkeypatch)
    monkeypatch.setenv("ETHEREALFABRIC_STORE_MODE", "read-only")
    executed, values = team.run("laptop")
    assert executed == NODES
    assert_same(values, expected())
    assert not [m for m, _ in requests.made if m in _WRITES]  # not an object, record or lease
    assert team.store.fs.find(team.store.root) == []

    code, out, _ = cli(team, "laptop", "push", "--dry-run", "--json")
    assert code == 0
    listed = json.loads(out)["items"]
    assert {i["node"] for i in listed} == NODES and {i["status"] for i in listed} == {"to push"}
    assert team.store.fs.find(team.store.root) == []  # a dry run sends nothing

    code, out, _ = cli(team, "laptop", "push")
    assert code == 0 and "pushed 5 result(s)" in out
    code, out, _ = cli(team, "laptop", "push")  # idempotent: nothing twice
    assert code == 0 and "pushed 0 result(s)" in out and "5 already there" in out

    monkeypatch.setenv("ETHEREALFABRIC_STORE_MODE", "read-write")
    executed, values = team.run("carol")  # a teammate gets everything the laptop pushed
    assert executed == set()
    assert_same(values, expected())


def test_push_on_demand_says_what_is_left_to_push(
    s3: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    team = Team(s3, tmp_path, monkeypatch)
    monkeypatch.setenv("ETHEREALFABRIC_STORE_MODE", "push-on-demand")
    with caplog.at_level(logging.INFO, logger="etherealfabric"):
        assert team.run("dev")[0] == NODES
    assert "5 result(s) of run" in caplog.text and "cache push" in caplog.text
    assert team.store.fs.find(team.store.root) == []
    code, out, _ = cli(team, "dev", "push", "--workflow", "team")
    assert code == 0 and "pushed 5 result(s)" in out


def test_pull_brings_what_a_run_needs_so_it_loads_offline(
    team: Team, monkeypatch: pytest.MonkeyPatch, requests: Requests
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(team.root / "bob"))
    monkeypatch.setenv("ETHEREALFABRIC_LOCAL_CACHE_SIZE", "1")  # evicted after the run
    results = build().execute()  # every node a hit, its objects fetched, then evicted
    assert results.executed == 0
    assert not list((team.root / "bob" / "objects").glob("*/*"))
    monkeypatch.delenv("ETHEREALFABRIC_LOCAL_CACHE_SIZE")
    code, out, _ = cli(team, "bob", "pull", results.run_id, "--dry-run")
    assert code == 0 and "would have pulled 2 result(s)" in out  # matrix and fit
    requests.clear()
    code, out, _ = cli(team, "bob", "pull", results.run_id)
    assert code == 0 and "pulled 2 result(s) (2 object(s)" in out
    assert requests.downloads() == 2
    code, out, _ = cli(team, "bob", "pull", "--workflow", "team")  # idempotent
    assert code == 0 and "pulled 0 result(s)" in out

    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # offline now
    requests.clear()
    executed, values = team.run("bob")
    assert executed == set()
    assert_same(values, expected())
    assert requests.made == []


# -- an unreachable store --------------------------------------------------------------------------
@pytest.fixture
def silent_server() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung or firewalled store)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # connections queue up; none is ever accepted
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("endpoint", ["silent", "refused"])
def test_an_unreachable_store_costs_bounded_time_and_one_warning(
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    silent_server: str,
    endpoint: str,
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_STORE_TIMEOUT", "1")
    url = silent_server if endpoint == "silent" else "http://127.0.0.1:9"
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", url)
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("dave", scale=2)  # offline: computed with the local layer
    assert executed == NODES
    assert_same(values, expected(2))
    assert caplog.text.count("is unreachable") == 1

    code, out, err = cli(team, "dave", "push", "--dry-run")  # still offline: a clear error
    assert code == 2 and "did not answer" in err and "ETHEREALFABRIC_STORE_TIMEOUT" in err

    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", MOTO.endpoint)  # back online
    code, out, _ = cli(team, "dave", "push", "--dry-run", "--json")
    assert code == 0
    waiting = {i["node"] for i in json.loads(out)["items"] if i["status"] == "to push"}
    assert waiting == {"fit", "report"}  # what scale=2 changed; the rest alice pushed
    assert cli(team, "dave", "push")[0] == 0
    executed, values = team.run("erin", scale=2)
    assert executed == set()
    assert_same(values, expected(2))


def test_a_store_that_never_answers_is_asked_twice_per_read_not_three_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "Two attempts in all" (docs/stores.md): botocore's ``max_attempts`` counts retries, so
    each read of a dead store made three attempts (and two back-off sleeps), ~9 s per read
    with a 2 s timeout. A server that accepts and never answers counts the attempts."""
    accepted: list[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", f"http://{server.getsockname()[0]}:"
                           f"{server.getsockname()[1]}")  # fmt: skip
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
        store = ObjectStore("s3://bucket/prefix", timeout=1.0)
        try:
            with pytest.raises(StoreUnreachableError, match="did not answer"):
                store.read_entry("actions/ab/record.json")
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()
    assert len(accepted) == 2


def test_a_cached_run_that_cannot_publish_its_roots_says_so_and_the_next_one_does(
    team: Team, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every result in the local layer, so only the roots (what this home keeps in the shared
    store) need the network: the warning says exactly that, and the next run publishes them."""
    assert team.run("bob")[0] == set()  # fills bob's local layer and publishes his roots
    memo = team.root / "bob" / "roots-published"
    memo.unlink()
    monkeypatch.setenv("ETHEREALFABRIC_STORE_TIMEOUT", "1")
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # offline now
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        executed, values = team.run("bob")
    assert executed == set()
    assert_same(values, expected())
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said
    assert "did not answer when this home published what its runs keep there" in said[0]
    assert not memo.exists()

    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", MOTO.endpoint)  # back online
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        assert team.run("bob")[0] == set()
    assert memo.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- concurrent teammates --------------------------------------------------------------------------
WRITER = """
import os, sys, time
from pathlib import Path
from etherealfabric.store import LayeredStore, LocalStore, ObjectStore
from etherealfabric.run._records import action_record

url, endpoint, home, go = sys.argv[1:5]
remote = ObjectStore(url, storage_options={"endpoint_url": endpoint, "key": "testing",
                                           "secret": "testing"}, signing_key=os.environ["KEY"])
store = LayeredStore(LocalStore(home), remote)
while not Path(go).exists():
    time.sleep(0.005)
for i in range(12):
    big = bytes([i]) * (3 * 1024 * 1024 + i)  # stored objects, written through the writer
    with store.writer() as writer:
        writer.write(big)
        stored = writer.commit()
    small = store.put_bytes(f"small {i}".encode())
    outputs = {
        "big": {"digest": stored.digest, "serializer": "npy", "size": stored.size, "inline": False},
        "small": {"digest": small, "serializer": "json", "size": len(f"small {i}"), "inline": True},
    }
    store.put_action(f"{i:032x}", action_record("n", outputs))
print("done")
"""


def test_two_drivers_writing_the_same_keys_at_once_leave_valid_records_and_objects(
    s3: MotoServer, tmp_path: Path
) -> None:
    url = f"s3://{s3.bucket}/{uuid.uuid4().hex}"
    go = tmp_path / "go"
    env = {**os.environ, "KEY": TEAM_KEY, "PYTHONPATH": os.pathsep.join(sys.path)}
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, s3.endpoint, str(tmp_path / f"home{n}"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    go.touch()
    for driver in drivers:
        out, err = driver.communicate(timeout=300)
        assert driver.returncode == 0 and "done" in out, err
    store = ObjectStore(url, storage_options=s3.options, signing_key=TEAM_KEY)
    names = sorted(p.rsplit("/", 1)[-1] for p in store.fs.find(f"{store.root}/actions"))
    assert names == [f"{i:032x}.json" for i in range(12)]  # one record each, no stray copy
    for i in range(12):
        record = store.get_action(f"{i:032x}")  # verifies with the key
        assert record is not None
        big = record["outputs"]["big"]
        assert store.read_bytes(big["digest"]) == bytes([i]) * big["size"]  # verified bytes
        assert store.read_bytes(record["outputs"]["small"]["digest"]) == f"small {i}".encode()
    assert len(list(store.iter_objects())) == 24


# -- housekeeping ----------------------------------------------------------------------------------
def test_ls_du_and_forget_a_key(team: Team) -> None:
    team.run("bob")  # hits; loading the results fills bob's local layer
    code, out, _ = cli(team, "bob", "ls", "--json")
    assert code == 0
    entries = {e["node"]: e for e in json.loads(out)}
    assert set(entries) == NODES and entries["matrix"]["local"] == "yes"
    assert entries["matrix"]["bytes"] == team.output("matrix")["size"]
    assert entries["numbers"]["workflows"] == ["team"]

    code, out, _ = cli(team, "bob", "du", "--json")
    assert code == 0
    du = json.loads(out)
    rows = {r["node"]: r for r in du["rows"]}
    assert rows["matrix"]["local"] == rows["matrix"]["remote"] == rows["matrix"]["bytes"] > 0
    # a small output travels inside its record: in the shared store too, where the record is
    assert rows["numbers"]["local"] == rows["numbers"]["remote"] == rows["numbers"]["bytes"] > 0
    assert du["remote_bytes"] >= du["local_bytes"] > 0

    code, out, _ = cli(team, "bob", "forget", "--key", entries["report"]["key"])
    assert code == 0 and "forgot 1 cache entry" in out
    assert "left 1 it did not publish" in out  # alice's record: the team keeps it
    assert team.run("bob")[0] == set()  # so bob's next run finds it again
    code, out, _ = cli(team, "alice", "forget", "--key", entries["report"]["key"])
    assert code == 0 and "dropped 1 record(s) this home published" in out
    assert team.run("carol")[0] == {"report"}  # gone from the shared store: it runs again
    code, _, err = cli(team, "bob", "forget", "--key", "not-a-key")
    assert code == 2 and "invalid cache key 'not-a-key'" in err


def test_forget_while_the_store_does_not_answer_forgets_nothing_and_later_all(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's entries were forgotten before the shared store was asked: a store that
    did not answer kept alice's record, and forgetting again found nothing left to ask
    about ("forgotten already"), so the node never ran again (found by review)."""
    monkeypatch.setenv("ETHEREALFABRIC_STORE_TIMEOUT", "1")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once the socket is closed
    good = os.environ["ETHEREALFABRIC_S3_ENDPOINT_URL"]
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    code, _, err = cli(team, "alice", "forget", "report")
    assert code == 2 and "nothing was forgotten" in err, err
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", good)
    code, out, err = cli(team, "alice", "forget", "report")
    assert code == 0 and "forgot 1 cache entry" in out, (out, err)
    assert "dropped 1 record(s) this home published" in out
    assert team.run("alice")[0] == {"report"}


def test_forget_says_a_teammates_record_serves_the_next_run(team: Team) -> None:
    team.run("bob")
    code, out, _ = cli(team, "bob", "forget", "report")
    assert code == 0 and "left 1 it did not publish" in out
    assert "the next run takes those results from there" in out and "--force" in out
    assert team.run("bob")[0] == set()  # as it says


def test_gc_of_a_shared_store_keeps_what_homes_and_pins_need(team: Team) -> None:
    old = {team.key_of("fit"), team.key_of("report")}  # alice's first run: scale 1
    for scale in range(2, 7):  # alice's last five runs no longer use scale 1's fit and report
        team.run("alice", scale=scale)
    with Journal(team.root / "alice" / "journal.db") as journal:
        first = journal.list_runs(limit=100)[-1]["id"]
    code, out, _ = cli(team, "alice", "gc", "--grace", "0", "--dry-run", "--json")
    assert code == 0
    shared = json.loads(out)["shared"]
    assert shared["homes"] == 1
    gone = {name.rsplit("/", 1)[-1].split(".")[0] for name in shared["removed_records"]}
    assert gone == old
    assert shared["objects_removed"] == 2 and shared["bytes_freed"] > 100_000  # fit's model
    code, out, _ = cli(team, "alice", "gc", "--grace", "3600", "--dry-run", "--json")
    assert json.loads(out)["shared"]["records_removed"] == 0  # everything is younger

    assert cli(team, "alice", "pin", first)[0] == 0
    code, out, _ = cli(team, "alice", "gc", "--grace", "0", "--json")
    assert code == 0 and json.loads(out)["shared"]["records_removed"] == 0  # pinned
    assert cli(team, "alice", "pin", "--remove", first)[0] == 0
    code, out, _ = cli(team, "alice", "gc", "--grace", "0", "--json")
    assert code == 0 and json.loads(out)["shared"]["records_removed"] == 2

    assert team.run("bob", scale=6)[0] == set()  # what alice's last runs used is all there
    executed, values = team.run("bob", scale=1)
    assert executed == {"fit", "report"}  # collected: recomputed
    assert_same(values, expected())


# -- the budget during a run -----------------------------------------------------------------------
@node
def big_array(n):
    return np.arange(n, dtype=np.float64)  # a stored object (over the inline limit)


@node
def evict_everything(home, after):
    """What a `cache gc` in another process does in the middle of this run (after ``after``
    was found in the team's store and fetched into the local layer)."""
    from etherealfabric.run._teamcache import enforce_budget

    with Journal(Path(home) / "journal.db") as journal:
        store = open_run_store(Settings.resolve(home=home))
        assert isinstance(store, LayeredStore)
        report = enforce_budget(store, journal, 0)
    return {"evicted": len(report.evicted), "kept_recent": report.kept_recent}


@node
def use(array, evicted):
    return float(array.sum())


def test_an_eviction_while_a_run_goes_on_keeps_what_its_nodes_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_STORE", str(tmp_path / "team"))
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", TEAM_KEY)
    with Workflow("publish") as first:
        big_array(50_000)
    first.execute(home=str(tmp_path / "alice"))  # in the team's folder now

    bob = str(tmp_path / "bob")
    with Workflow("consume") as second:
        array = big_array(50_000)
        report = evict_everything(bob, array)
        total = use(array, report)
    results = second.execute(home=bob)  # big_array: a hit, filled into bob's local layer
    assert results.executed == 2
    assert results[report] == {"evicted": 0, "kept_recent": 1}  # the live run protects it
    assert results[total] == float(np.arange(50_000).sum())

    store = open_run_store(Settings.resolve(home=bob))
    assert isinstance(store, LayeredStore)
    with Journal(Path(bob) / "journal.db") as journal:  # no run going any more
        after = enforce_budget(store, journal, 0)  # now nothing protects it
    assert after.size_after == 0 and after.kept_recent == 0 and len(after.evicted) >= 1


def test_a_new_teammate_fetches_the_records_of_ready_nodes_together(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    prefetch = ArtifactCache.prefetch

    def spy(self: ArtifactCache, keys: Any) -> None:
        batches.append(len(keys))
        prefetch(self, keys)

    monkeypatch.setattr(ArtifactCache, "prefetch", spy)
    executed, values = team.run("bob")
    assert executed == set()
    assert_same(values, expected())
    assert batches and batches[0] == 3  # numbers, matrix and vocab are ready at once


def test_large_objects_come_down_in_parallel_ranges_and_are_verified(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, requests: Requests
) -> None:
    import etherealfabric.store._objectstore as objectstore

    monkeypatch.setattr(objectstore, "RANGED_BYTES", 1024 * 1024)
    monkeypatch.setattr(objectstore, "RANGE_BYTES", 256 * 1024)
    remote = ObjectStore(f"s3://{s3.bucket}/{uuid.uuid4().hex}", storage_options=s3.options)
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = remote.put_bytes(data)
    store = LayeredStore(LocalStore(tmp_path / "home"), remote)
    requests.clear()
    with store.open_object(digest) as fp:
        assert fp.read() == data
    assert requests.downloads() == 13  # ceil((3 MiB + 5) / 256 KiB) ranges
    assert Path(store.local.object_path(digest)).read_bytes() == data


def test_an_object_larger_than_its_record_says_is_refused_without_a_download(
    s3: MotoServer, tmp_path: Path, requests: Requests
) -> None:
    # someone who may write the bucket swaps a 100 KB object for 5 MB of other bytes: a fill
    # told the size by the record naming it asks the object's size (HEAD) and never GETs it
    from etherealfabric.errors import CorruptArtifactError
    from etherealfabric.store._base import object_name

    remote = ObjectStore(f"s3://{s3.bucket}/{uuid.uuid4().hex}", storage_options=s3.options)
    digest = remote.put_bytes(os.urandom(100_000))
    remote.write_entry(object_name(digest), os.urandom(5 << 20))
    store = LayeredStore(LocalStore(tmp_path / "home"), remote)
    requests.clear()
    with pytest.raises(CorruptArtifactError, match="5242880 bytes instead of 100000"):
        store.fill(digest, 100_000)
    assert requests.downloads() == 0
    assert store.local.object_info(digest) is None and digest in store.damaged
