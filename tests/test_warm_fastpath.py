"""A warm run's fast path (issue 14): records decoded up front in one go, plain hits served
without the checks they do not need, and ``node_cached`` without an Event object when every
subscriber takes it as a call. Each gives what the general path gives."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import Event, EventKind, Workflow, node
from etherealfabric.journal import Journal
from etherealfabric.run._records import decode_record, decode_records


@node
def leaf(i):
    return i


@node
def step(x):
    return x + 1


def _chain(n: int) -> Workflow:
    with Workflow("warm-fastpath") as wf:
        x = leaf(0)
        for _ in range(n - 1):
            x = step(x)
    return wf


GOOD = ['{"node":"a","outputs":{}}', ' {"node": "b", "x": [1, 2.5, null, true, "\\u00e9"]}\n']


def test_records_decoded_in_one_go_are_what_each_decodes_to() -> None:
    rows = [("a", "k1", GOOD[0]), ("b", "k2", GOOD[1])]
    assert decode_records(rows) == {"k1": json.loads(GOOD[0]), "k2": json.loads(GOOD[1])}
    assert decode_records([]) == {}


@pytest.mark.parametrize("bad", ["", "{", "[1]", "1", '{"a": 1}, {"b": 2}', '{"a": 1}]'])
def test_one_malformed_record_leaves_every_text_to_its_own_lookup(bad: str) -> None:
    rows = [("a", "k1", GOOD[0]), ("x", "bad", bad), ("b", "k2", GOOD[1])]
    found = decode_records(rows)
    assert found == {"k1": GOOD[0], "bad": bad, "k2": GOOD[1]}  # texts, decoded when used
    assert decode_record(found["k1"]) == json.loads(GOOD[0])


@pytest.mark.parametrize("forged", ["[1]", '{"node": "step"}', '{"node":"step","outputs":[]}'])
def test_a_malformed_record_read_up_front_is_a_miss_and_the_rest_hit(
    home: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert _chain(5).execute().executed == 5
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        key = conn.execute("SELECT cache_key FROM node_runs WHERE node = 'step-2'").fetchone()[0]
        conn.execute("UPDATE actions SET record = ? WHERE key = ?", (forged, key))
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        results = _chain(5).execute()
    assert (results.executed, results.cached) == (1, 4)
    assert results["step-4"]["result"] == 4
    assert _chain(5).execute().executed == 0  # the record was written again


class _Both:
    """A subscriber that takes node_cached as a call, and every other event."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, float]] = []
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def node_cached(self, run_id: str, node: str, key: str, ts: float) -> None:
        self.calls.append((run_id, node, key, ts))


def test_node_cached_is_a_call_when_every_subscriber_takes_one(home: Path) -> None:
    _chain(3).execute()
    both = _Both()
    results = _chain(3).execute(subscribers=[both])
    assert [c[1] for c in both.calls] == ["leaf", "step", "step-2"]
    assert {c[0] for c in both.calls} == {results.run_id}
    assert [c[2] for c in both.calls] == [results._keys[n] for n in ("leaf", "step", "step-2")]
    assert all(isinstance(c[3], float) for c in both.calls)
    assert EventKind.NODE_CACHED not in {e.kind for e in both.events}
    assert {EventKind.RUN_STARTED, EventKind.RUN_FINISHED} <= {e.kind for e in both.events}
    with Journal(home / "journal.db") as journal:  # the journal's rows, as ever
        rows = journal.conn.execute(
            "SELECT node, status FROM node_runs WHERE run_id = ? ORDER BY node",
            (results.run_id,),
        ).fetchall()
    assert rows == [("leaf", "cached"), ("step", "cached"), ("step-2", "cached")]


def test_node_cached_is_an_event_for_a_subscriber_without_the_call() -> None:
    _chain(3).execute()
    both, seen = _Both(), []

    def plain(event: Event) -> None:
        seen.append(event)

    results = _chain(3).execute(subscribers=[both, plain])
    cached = [e for e in seen if e.kind is EventKind.NODE_CACHED]
    assert [(e.node, dict(e.data)) for e in cached] == [
        (n, {"key": results._keys[n]}) for n in ("leaf", "step", "step-2")
    ]
    assert both.calls == []  # every subscriber gets the Event then, this one too
    assert len([e for e in both.events if e.kind is EventKind.NODE_CACHED]) == 3


def test_a_failing_subscriber_call_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _chain(2).execute()

    class Broken(_Both):
        def node_cached(self, *args: Any) -> None:
            raise RuntimeError("broken subscriber")

    with caplog.at_level(logging.ERROR, logger="etherealfabric"):
        results = _chain(2).execute(subscribers=[Broken()])
    assert results.cached == 2
    assert "broken subscriber" in caplog.text
