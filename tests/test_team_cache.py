"""The team cache (issue 9): one bad key harms no one, a local layer in front of a shared store,
store modes, push and pull, an unreachable store, housekeeping.

Everything runs against a real S3 API (a moto server on loopback, ``test_store.MOTO``) with
teammates who each have a home (journal and local layer) of their own.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import pytest

import test_objectstore as shared
from etherealfabric.store import ObjectStore
from test_objectstore import NODES, OTHER_KEY, TEAM_KEY, Team, assert_same, expected
from test_store import MotoServer

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
