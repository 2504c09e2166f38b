"""What a user sees of a run, through the real command line: tracebacks of retried nodes,
subscribers that fail, mistyped node names, import-time prints next to JSON, log levels,
retry events on threads, and outputs declared in a node class's body."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ef(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh process, in ``cwd``, with ``env`` added (this
    checkout's code first, whatever the installed one)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    path = os.pathsep.join(p for p in (str(ROOT / "src"), clean.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", "PYTHONPATH": path, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _python(cwd: Path, script: Path) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT`` in a fresh process, with this checkout's code."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


RETRIED = """
from etherealfabric import Workflow, node

def helper(x):
    raise ValueError(f"bad value {x}")

@node(retries=2)
def flaky(n):
    return helper(n)

with Workflow("flaky") as wf:
    flaky(3)
"""


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_a_retried_node_s_traceback_starts_in_the_user_s_code(tmp_path: Path, backend: str) -> None:
    """The last attempt's error is re-raised by tenacity from its future: its traceback, as
    ``logs`` shows it and ``wf.execute()`` raises it, starts in the node, like the others."""
    _write(tmp_path, "flow.py", RETRIED)
    run = _ef(tmp_path, "run", "flow.py", "--backend", backend)
    assert run.returncode == 1, run.stderr
    logs = _ef(tmp_path, "logs", "latest", "flaky")
    assert logs.returncode == 0, logs.stderr
    tracebacks = logs.stdout.split("-- traceback --\n")[1:]
    assert len(tracebacks) == 3
    for text in tracebacks:
        frames = [line for line in text.splitlines() if line.startswith("  File ")]
        assert "in flaky" in frames[0], text
        assert "tenacity" not in text and "concurrent" not in text and "_worker" not in text

    script = _write(
        tmp_path,
        "api.py",
        RETRIED
        + textwrap.dedent(
            """
            from etherealfabric import RunFailedError
            try:
                wf.execute()
            except RunFailedError as exc:
                print(exc.__cause__.traceback)
            """
        ),
    )
    api = _python(tmp_path, script)
    frames = [line for line in api.stdout.splitlines() if line.startswith("  File ")]
    assert frames and "in flaky" in frames[0], api.stdout + api.stderr


def test_a_failing_subscriber_is_logged_once_per_run_and_the_run_goes_on(tmp_path: Path) -> None:
    """Each broken subscriber (an object, a function, one taking ``node_cached`` calls) is
    logged once per run with its name and error, not once per event; the runs succeed."""
    script = _write(
        tmp_path,
        "listen.py",
        """
        from etherealfabric import Workflow, node

        @node
        def step(i):
            return i

        class Broken:
            def __call__(self, event):
                raise RuntimeError("listener broke")

            def node_cached(self, run_id, node, key, ts):
                raise RuntimeError("listener broke")

        def broken_fn(event):
            raise KeyError("nope")

        with Workflow("listened") as wf:
            for i in range(6):
                step(i)

        for _ in range(2):  # cold, then warm
            print("executed", wf.execute(subscribers=[Broken(), broken_fn]).executed)
        print("warm", wf.execute(subscribers=[Broken()]).cached)
        """,
    )
    done = _python(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["executed", "6", "executed", "0", "warm", "6"]
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    broken = [line for line in errors if "__main__.Broken failed on" in line]
    function = [line for line in errors if "__main__.broken_fn failed on" in line]
    assert len(broken) == 3 and len(function) == 2, done.stderr  # one per run each
    assert len(errors) == 5, done.stderr
    assert all("RuntimeError: listener broke" in line for line in broken)
    assert all("KeyError: 'nope'" in line for line in function)


TWO_LOADS = """
from etherealfabric import Workflow, node

@node
def load_data(n):
    return list(range(n))

@node
def load_model(n):
    if n == 0:
        raise ValueError("no model")
    return n

@node
def train(xs, m):
    return len(xs) * m

with Workflow("fit", params={"m": 0}) as wf:
    train(load_data(3), load_model(wf.params.m))
"""


def test_a_mistyped_node_name_is_exit_2_suggesting_the_closest_nodes(tmp_path: Path) -> None:
    """``logs``, ``show``, ``cat`` (and ``explain``) name the node, suggest the closest ones
    and list the run's: a typo is not taken for a node the run did not reach."""
    _write(tmp_path, "flow.py", TWO_LOADS)
    failed = _ef(tmp_path, "run", "flow.py", "--json")
    assert failed.returncode == 1, failed.stderr
    done = _ef(tmp_path, "run", "flow.py", "m=2", "--json")
    assert done.returncode == 0, done.stderr
    runs = [json.loads(failed.stdout)["run_id"], json.loads(done.stdout)["run_id"]]
    for command in ("logs", "show", "cat", "explain"):
        for run_id in runs:  # a failed run, then one that succeeded
            typo = _ef(tmp_path, command, run_id, "lod_data")
            assert typo.returncode == 2, typo.stdout + typo.stderr
            assert typo.stdout == ""
            (line,) = typo.stderr.strip().splitlines()
            assert line.startswith(
                f"error: run {run_id} has no node 'lod_data' (did you mean 'load_data'?)"
            ), line
            assert "its nodes: load_data, load_model, train" in line  # (train: upstream_failed)
            assert "ended before that node ran" not in line  # no node of the workflow
        several = _ef(tmp_path, command, runs[0], "load_dta")
        assert "(did you mean 'load_data' or 'load_model'?)" in several.stderr
        # (every node of the failed run has its row: a name none has is no node of the run,
        # not one it did not reach, so no `resume`)
        assert "resume" not in several.stderr
    none = _ef(tmp_path, "logs", runs[1], "zzz")
    assert none.returncode == 2 and "did you mean" not in none.stderr
    assert "has no node 'zzz'" in none.stderr


PRINTS = """
import os
import sys

print("importing my flow")
os.write(1, b"raw bytes at import\\n")  # (a C extension's way)
from etherealfabric import Workflow, node

@node
def a(n):
    if n == 0:
        raise ValueError("zero")
    return n

def build():
    print("building")
    with Workflow("printy", params={"n": 0}) as wf:
        a(wf.params.n)
    return wf

wf = build()
"""


def test_what_a_workflow_file_prints_at_import_goes_to_stderr_beside_json(tmp_path: Path) -> None:
    """``--json`` and ``graph``: stdout holds only the document, whatever the file prints while
    it is imported (``print``, a raw write to the descriptor, a factory named on the line)."""
    _write(tmp_path, "flow.py", PRINTS)
    failed = _ef(tmp_path, "run", "flow.py", "--json")
    assert failed.returncode == 1
    run_id = json.loads(failed.stdout)["run_id"]
    documents = {
        "run": _ef(tmp_path, "run", "flow.py:build", "n=2", "--json"),
        "resume": _ef(tmp_path, "resume", run_id, "--json"),
        "plan": _ef(tmp_path, "plan", "flow.py", "--json"),
        "graph json": _ef(tmp_path, "graph", "flow.py", "--format", "json"),
    }
    for what, done in documents.items():
        json.loads(done.stdout)  # nothing else on stdout
        assert "importing my flow" in done.stderr and "raw bytes at import" in done.stderr, what
    for fmt, first in (("mermaid", "flowchart"), ("dot", "digraph")):
        graph = _ef(tmp_path, "graph", "flow.py", "--format", fmt)
        assert graph.returncode == 0 and graph.stdout.startswith(first), graph.stdout
        assert "importing my flow" in graph.stderr
    assert "building" in documents["run"].stderr
    table = _ef(tmp_path, "plan", "flow.py")  # (for a person: stdout as it was)
    assert "importing my flow" in table.stdout and "plan of 'printy'" in table.stdout


CHAIN = """
from etherealfabric import Workflow, node

@node
def first(n):
    return n

@node
def second(x):
    return x + 1

with Workflow("levels") as wf:
    second(first(1))
"""


def test_a_log_level_with_spaces_or_in_any_case_is_taken_and_a_bad_one_named(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "flow.py", CHAIN)
    debug = _ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_LOG_LEVEL=" Debug ")
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG   etherealfabric.run: first: started" in debug.stderr  # as with DEBUG
    info = _ef(tmp_path, "run", "flow.py", "--json", ETHEREALFABRIC_LOG_LEVEL=" info ")
    assert info.returncode == 0 and json.loads(info.stdout)["cached"] == 2, info.stderr
    assert "DEBUG" not in info.stderr
    bad = _ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_LOG_LEVEL=" loud ")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: ETHEREALFABRIC_LOG_LEVEL='loud' is not a log level; use one of DEBUG, INFO, "
        "WARNING, ERROR, CRITICAL"
    )


def test_celery_worker_checks_its_log_level(tmp_path: Path) -> None:
    pytest.importorskip("celery")
    urls = {
        "ETHEREALFABRIC_CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": "redis://127.0.0.1:9/1",
    }
    bad = _ef(tmp_path, "celery-worker", "--loglevel", "loud", **urls)
    assert bad.returncode == 2
    assert "--loglevel='loud' is not a log level; use one of DEBUG, INFO" in bad.stderr
    env = _ef(tmp_path, "celery-worker", **urls, ETHEREALFABRIC_LOG_LEVEL="noisy")
    assert env.returncode == 2 and "ETHEREALFABRIC_LOG_LEVEL='noisy'" in env.stderr


WAITS_FOR_ITS_RETRY_TO_BE_SEEN = """
import os
import time
from pathlib import Path
from etherealfabric import RetryPolicy, Workflow, node

@node(retries=RetryPolicy(retries=1, backoff=0.1))
def flaky(n):
    seen = Path("seen")
    if not Path("tried").exists():
        Path("tried").write_text("")
        raise ConnectionError("reset by peer")
    for _ in range(300):  # the second attempt: until the first one's failure was reported
        if seen.exists():
            return n
        time.sleep(0.05)
    raise TimeoutError("the retry was not reported while the node ran")

with Workflow("told") as wf:
    flaky(1)
"""


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_a_retry_is_reported_when_it_happens(tmp_path: Path, backend: str) -> None:
    """The progress line of ``node_retrying`` comes while the node still runs: its second
    attempt waits for the line to be seen, then succeeds. On processes the worker's note
    comes through the pool's pipe (it came with the node's result, after it ended)."""
    _write(tmp_path, "flow.py", WAITS_FOR_ITS_RETRY_TO_BE_SEEN)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    run = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--backend", backend],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stderr is not None
    lines = []
    with run, run.stderr:
        for line in run.stderr:
            lines.append(line)
            if "flaky: attempt 1 failed, retrying: ConnectionError: reset by peer" in line:
                (tmp_path / "seen").write_text("")
    assert run.wait(timeout=60) == 0, "".join(lines)
    retrying = next(i for i, line in enumerate(lines) if "retrying" in line)
    done = next(i for i, line in enumerate(lines) if "flaky done" in line)
    assert retrying < done and "(2 attempts)" in lines[done]
    assert sum("retrying" in line for line in lines) == 1  # not again with the result


def test_a_retry_is_an_event_and_a_log_line_while_the_node_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """From Python: a subscriber gets ``node_retrying`` (once) while the node's next attempt
    runs, and the log has a WARNING line for it; the journal's event is there too."""
    from etherealfabric import RetryPolicy, Workflow, node

    seen = threading.Event()

    @node(retries=RetryPolicy(retries=2))
    def flaky(n: int) -> int:
        if not (tmp_path / "tried").exists():
            (tmp_path / "tried").write_text("")
            raise ConnectionError("reset by peer")
        if not seen.wait(30):
            raise TimeoutError("the retry was not reported while the node ran")
        return n

    events = []

    def listen(event: Any) -> None:
        if event.kind == "node_retrying":
            events.append(dict(event.data))
            seen.set()

    with Workflow("told") as wf:
        flaky(1)
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        results = wf.execute(subscribers=[listen])
    assert results.executed == 1
    assert events == [{"attempt": 1, "error": "ConnectionError: reset by peer"}]
    assert "flaky: attempt 1 failed, retrying: ConnectionError: reset by peer" in caplog.text
    with sqlite3.connect(tmp_path / ".etherealfabric" / "journal.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'node_retrying'",
            (results.run_id,),
        ).fetchone()
    assert count == 1


CLASS_OUTPUTS = """
from etherealfabric import Node, Workflow

class Split(Node):
    outputs = OUTPUTS

    def __init__(self, xs):
        super().__init__()
        self.xs = xs

    def run(self):
        return {"low": min(self.xs), "high": max(self.xs)}

class Total(Node):
    outputs = ["result"]

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def run(self):
        return {"result": self.a + self.b}

split = Split([3, 1, 2])
total = Total(split.outputs["low"], split.outputs["high"])
wf = Workflow("class-outputs")
wf.add_node(total)
"""


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_outputs_declared_as_a_list_in_the_class_body_work_as_a_tuple(
    tmp_path: Path, backend: str
) -> None:
    """``outputs = [...]`` in a node class's body declares its outputs, as a tuple there
    does: ``node.outputs["name"]`` is a reference, and the run stores each output."""
    _write(tmp_path, "flow.py", CLASS_OUTPUTS.replace("OUTPUTS", '["low", "high"]'))
    _write(tmp_path, "tuple.py", CLASS_OUTPUTS.replace("OUTPUTS", '("low", "high")'))
    run = _ef(tmp_path, "run", "flow.py", "--backend", backend, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["executed"] == 2
    shown = _ef(tmp_path, "cat", "latest", "Total", "--json")
    assert json.loads(shown.stdout) == 4, shown.stdout + shown.stderr
    low = _ef(tmp_path, "cat", "latest", "Split", "low", "--json")
    assert json.loads(low.stdout) == 1, low.stdout + low.stderr
    as_tuple = _ef(tmp_path, "run", "tuple.py", "--backend", backend, "--json")
    assert json.loads(as_tuple.stdout)["executed"] == 2, as_tuple.stderr
    shown = _ef(tmp_path, "cat", "latest", "Total", "--json")
    assert json.loads(shown.stdout) == 4, shown.stdout + shown.stderr


def test_a_class_body_outputs_declaration_is_checked_and_can_be_overridden() -> None:
    from etherealfabric import DefinitionError, Node

    class One(Node):
        outputs = "result"  # one name, never its letters

        def run(self) -> dict[str, int]:
            return {"result": 1}

    assert list(One().outputs) == ["result"]
    assert One().outputs["result"].name == "result"

    class Two(One):
        outputs = ["a", "b"]  # noqa: RUF012  (as users write it)

        def __init__(self, mine: bool = False) -> None:
            super().__init__()
            if mine:
                self.outputs = ["c"]

    assert list(Two().outputs) == ["a", "b"] and list(Two(mine=True).outputs) == ["c"]
    assert list(One().outputs) == ["result"]  # the subclass changed nothing of its base
    with pytest.raises(DefinitionError, match=r"declares output\(s\) \['a'\] more than once"):

        class Twice(Node):
            outputs = ["a", "a"]  # noqa: RUF012

    with pytest.raises(DefinitionError, match="output names must be non-empty strings"):

        class Blank(Node):
            outputs = ["a", ""]  # noqa: RUF012

    with pytest.raises(DefinitionError, match="outputs must be a list of output names"):

        class Number(Node):
            outputs = 3
