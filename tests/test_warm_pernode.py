"""A warm run's per-node work (issue 14): a node's key from its function's pre-encoded layout,
and no call per cached node to a log that does not log it. Each gives what the general path
gives: the encoder's keys, the journal's rows, the log's lines at DEBUG."""

from __future__ import annotations

import collections
import gc
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import etherealfabric
from etherealfabric import Workflow, node
from etherealfabric.hashing._cachekey import KEY_FORMAT_VERSION, cache_key, key_of
from etherealfabric.hashing._encoder import Encoder
from etherealfabric.hashing._values import hash_value
from etherealfabric.journal import Journal
from etherealfabric.observe._logging import LogSubscriber
from etherealfabric.plan import _keys
from etherealfabric.run._events import IGNORED, EventBus


def _encoded(
    kind: str, version: str | None, params: dict[str, str], outputs: tuple[str, ...]
) -> str:
    """The key as the value encoder makes it (its handlers registered with ``hash_value``)."""
    assert hash_value(1)
    e = Encoder(None)
    e.tag("cache-key")
    e.value((KEY_FORMAT_VERSION, kind, "c" * 32, version, tuple(sorted(params.items())), outputs))
    return e.hexdigest()


LAYOUTS = [
    {},
    {"x": "a" * 32},
    {"x": "abc"},  # a digest of another length: framed by its own
    {"root": "1" * 32, "i": "2" * 32},
    {"i": "2" * 32, "root": "1" * 32},  # the same names given in another order
    {"b": "1" * 32, "a": "é" * 16},  # 32 characters, not 32 bytes
    {f"p{i:02d}": f"{i:032x}" for i in range(17)},
]


@pytest.mark.parametrize("params", LAYOUTS, ids=lambda p: ",".join(p) or "none")
@pytest.mark.parametrize("version", [None, "2"])
def test_a_key_from_its_layout_is_the_encoders(params: dict[str, str], version: str | None) -> None:
    outputs = ("result", "file:out/é.txt")
    expected = _encoded("mod.fn", version, params, outputs)
    for _ in range(2):  # the first time makes the layout, the second joins it
        assert key_of("mod.fn", "c" * 32, version, params, outputs) == expected
        as_list = list(outputs)  # (not hashable: the public call makes it a tuple)
        key = cache_key(
            kind="mod.fn", code="c" * 32, version=version, params=params, outputs=as_list
        )
        assert key == expected


def test_a_layout_serves_only_its_own_function_outputs_and_version() -> None:
    """Two nodes whose parameters have the same names share nothing else of their key."""
    params = {"x": "a" * 32}
    variants = [
        ("mod.f", None, ("result",)),
        ("mod.g", None, ("result",)),
        ("mod.f", "2", ("result",)),
        ("mod.f", None, ("a", "b")),
    ]
    keys = []
    for kind, version, outputs in variants * 2:
        key = key_of(kind, "c" * 32, version, params, outputs)
        assert key == _encoded(kind, version, params, outputs)
        keys.append(key)
    assert len(set(keys)) == len(variants)
    # and the digests themselves: every one changes the key
    assert key_of("mod.f", "c" * 32, None, {"x": "b" * 32}, ("result",)) != keys[0]


@node
def leaf(i):
    return i


@node
def step(x):
    return x + 1


def _chain(n: int) -> Workflow:
    with Workflow("warm-pernode") as wf:
        x = leaf(0)
        for _ in range(n - 1):
            x = step(x)
    return wf


def test_a_log_that_does_not_log_debug_takes_no_call_per_cached_node() -> None:
    logger = logging.getLogger("etherealfabric.run")
    old = logger.level
    try:
        logger.setLevel(logging.WARNING)
        quiet = LogSubscriber()
        logger.setLevel(logging.DEBUG)
        verbose = LogSubscriber()
    finally:
        logger.setLevel(old)
    assert quiet.node_cached is IGNORED and quiet.node_started is IGNORED
    assert verbose.node_cached is not IGNORED and verbose.node_started is not IGNORED


class _Rows:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def __call__(self, event: Any) -> None:
        pass

    def node_cached(self, *args: Any) -> None:
        self.calls.append(args)
        if self.fail:
            raise RuntimeError("cannot write the row")


def test_a_lone_critical_subscriber_is_called_and_its_error_raised() -> None:
    bus, rows = EventBus(), _Rows(fail=True)
    bus.subscribe(rows, critical=True)
    bus.subscribe(LogSubscriber())  # (at WARNING: left out)
    with pytest.raises(RuntimeError, match="cannot write the row"):
        bus.node_cached("run", "a", "k" * 32)
    assert [c[:3] for c in rows.calls] == [("run", "a", "k" * 32)]


def test_a_lone_subscriber_that_is_not_critical_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, rows = EventBus(), _Rows(fail=True)
    bus.subscribe(rows)
    with caplog.at_level(logging.ERROR, logger="etherealfabric"):
        bus.node_cached("run", "a", "k" * 32)  # not raised
    assert "cannot write the row" in caplog.text and len(rows.calls) == 1


def test_a_run_at_debug_logs_each_started_and_cached_node_and_journals_it(
    home: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_LOG_LEVEL", "DEBUG")
    with caplog.at_level(logging.DEBUG, logger="etherealfabric"):
        cold = _chain(3).execute()
    for name in ("leaf", "step", "step-2"):
        assert f"{name}: started (key {cold._keys[name][:12]})" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="etherealfabric"):
        results = _chain(3).execute()
    assert results.cached == 3
    for name in ("leaf", "step", "step-2"):
        assert f"{name}: cached (key {results._keys[name][:12]})" in caplog.text
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute(
            "SELECT node, status, cache_key FROM node_runs WHERE run_id = ? ORDER BY node",
            (results.run_id,),
        ).fetchall()
    assert rows == [(n, "cached", results._keys[n]) for n in ("leaf", "step", "step-2")]


def test_a_warm_run_at_warning_journals_every_cached_node(home: Path) -> None:
    first = _chain(4).execute()
    results = _chain(4).execute()
    assert (results.executed, results.cached) == (0, 4)
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute(
            "SELECT node, status, cache_key FROM node_runs WHERE run_id = ? ORDER BY node",
            (results.run_id,),
        ).fetchall()
    names = ("leaf", "step", "step-2", "step-3")
    assert rows == [(n, "cached", first._keys[n]) for n in names]


@node
def item(root, i):
    return root + i


@node
def gather(xs):
    return len(xs)


def _fanout(n: int) -> Workflow:
    with Workflow("warm-pernode-fanout") as wf:
        root = leaf(0)
        gather([item(root, i) for i in range(n)])
    return wf


def _calls_of_warm_execute(make: Any, n: int) -> collections.Counter[tuple[str, str]]:
    """The engine's Python function calls of a warm ``execute()`` of ``make(n)`` (graph
    build, keys, look-ups, rows) by function, after a warm run of the same size (what a
    process does once, such as writing the SQL of a group's statements, is done then). The
    process-wide memos are emptied first, the collector is off while counting and only
    calls into the engine's code count: what the suite's earlier tests left behind (memos
    at their bound, other libraries' hooks and finalizers) does not."""
    _keys._VALUE_REFS.clear()
    _keys._REF_DIGESTS.clear()
    make(n).execute()
    make(n).execute()
    wf, calls = make(n), collections.Counter[tuple[str, str]]()
    package = str(Path(etherealfabric.__file__).parent)

    def count(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(package):
            code = frame.f_code
            calls[(Path(code.co_filename).name, code.co_name)] += 1

    gc.collect()
    gc.disable()
    sys.setprofile(count)
    try:
        results = wf.execute()
    finally:
        sys.setprofile(None)
        gc.enable()
    assert (results.executed, results.cached) == (0, len(results.statuses))
    return calls


def _per_node(make: str) -> tuple[float, dict[str, float]]:
    """The engine's calls per cached node of ``make`` (110 nodes against 10), and the functions
    that make them, in this process."""
    workflow = {"chain": _chain, "fanout": _fanout}[make]
    small, large = _calls_of_warm_execute(workflow, 10), _calls_of_warm_execute(workflow, 110)
    sites = {f"{f}:{name}": (large[f, name] - small[f, name]) / 100 for f, name in large}
    return (large.total() - small.total()) / 100, {k: v for k, v in sites.items() if v >= 0.5}


@pytest.mark.parametrize("make", ["chain", "fanout"])
def test_a_cached_node_costs_a_few_python_calls(tmp_path: Path, make: str) -> None:
    """Issue 14: what a warm run does per node, counted (not timed: the same on a busy
    machine). Each cached node is built into the graph, keyed, looked up, and journaled in
    15 to 18 calls (24 to 26 before the key layouts and the log's opt-out); a change that
    adds work per cached node shows here. Counted in a fresh process: in the suite's process
    a fan-out node counted 22 on CI (18 alone, and with every memo emptied first), from
    something an earlier test left behind."""
    script = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_warm_pernode as t; print(json.dumps(t._per_node({make!r})))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    per_node, sites = json.loads(done.stdout.splitlines()[-1])
    assert per_node <= 21, (per_node, sites)
