"""The progress subscriber: lines when not on a terminal, a live display on one."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from etherealfabric import SKIP, Workflow, node
from etherealfabric.observe._progress import Progress, format_duration
from etherealfabric.run._events import Event

T = TypeVar("T")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
DONE = r"done in \d+\.\d\ds"


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
def describe(t):
    return f"total={t}"


@node
def broken(xs):
    raise ValueError(f"bad input of {len(xs)} values")


def squares(n: int = 10, *, report: bool = False) -> Workflow:
    with Workflow("squares") as wf:
        result = total(square(load(n)))
        if report:
            describe(result)
    return wf


def lines_of(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def plain(out: io.StringIO) -> str:
    """What a terminal would have shown at some point, without escape codes."""
    return ANSI.sub("", out.getvalue())


def wait_until(check: Callable[[], T | None], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def shown(out: io.StringIO, pattern: str) -> str:
    """Wait until ``pattern`` has been on the screen; returns everything shown so far."""

    def check() -> str | None:
        screen = plain(out)
        return screen if re.search(pattern, screen) else None

    return wait_until(check)


# -- line mode ------------------------------------------------------------------------------------
def test_line_mode_cold_run_one_line_per_executed_node_then_summary() -> None:
    out = io.StringIO()
    results = squares().execute(subscribers=[Progress(file=out)])
    lines = lines_of(out)
    assert len(lines) == 4, lines
    assert re.fullmatch(rf"\[1/3\] load {DONE}", lines[0])
    assert re.fullmatch(rf"\[2/3\] square {DONE}", lines[1])
    assert re.fullmatch(rf"\[3/3\] total {DONE}", lines[2])
    assert re.fullmatch(
        rf"run {results.run_id} succeeded: 3 executed, 0 cached, 0 failed in \d+\.\ds", lines[3]
    )


def test_line_mode_warm_run_prints_only_the_summary() -> None:
    squares().execute()
    out = io.StringIO()
    results = squares().execute(subscribers=[Progress(file=out)])
    [line] = lines_of(out)
    assert line.startswith(f"run {results.run_id} succeeded: 0 executed, 3 cached, 0 failed in ")


def test_line_mode_positions_count_cached_nodes() -> None:
    squares().execute()
    out = io.StringIO()
    squares(report=True).execute(subscribers=[Progress(file=out)])
    lines = lines_of(out)
    assert re.fullmatch(rf"\[4/4\] describe {DONE}", lines[0])
    assert "1 executed, 3 cached, 0 failed" in lines[1]
    assert len(lines) == 2


def test_line_mode_shows_failures_and_not_run_nodes() -> None:
    with Workflow("failing") as wf:
        total(broken(load(3)))
    out = io.StringIO()
    results = wf.execute(subscribers=[Progress(file=out)], raise_on_error=False)
    lines = lines_of(out)
    assert re.fullmatch(rf"\[1/3\] load {DONE}", lines[0])
    assert lines[1] == "[2/3] broken FAILED: ValueError: bad input of 3 values"
    assert re.fullmatch(
        rf"run {results.run_id} failed: 2 executed, 0 cached, 1 failed, 1 not run in \d+\.\ds",
        lines[2],
    )
    assert len(lines) == 3


def test_a_failure_line_carries_no_terminal_escapes_of_the_nodes_error() -> None:
    @node
    def colourful() -> None:
        raise ValueError("\x1b[31mred\x1b[0m and \x1b]0;a title\x07 a bell\x07")

    with Workflow("escapes") as wf:
        colourful()
    out = io.StringIO()
    wf.execute(subscribers=[Progress(file=out)], raise_on_error=False)
    assert lines_of(out)[0] == "[1/1] colourful FAILED: ValueError: red and  a bell?"


def test_line_mode_reports_retries() -> None:
    calls = {"n": 0}

    @node(retries=2)
    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        return "ok"

    with Workflow("flaky") as wf:
        flaky()
    out = io.StringIO()
    wf.execute(subscribers=[Progress(file=out)])
    lines = lines_of(out)
    assert lines[0] == "flaky: attempt 1 failed, retrying: ConnectionError: try 1"
    assert lines[1] == "flaky: attempt 2 failed, retrying: ConnectionError: try 2"
    assert re.fullmatch(rf"\[1/1\] flaky {DONE} \(3 attempts\)", lines[2])


def test_quiet_shows_only_failures_and_summary() -> None:
    out = io.StringIO()
    squares().execute(subscribers=[Progress(file=out, quiet=True)])
    assert len(lines_of(out)) == 1
    assert "succeeded: 3 executed, 0 cached, 0 failed" in lines_of(out)[0]

    with Workflow("failing") as wf:
        broken(load(3))
    out = io.StringIO()
    wf.execute(subscribers=[Progress(file=out, quiet=True)], raise_on_error=False)
    lines = lines_of(out)
    assert lines[0] == "[2/2] broken FAILED: ValueError: bad input of 3 values"
    assert "failed: 2 executed, 0 cached, 1 failed" in lines[1]
    assert len(lines) == 2


def test_quiet_wins_over_a_terminal() -> None:
    progress = Progress(file=io.StringIO(), quiet=True, force_terminal=True)
    assert not progress.live


def test_not_a_terminal_means_lines() -> None:
    assert not Progress(file=io.StringIO()).live
    assert Progress(file=io.StringIO(), force_terminal=True).live


def test_unknown_events_and_runs_are_ignored() -> None:
    out = io.StringIO()
    progress = Progress(file=out)
    with pytest.raises(ValueError, match="node_teleported"):  # kinds are an enum: no unknown ones
        progress(Event("node_teleported", "run-1", "x", {"where": "mars"}))
    progress(Event("node_started", "run-0", "x", {"key": "k"}))  # a run it never saw start
    progress(Event("run_started", "run-1", data={"workflow": "w", "nodes": 1, "backend": "local"}))
    assert out.getvalue() == ""
    progress.close()
    progress.close()


def test_subscriber_is_cheap_per_cached_node() -> None:
    """10,000 cache hits: no output at all, and far below a millisecond each."""
    out = io.StringIO()
    progress = Progress(file=out)
    progress(Event("run_started", "r", data={"workflow": "w", "nodes": 10_000, "backend": "x"}))
    events = [Event("node_cached", "r", f"n{i}", {"key": "k"}) for i in range(10_000)]
    started = time.perf_counter()
    for event in events:
        progress(event)
    assert time.perf_counter() - started < 1.0
    assert out.getvalue() == ""
    assert progress.finished == 10_000 and progress.counts["cached"] == 10_000


# -- terminal mode ---------------------------------------------------------------------------------
def test_terminal_shows_counts_and_a_long_running_node() -> None:
    release = threading.Event()

    @node
    def quick():
        return 1

    @node
    def slow(x):
        release.wait(30)
        return x + 1

    with Workflow("live") as wf:
        slow(quick())
    out = io.StringIO()
    progress = Progress(file=out, force_terminal=True, slow_after=0.2, refresh_per_second=20)
    runner = threading.Thread(target=wf.execute, kwargs={"subscribers": [progress]})
    runner.start()
    try:
        screen = shown(out, r"slow +running")
    finally:
        release.set()
        runner.join(30)
    assert not runner.is_alive()
    assert "1 done · 0 cached · 1 running · 0 failed" in screen
    assert "1/2 ·" in screen
    assert re.search(r"\n  slow +running \d+\.\ds", screen)
    assert not re.search("quick +running", screen)
    final = plain(out).splitlines()[-1]
    assert re.fullmatch(r"run \S+ succeeded: 2 executed, 0 cached, 0 failed in \d+\.\ds", final)
    progress.close()  # already closed at run_finished: a no-op


def test_terminal_prints_failures_above_the_display() -> None:
    with Workflow("failing") as wf:
        broken(load(3))
    out = io.StringIO()
    progress = Progress(file=out, force_terminal=True)
    wf.execute(subscribers=[progress], raise_on_error=False)
    text = plain(out)
    assert "broken FAILED: ValueError: bad input of 3 values" in text
    assert text.splitlines()[-1].startswith("run ")
    assert "failed: 2 executed, 0 cached, 1 failed" in text.splitlines()[-1]


def test_terminal_display_is_not_redrawn_per_event() -> None:
    out = io.StringIO()
    progress = Progress(file=out, force_terminal=True, refresh_per_second=1)
    progress(Event("run_started", "r", data={"workflow": "w", "nodes": 1000, "backend": "x"}))
    try:
        for i in range(1000):
            progress(Event("node_cached", "r", f"n{i}", {"key": "k"}))
        assert len(out.getvalue()) < 2000  # at most a redraw or two, not a thousand
    finally:
        progress.close()
    progress.close()


@pytest.mark.parametrize(
    ("seconds", "digits", "text"),
    [(1.234, 2, "1.23s"), (3.21, 1, "3.2s"), (65, 2, "1m05s"), (3 * 3600 + 120, 1, "3h02m")],
)
def test_format_duration(seconds: float, digits: int, text: str) -> None:
    assert format_duration(seconds, digits) == text


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
    out = io.StringIO()
    progress = Progress(file=out)
    wf.execute(subscribers=[progress], raise_on_error=False)
    text = out.getvalue()
    assert "rescued FAILED, using its on_error fallback: ValueError: rescue me" in text
    assert progress.finished == 5
    assert progress.counts["fallback"] == 1 and progress.counts["skipped"] == 2
    assert ", 1 fallback, 2 skipped in " in lines_of(out)[-1]


def test_importing_the_subscribers_loads_neither_rich_nor_prometheus(python: str) -> None:
    code = (
        "import sys, etherealfabric.observe._progress, etherealfabric.observe._metrics\n"
        "print(sorted(m for m in sys.modules if m.startswith(('rich', 'prometheus_client'))))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_terminal_routes_engine_log_lines_above_the_display() -> None:
    """A log handler writing to the same file must not tear the live display."""
    release = threading.Event()

    @node
    def waits():
        release.wait(30)
        return 1

    with Workflow("logged") as wf:
        waits()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logger = logging.getLogger("etherealfabric")
    logger.addHandler(handler)
    progress = Progress(file=out, force_terminal=True, refresh_per_second=20)
    runner = threading.Thread(target=wf.execute, kwargs={"subscribers": [progress]})
    runner.start()
    try:
        shown(out, "1 running")  # the display is drawn; the next log line comes after it
    finally:
        release.set()
        runner.join(30)
        logger.removeHandler(handler)
    assert handler.stream is out  # given back at the end of the run
    lines = plain(out).splitlines()
    assert any(line.startswith("LOG run ") and "succeeded" in line for line in lines), lines
    assert not any("failedLOG" in line for line in lines), lines


def test_the_cli_summary_of_failures_carries_no_terminal_escapes_either(
    tmp_path: Path, ef: Any
) -> None:
    """`run`'s closing summary printed a node's error raw: an OSC sequence in it set the
    terminal's title (CSI ones were removed), and a name that is not UTF-8 wrote its byte."""
    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\ndef bad():\n"
        "    name = b'x-\\xff'.decode('utf-8', 'surrogateescape')\n"
        "    raise ValueError(f'boom \\x1b]0;pwned\\x07 \\x1b[2Jcleared {name}')\n"
        "with Workflow('escapes') as wf:\n    bad()\n"
    )
    done = ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_HOME=str(tmp_path / "home"))
    assert done.returncode == 1
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr and "\\xff" not in done.stderr
    assert "  bad: ValueError: boom  cleared x-?" in done.stderr.splitlines(), done.stderr
