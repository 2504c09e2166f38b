"""A run leaves the process as it found it: streams, root handlers, the user's logging.

What a node prints and logs is still captured per attempt (read back with ``etherealfabric
logs``), still shows live, and parallel nodes' outputs do not mix. The process-wide state is
checked in fresh interpreters, where nothing else (pytest) has touched logging or the streams.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etherealfabric.cli import main
from etherealfabric.run._capture import capture, joined

FLOW = """
import io, logging, sys, time
from pathlib import Path
from etherealfabric import Workflow, node

{setup}

BEFORE = dict(
    stdout=sys.stdout,
    stderr=sys.stderr,
    handlers=list(logging.getLogger().handlers),
    level=logging.getLogger().level,
    factory=logging.getLogRecordFactory(),
    last_resort=logging.lastResort,
)


def chat(me, other):
    Path(me).touch()  # both nodes wait for each other, so they surely run at the same time
    deadline = time.time() + 30
    while not Path(other).exists():
        if time.time() > deadline:
            raise TimeoutError(other)
        time.sleep(0.01)
    for i in range(30):
        print(f"{{me}} printed {{i}}")
        logging.getLogger(f"node.{{me}}").warning("%s logged %d", me, i)
        time.sleep(0.001)
    return me


@node
def left():
    return chat("left", "right")


@node
def right():
    return chat("right", "left")


if __name__ == "__main__":
    with Workflow("capture") as wf:
        left()
        right()
    results = wf.execute(backend={backend!r}, max_workers=2)
    assert sys.stdout is BEFORE["stdout"] and sys.stderr is BEFORE["stderr"]
    assert logging.getLogger().handlers == BEFORE["handlers"], logging.getLogger().handlers
    assert logging.getLogger().level == BEFORE["level"]
    assert logging.getLogRecordFactory() is BEFORE["factory"]
    assert logging.lastResort is BEFORE["last_resort"]
    {check}
    logging.getLogger("app").warning("app warns after the run")
    print("RUN", results.run_id)
"""


def run_flow(
    tmp_path: Path, *, backend: str = "local", setup: str = "", check: str = ""
) -> tuple[str, str, str]:
    """Run FLOW as a script in a fresh interpreter: its run id, stdout and stderr."""
    path = tmp_path / "flow.py"
    path.write_text(FLOW.format(backend=backend, setup=setup, check=check or "pass"))
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    run_line = [line for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert len(run_line) == 1, done.stdout
    return run_line[0].split()[1], done.stdout, done.stderr


def attempt_outputs(run_id: str, node: str) -> list[str]:
    result = CliRunner().invoke(main, ["logs", run_id, node, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return [a["output"] for a in json.loads(result.stdout)]


def assert_captured_apart(run_id: str) -> None:
    """Each node's one attempt holds all its own lines, each once, and none of the other's."""
    for me, other in (("left", "right"), ("right", "left")):
        (output,) = attempt_outputs(run_id, me)
        for i in range(30):
            assert output.count(f"{me} printed {i}\n") == 1, output
            assert output.count(f"WARNING node.{me}: {me} logged {i}\n") == 1, output
        assert output.count(f"{me} logged") == 30, output  # a log line is not captured twice
        assert other not in output, output


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_unconfigured_logging_prints_after_a_run_and_nodes_are_still_captured(
    tmp_path: Path, backend: str
) -> None:
    run_id, out, err = run_flow(tmp_path, backend=backend)
    assert "app warns after the run" in err.splitlines()  # logging.lastResort, as before
    # while nodes ran, prints went on to the terminal and unconfigured warnings to stderr
    # (threads and processes may interleave the pieces of lines on a shared terminal)
    assert "left printed 29" in out and "right printed 0" in out
    assert "left logged 29" in err and "right logged 0" in err
    assert " etherealfabric.run: run " in err  # the engine's own log still prints by default
    assert_captured_apart(run_id)


def test_a_users_logging_setup_is_unchanged_and_prints_each_line_once(tmp_path: Path) -> None:
    setup = (
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr, "
        "format='USER %(levelname)s %(name)s: %(message)s')\n"
        "ROOT_HANDLER = logging.getLogger().handlers[0]\n"
        "ROOT_FORMATTER = ROOT_HANDLER.formatter"
    )
    check = (
        "assert logging.getLogger().handlers == [ROOT_HANDLER] "
        "and ROOT_HANDLER.formatter is ROOT_FORMATTER "
        "and ROOT_HANDLER.stream is BEFORE['stderr'] "
        "and logging.getLogger().level == logging.INFO"
    )
    run_id, _, err = run_flow(tmp_path, setup=setup, check=check)
    lines = err.splitlines()
    assert "USER WARNING app: app warns after the run" in lines
    assert lines.count("USER WARNING node.left: left logged 7") == 1  # no last-resort copy
    engine = [line for line in lines if " etherealfabric.run: run " in line]
    assert engine and all(line.startswith("USER INFO ") for line in engine), engine  # theirs only
    assert_captured_apart(run_id)


def test_a_script_that_configures_logging_after_a_run_sees_only_its_own_format(
    tmp_path: Path,
) -> None:
    check = (
        "logging.basicConfig(format='LATER %(name)s: %(message)s')\n"
        "    logging.getLogger('etherealfabric.run').warning('engine after basicConfig')"
    )
    _, _, err = run_flow(tmp_path, check=check)
    lines = err.splitlines()
    assert "LATER etherealfabric.run: engine after basicConfig" in lines
    assert sum("engine after basicConfig" in line for line in lines) == 1, lines
    assert "LATER app: app warns after the run" in lines


def test_the_engine_handler_is_added_once_and_never_to_the_root(tmp_path: Path) -> None:
    code = (
        "import logging\n"
        "from etherealfabric.observe._logging import configure_logging\n"
        "for level in ('INFO', 'DEBUG', 'INFO'):\n"
        "    logger = configure_logging(level)\n"
        "print(len(logging.getLogger().handlers), len(logger.handlers), logger.level)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["0", "1", str(logging.INFO)]


# -- capture() itself, in this process --------------------------------------------------------
class Theirs(io.StringIO):
    """Someone else's replacement for sys.stdout that passes writes on, like pytest's capsys."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(text)
        return super().write(text)


def test_capture_installs_for_its_duration_only_and_keeps_a_later_replacement() -> None:
    before_out, before_err = sys.stdout, sys.stderr
    before_factory = logging.getLogRecordFactory()
    theirs = None
    try:
        with capture() as chunks:
            assert sys.stdout is not before_out and sys.stderr is not before_err
            print("first")
            theirs = Theirs(sys.stdout)  # replaced while we are installed: keeps ours inside
            sys.stdout = theirs
        assert sys.stdout is theirs  # not clobbered
        assert sys.stderr is before_err and logging.getLogRecordFactory() is before_factory
        with capture() as again:
            print("second")  # through theirs, then the old router: captured once
        assert sys.stdout is theirs
    finally:
        sys.stdout = before_out
    assert joined(chunks) == "first\n"
    assert joined(again) == "second\n"
    assert theirs is not None and theirs.getvalue() == "second\n"


def test_the_last_capture_to_exit_uninstalls() -> None:
    before = sys.stdout
    entered, release, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[str | None] = []

    def other_attempt() -> None:
        with capture() as chunks:
            entered.set()
            release.wait(10)
            print("from the other thread")
        seen.append(joined(chunks))
        done.set()

    thread = threading.Thread(target=other_attempt)
    thread.start()
    assert entered.wait(10)
    with capture() as mine:
        print("from this thread")
    assert sys.stdout is not before  # the other attempt still runs: still installed
    release.set()
    assert done.wait(10)
    thread.join(10)
    assert sys.stdout is before
    assert joined(mine) == "from this thread\n"
    assert seen == ["from the other thread\n"]


def test_log_records_are_captured_with_their_traceback_and_handlers_see_them_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="user.code"), capture() as chunks:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("user.code").exception("failed %s", "here")
    text = joined(chunks) or ""
    assert text.startswith("ERROR user.code: failed here\nTraceback")
    assert "ValueError: boom" in text
    (record,) = [r for r in caplog.records if r.name == "user.code"]
    assert record.getMessage() == "failed here" and record.exc_info is not None
    assert "ValueError: boom" in caplog.text


def test_a_huge_capture_keeps_its_end_and_says_how_much_went() -> None:
    from etherealfabric.run._capture import MAX_CAPTURE, joined

    text = joined(["a" * 1000, "b" * MAX_CAPTURE])
    assert text is not None and text.endswith("b" * MAX_CAPTURE)
    first, rest = text.split("\n", 1)
    assert (
        first == f"[... 1,000 characters before these were not kept: the last {MAX_CAPTURE:,} are]"
    )
    assert rest == "b" * MAX_CAPTURE
    assert joined(["short"]) == "short" and joined([]) is None


def test_a_node_printing_far_more_than_is_kept_holds_no_more_in_memory(tmp_path: Path) -> None:
    from etherealfabric import Workflow, node
    from etherealfabric.run._capture import MAX_CAPTURE

    line = "epoch loss " + "0123456789" * 100 + "\n"
    lines = 20 * MAX_CAPTURE // len(line)  # 20 MiB printed in all

    @node
    def chatty() -> int:
        import tracemalloc

        tracemalloc.start()
        for i in range(lines):
            print(f"{i % 10}{line[1:]}", end="")  # (a new string each time, as a log line is)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    with Workflow("chatty", home=tmp_path / "home") as wf:
        out = chatty()
    results = wf.execute()
    assert results[out] < 8 * MAX_CAPTURE  # (was all 20 MiB, as a list of chunks)
    from etherealfabric.journal import Journal

    with Journal(tmp_path / "home" / "journal.db") as journal:
        [row] = journal.node_runs(results.run_id)
    first, rest = row["output"].split("\n", 1)
    cut = lines * len(line) - MAX_CAPTURE
    assert (
        first
        == f"[... {cut:,} characters before these were not kept: the last {MAX_CAPTURE:,} are]"
    )
    assert len(rest) == MAX_CAPTURE and rest.endswith(f"{(lines - 1) % 10}{line[1:]}")
