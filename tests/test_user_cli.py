"""The command line as a first-time user meets it: a failed node's traceback can be found."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cli_runner import ef_home as _cli

FAILING = """
from etherealfabric import Workflow, node

@node
def load():
    return {"a": 1}

@node
def use(row):
    return row["missing_col"] + 1

with Workflow("bad") as wf:
    use(load())
"""


def test_a_failed_nodes_traceback_is_one_command_away(tmp_path: Path) -> None:
    """`run` said `use: KeyError: 'missing_col'` and no command printed where: `logs`, `show`,
    `explain` and `--traceback` all left the journaled traceback out (only the web UI had it)."""
    (tmp_path / "flow.py").write_text(FAILING)
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 1
    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    assert "use: KeyError: 'missing_col'" in done.stderr
    assert f"etherealfabric logs {run_id} use" in done.stderr  # where the traceback is

    logs = _cli(tmp_path, "logs", run_id, "use")
    assert logs.returncode == 0, logs.stderr
    assert "== use attempt 1 (failed) ==" in logs.stdout
    assert 'flow.py", line 10, in use' in logs.stdout
    assert 'return row["missing_col"] + 1' in logs.stdout
    assert logs.stdout.rstrip().endswith("KeyError: 'missing_col'")

    as_json = json.loads(_cli(tmp_path, "logs", run_id, "use", "--json").stdout)
    assert "KeyError: 'missing_col'" in as_json[0]["traceback"]
    ok = json.loads(_cli(tmp_path, "logs", run_id, "load", "--json").stdout)
    assert ok[0]["traceback"] is None


def test_a_nodes_traceback_starts_in_the_users_code(tmp_path: Path) -> None:
    """The journaled traceback (shown by `logs`, the UI and RunFailedError) began with five
    frames of the engine's worker (_worker.py: execute, _call_with_retries, _attempt, body,
    _call) before the user's own line: it now starts at the node's function, and keeps the
    frames below it (a library's) and the chained exceptions."""
    (tmp_path / "flow.py").write_text(FAILING)
    assert _cli(tmp_path, "run", "flow.py").returncode == 1
    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    text = json.loads(_cli(tmp_path, "logs", run_id, "use", "--json").stdout)[0]["traceback"]
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].endswith('flow.py", line 10, in use'), text
    assert "_worker.py" not in text
    assert lines[-1] == "KeyError: 'missing_col'"

    with_cause = FAILING.replace(
        'return row["missing_col"] + 1',
        "import json\n    return json.loads('{\"a\": ')",
    )
    (tmp_path / "flow.py").write_text(with_cause)
    assert _cli(tmp_path, "run", "flow.py").returncode == 1
    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    text = json.loads(_cli(tmp_path, "logs", run_id, "use", "--json").stdout)[0]["traceback"]
    assert "json/decoder.py" in text  # the library's frames below the node's are kept
    assert "_worker.py" not in text
    assert text.rstrip().splitlines()[-1].startswith("json.decoder.JSONDecodeError")


CHAINED = """
from etherealfabric import Workflow, node

def helper(row):
    return row["missing_col"]

@node
def use(row):
    try:
        return helper(row)
    except KeyError as e:
        raise ValueError("no column") from e

with Workflow("bad") as wf:
    use({"a": 1})
"""


def test_a_processes_backend_traceback_shows_the_workflow_file_s_lines(tmp_path: Path) -> None:
    """On the processes backend the workflow file's functions travel by value (cloudpickle):
    their frames read `File "<dynamic-code>", line 10, in use` with no source line. They now
    name the workflow file and show its lines, in the chained exception too."""
    (tmp_path / "flow.py").write_text(CHAINED)
    assert _cli(tmp_path, "run", "flow.py", "--backend", "processes").returncode == 1
    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    text = json.loads(_cli(tmp_path, "logs", run_id, "use", "--json").stdout)[0]["traceback"]
    assert "<dynamic-code>" not in text, text
    flow = str(tmp_path / "flow.py")
    assert f'File "{flow}", line 10, in use' in text, text
    assert f'File "{flow}", line 5, in helper' in text, text  # the cause's frames
    assert 'return row["missing_col"]' in text
    assert 'raise ValueError("no column") from e' in text
    assert text.rstrip().splitlines()[-1] == "ValueError: no column"


def test_a_parameter_for_a_workflow_without_any_says_how_to_declare_one(tmp_path: Path) -> None:
    """`-p x=1` on a workflow with no parameters said only `Its parameters: none`."""
    (tmp_path / "flow.py").write_text(FAILING)
    out = _cli(tmp_path, "run", "flow.py", "-p", "x=1")
    assert out.returncode == 2
    assert "Its parameters: none" in out.stderr
    assert "Workflow(..., params={'x': DEFAULT})" in out.stderr
    assert "wf.params.x" in out.stderr
    nested = _cli(tmp_path, "run", "flow.py", "-p", "model.C=1")
    assert "params={'model': {'C': DEFAULT}})" in nested.stderr, nested.stderr


def test_a_function_with_several_outputs_is_told_a_tuple_works(tmp_path: Path) -> None:
    """`@node(outputs=["X", "y"])` returning one value said it 'must return a dict', though the
    tutorials return `X, y`; a tuple of the wrong length said the same, without its length."""
    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "@node(outputs=['X', 'y'])\ndef one():\n    return 1\n"
        "@node(outputs=['X', 'y'])\ndef three():\n    return 1, 2, 3\n"
        "with Workflow('shapes', keep_going=True) as wf:\n    one()\n    three()\n"
    )
    out = _cli(tmp_path, "run", "flow.py")
    assert out.returncode == 1
    assert (
        "node 'one': the function returned int; it must return a dict with the declared "
        "outputs ['X', 'y'] (or a tuple of 2 values, in that order)"
    ) in out.stderr, out.stderr
    assert "node 'three': the function returned a tuple of 3 values;" in out.stderr


SLOW = """
import time
from etherealfabric import Workflow, node

@node
def step(i, prev=None):
    print(f"step {i}", flush=True)
    time.sleep(0.5 if i == 0 else 60)
    return i

with Workflow("slow") as wf:
    step(1, step(0))
"""


def test_ctrl_c_says_how_to_resume_and_a_failed_run_too(tmp_path: Path) -> None:
    """Ctrl-C during `run` ended with click's bare `Aborted!`, and a failed run's summary did
    not say how to go on: both now name the `etherealfabric resume RUN_ID` to type."""
    (tmp_path / "flow.py").write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # the second node has started: the run is going
        if line.startswith("step 1"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    assert f"etherealfabric resume {run_id}" in err, err
    assert "Aborted!" not in err

    (tmp_path / "flow.py").write_text(FAILING)
    done = _cli(tmp_path, "run", "flow.py")
    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    assert f"etherealfabric resume {run_id}" in done.stderr, done.stderr


def test_gc_ages_take_the_units_runs_since_takes(tmp_path: Path) -> None:
    """`runs --since 2h` reads an age, `cache gc --older-than 2h` refused it ('not a valid
    float range'): both take seconds or an age (30m, 2h, 3d, 1w) now."""
    (tmp_path / "flow.py").write_text(FAILING.replace('row["missing_col"] + 1', "row"))
    assert _cli(tmp_path, "run", "flow.py").returncode == 0
    for option, value in (("--older-than", "2h"), ("--older-than", "90"), ("--grace", "1.5d")):
        done = _cli(tmp_path, "cache", "gc", option, value, "--dry-run", "--json")
        assert done.returncode == 0, (option, value, done.stderr)
        assert json.loads(done.stdout)["records_kept"] == 2
    done = _cli(tmp_path, "cache", "gc", "--older-than", "0s", "--keep-runs", "1", "--dry-run")
    assert done.returncode == 0, done.stderr
    bad = _cli(tmp_path, "cache", "gc", "--older-than", "soon")
    assert bad.returncode == 2
    assert "'soon'" in bad.stderr and "30m, 2h, 3d, 1w" in bad.stderr


def test_runs_counts_a_running_runs_nodes_so_far(tmp_path: Path) -> None:
    """`runs` showed a running run with `0 executed` although nodes had finished (the counts
    were written only at its end): it now counts the node rows committed so far."""
    (tmp_path / "flow.py").write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # step 0 is done: its row is committed
            if line.startswith("step 1"):
                break
        run = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]
        assert run["status"] == "running"
        assert (run["executed"], run["cached"], run["failed"]) == (1, 0, 0)
    finally:
        proc.kill()
        proc.communicate(timeout=60)  # (closes the pipe)


SQUARES = """
from etherealfabric import Workflow, node

@node
def one():
    return 1

with Workflow("squares") as wf:
    one()
with Workflow("cubes") as cubes:
    one()
"""


def test_a_workflow_filter_naming_no_workflow_says_so_on_stderr(tmp_path: Path) -> None:
    """`runs --workflow sqares` (a typo) printed an empty table and nothing else, as if the
    workflow had simply not run: now a line on stderr says no run of it was found and lists
    the workflows that ran, the closest first; stdout and exit 0 as before."""
    (tmp_path / "flow.py").write_text(SQUARES)
    for name in ("squares", "cubes"):
        assert (
            _cli(tmp_path, "run", f"flow.py:{'wf' if name == 'squares' else 'cubes'}").returncode
            == 0
        )
    for command in (["runs"], ["cache", "ls"], ["cache", "du"]):
        for fmt in ([], ["--json"]):
            got = _cli(tmp_path, *command, "--workflow", "sqares", *fmt)
            assert got.returncode == 0, got.stderr
            assert got.stderr.strip() == (
                "note: no runs of workflow 'sqares' found; did you mean 'squares'? "
                "workflows with runs: squares, cubes"
            ), (command, got.stderr)
            if fmt:
                empty = json.loads(got.stdout)
                assert (empty["rows"] if command[-1] == "du" else empty) == [], got.stdout
        known = _cli(tmp_path, *command, "--workflow", "squares", "--json")
        assert known.returncode == 0 and known.stderr == "", known.stderr
        assert json.loads(known.stdout), known.stdout  # not empty
    short = json.loads(_cli(tmp_path, "runs", "-w", "cubes", "--json").stdout)  # as cache's -w
    assert [r["workflow"] for r in short] == ["cubes"]
    latest = json.loads(_cli(tmp_path, "status", "-w", "cubes", "--json").stdout)
    assert latest["workflow"] == "cubes", latest
    far = _cli(tmp_path, "runs", "--workflow", "zzz", "--json")
    assert (
        far.stderr.strip()
        == "note: no runs of workflow 'zzz' found; workflows with runs: cubes, squares"
    )
    assert json.loads(far.stdout) == []
    filtered = _cli(tmp_path, "runs", "--workflow", "squares", "--status", "failed", "--json")
    assert filtered.stderr == "" and json.loads(filtered.stdout) == []  # it ran: nothing to say


MULTILINE = """
from etherealfabric import Workflow, node

@node
def load():
    return 1

@node
def check(x):
    raise ValueError("bad rows:\\n  row 3: missing id\\n\\n  row 7: negative price")

@node
def long(x):
    raise RuntimeError("\\n".join(f"column c{i} is missing" for i in range(100)))

with Workflow("multi", keep_going=True) as wf:
    data = load()
    check(data)
    long(data)
"""


def test_a_multi_line_node_error_is_one_line_in_the_runs_summary(tmp_path: Path) -> None:
    """A node whose error spans lines printed them as they were at the end of `run`, the
    lines after the first without the node's name: each error is now one line there (cut
    when long); `logs` and `show` keep the whole message."""
    (tmp_path / "flow.py").write_text(MULTILINE)
    done = _cli(tmp_path, "run", "flow.py")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert "  check: ValueError: bad rows: row 3: missing id; row 7: negative price" in lines
    assert not any(line.strip().startswith("row ") for line in lines), done.stderr
    (long,) = [line for line in lines if line.startswith("  long: RuntimeError: column c0")]
    assert long.endswith(" ...") and len(long) <= len("  long: ") + 300
    assert not any(line.startswith("column c") for line in lines)

    run_id = json.loads(_cli(tmp_path, "runs", "--json").stdout)[0]["id"]
    shown = json.loads(_cli(tmp_path, "show", run_id, "--json").stdout)
    errors = {n["node"]: n["error"] for n in shown["nodes"]}
    assert "bad rows:\n  row 3: missing id\n\n  row 7: negative price" in errors["check"]
    assert "column c99 is missing" in errors["long"]
    logs = _cli(tmp_path, "logs", run_id, "check").stdout
    assert "  row 7: negative price" in logs
