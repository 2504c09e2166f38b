"""The Prometheus subscriber: counts from real runs, and a scrape of the real HTTP endpoint."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from etherealfabric import SKIP, ConfigError, Workflow, node
from etherealfabric.observe._metrics import Metrics
from etherealfabric.run._events import Event


@node
def load(n):
    return list(range(n))


@node
def square(xs):
    return [x * x for x in xs]


@node
def total(xs):
    return sum(xs)


@node
def broken(xs):
    raise ValueError("bad input")


def squares(n: int = 100) -> Workflow:
    with Workflow("squares") as wf:
        total(square(load(n)))
    return wf


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of exposition ``text``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def nodes(text: str, workflow: str, status: str) -> float:
    return value(text, "etherealfabric_nodes_total", workflow=workflow, status=status)


class Sizes:
    """A subscriber that remembers the output sizes of executed nodes."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "node_succeeded":
            outputs = event.data["result"].outputs
            self.sizes[event.node or ""] = sum(o["size"] for o in outputs.values())


def test_cold_then_warm_run_counts_executions_and_cache_hits() -> None:
    metrics, sizes = Metrics(), Sizes()
    squares().execute(subscribers=[metrics, sizes])
    text = metrics.text()
    assert nodes(text, "squares", "succeeded") == 3
    assert nodes(text, "squares", "cached") == 0
    assert nodes(text, "squares", "failed") == 0
    assert value(text, "etherealfabric_cache_hits_total", workflow="squares") == 0
    assert value(text, "etherealfabric_cache_misses_total", workflow="squares") == 3
    assert value(text, "etherealfabric_node_duration_seconds_count", workflow="squares") == 3
    assert value(text, "etherealfabric_runs_total", workflow="squares", status="succeeded") == 1
    assert value(text, "etherealfabric_runs_in_progress", workflow="squares") == 0
    assert value(text, "etherealfabric_retries_total", workflow="squares") == 0
    written = value(text, "etherealfabric_bytes_written_total", workflow="squares")
    assert written == sum(sizes.sizes.values()) > 0
    read = value(text, "etherealfabric_bytes_read_total", workflow="squares")
    assert read == sizes.sizes["load"] + sizes.sizes["square"]  # what square and total read

    squares().execute(subscribers=[metrics])
    text = metrics.text()
    assert nodes(text, "squares", "succeeded") == 3
    assert nodes(text, "squares", "cached") == 3
    assert value(text, "etherealfabric_cache_hits_total", workflow="squares") == 3
    assert value(text, "etherealfabric_cache_misses_total", workflow="squares") == 3
    assert value(text, "etherealfabric_node_duration_seconds_count", workflow="squares") == 3
    assert value(text, "etherealfabric_runs_total", workflow="squares", status="succeeded") == 2
    assert value(text, "etherealfabric_bytes_written_total", workflow="squares") == written
    assert value(text, "etherealfabric_bytes_read_total", workflow="squares") == read


def test_retries_are_attempts_beyond_the_first() -> None:
    calls = {"n": 0}

    @node(retries=2)
    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        return "ok"

    with Workflow("flaky") as wf:
        flaky()
    metrics = Metrics()
    wf.execute(subscribers=[metrics])
    text = metrics.text()
    assert calls["n"] == 3
    assert value(text, "etherealfabric_retries_total", workflow="flaky") == 2
    assert nodes(text, "flaky", "succeeded") == 1
    assert value(text, "etherealfabric_node_duration_seconds_count", workflow="flaky") == 1


def test_failures_are_counted_by_status() -> None:
    with Workflow("failing") as wf:
        total(broken(load(3)))
    metrics = Metrics()
    wf.execute(subscribers=[metrics], raise_on_error=False)
    text = metrics.text()
    assert nodes(text, "failing", "succeeded") == 1
    assert nodes(text, "failing", "failed") == 1
    assert nodes(text, "failing", "upstream_failed") == 1
    assert value(text, "etherealfabric_runs_total", workflow="failing", status="failed") == 1
    assert value(text, "etherealfabric_runs_in_progress", workflow="failing") == 0
    assert value(text, "etherealfabric_node_duration_seconds_count", workflow="failing") == 2


def test_workflows_are_labelled_apart() -> None:
    metrics = Metrics()
    squares().execute(subscribers=[metrics])
    with Workflow("other") as wf:
        load(5)
    wf.execute(subscribers=[metrics])
    text = metrics.text()
    assert nodes(text, "squares", "succeeded") == 3
    assert nodes(text, "other", "succeeded") == 1


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # no "duplicated timeseries" error
    squares().execute(subscribers=[first])
    assert nodes(first.text(), "squares", "succeeded") == 3
    assert 'workflow="squares"' not in second.text()
    assert not any(m.name.startswith("etherealfabric_") for m in REGISTRY.collect())


def test_unknown_kinds_and_unseen_runs_are_ignored() -> None:
    metrics = Metrics()
    metrics(Event("node_succeeded", "never-started", "x", {"key": "k"}))
    metrics(Event("run_started", "r", data={"workflow": "w", "nodes": 1, "backend": "local"}))
    with pytest.raises(ValueError, match="node_teleported"):  # kinds are an enum: no unknown ones
        metrics(Event("node_teleported", "r", "x"))
    metrics(Event("node_retrying", "r", "x", {"attempt": 1, "error": "E: e"}))
    text = metrics.text()
    assert value(text, "etherealfabric_runs_in_progress", workflow="w") == 1
    assert value(text, "etherealfabric_retries_total", workflow="w") == 0


def test_input_bytes_from_node_started_are_used_when_present() -> None:
    metrics = Metrics()
    metrics(Event("run_started", "r", data={"workflow": "w", "nodes": 1, "backend": "local"}))
    metrics(Event("node_started", "r", "x", {"key": "k", "input_bytes": 1234}))
    assert value(metrics.text(), "etherealfabric_bytes_read_total", workflow="w") == 1234


def test_subscriber_is_cheap_per_cached_node() -> None:
    metrics = Metrics()
    metrics(Event("run_started", "r", data={"workflow": "w", "nodes": 10_000, "backend": "x"}))
    events = [Event("node_cached", "r", f"n{i}", {"key": "k"}) for i in range(10_000)]
    started = time.perf_counter()
    for event in events:
        metrics(event)
    assert time.perf_counter() - started < 1.0
    assert value(metrics.text(), "etherealfabric_cache_hits_total", workflow="w") == 10_000


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigError, match=r"pip install 'etherealfabric\[metrics\]'"):
        Metrics()


# -- the HTTP endpoint -----------------------------------------------------------------------------
def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def wait_for_sample(port: int, name: str, expected: float, **labels: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        text = scrape(port)
        try:
            if value(text, name, **labels) == expected:
                return text
        except AssertionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} never became {expected}:\n{text}")
        time.sleep(0.02)


def test_scrape_the_real_endpoint_during_and_after_a_run() -> None:
    release = threading.Event()

    @node
    def blocker(xs):
        release.wait(30)
        return len(xs)

    with Workflow("served") as wf:
        blocker(load(3))
    metrics = Metrics()
    port = metrics.serve(0)
    try:
        assert port > 0 and metrics.port == port
        errors: list[BaseException] = []

        def run() -> None:
            try:
                wf.execute(subscribers=[metrics])
            except BaseException as exc:
                errors.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        try:
            during = wait_for_sample(port, "etherealfabric_runs_in_progress", 1, workflow="served")
            wait_for_sample(port, "etherealfabric_cache_misses_total", 2, workflow="served")
        finally:
            release.set()
            runner.join(30)
        assert not runner.is_alive() and not errors
        assert (
            value(during, "etherealfabric_runs_total", workflow="served", status="succeeded") == 0
        )
        after = scrape(port)
        assert value(after, "etherealfabric_runs_in_progress", workflow="served") == 0
        assert value(after, "etherealfabric_runs_total", workflow="served", status="succeeded") == 1
        assert nodes(after, "served", "succeeded") == 2
        assert value(after, "etherealfabric_node_duration_seconds_count", workflow="served") == 2
    finally:
        metrics.close()
    metrics.close()  # idempotent
    assert metrics.port is None
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def test_serve_twice_or_on_a_busy_port_is_a_config_error() -> None:
    with Metrics() as metrics, socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            metrics.serve(busy.getsockname()[1])
        metrics.serve(0)
        with pytest.raises(ConfigError, match="already served"):
            metrics.serve(0)
    assert metrics.port is None


def test_fallback_and_skipped_nodes_are_counted() -> None:
    @node(on_error=lambda error: {"result": []})
    def rescued(xs):
        raise ValueError("rescue me")

    @node(on_error=lambda error: SKIP)
    def skipped(xs):
        raise ValueError("skip me")

    with Workflow("handled") as wf:
        data = load(3)
        total(rescued(data))
        total(skipped(data))
    metrics = Metrics()
    wf.execute(subscribers=[metrics], raise_on_error=False)
    text = metrics.text()
    assert nodes(text, "handled", "fallback") == 1
    assert nodes(text, "handled", "skipped") == 2
    assert nodes(text, "handled", "succeeded") == 2  # load and the total of the fallback


@node
def grow(data):
    """Reads its input file, then appends to it (another writer, mid-run): drifted."""
    with open(data) as fh:
        lines = fh.read().count("\n")
    with open(data, "a") as fh:
        fh.write("late\n")
    return lines


def test_a_drifted_node_is_counted_drifted_not_succeeded(tmp_path: Path) -> None:
    from etherealfabric import File

    data = tmp_path / "data.txt"
    data.write_text("a\n")
    os.utime(data, (1_600_000_000.0, 1_600_000_000.0))
    with Workflow("drifting", root=tmp_path, home=tmp_path / "home") as wf:
        grow(File(data))
    metrics = Metrics()
    results = wf.execute(subscribers=[metrics])
    assert results.statuses["grow"] == "drifted"
    text = metrics.text()
    assert nodes(text, "drifting", "drifted") == 1
    assert nodes(text, "drifting", "succeeded") == 0
