"""The command line: run, runs, show; JSON output; exit codes; one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from etherealfabric.cli import main

WORKFLOW = """
from etherealfabric import Workflow, node

@node
def numbers(n):
    return list(range(n))

@node
def total(xs, fail=False):
    if fail:
        raise ValueError("asked to fail")
    return sum(xs)

with Workflow("cli-demo") as workflow:
    total(numbers(N), fail=FAIL)
"""


def write(tmp_path: Path, n: int = 10, fail: bool = False) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(f"N = {n}\nFAIL = {fail}\n" + WORKFLOW)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_twice_then_history_and_show(tmp_path: Path) -> None:
    path = write(tmp_path)
    code, out, _ = invoke("run", str(path), "--json")
    assert code == 0
    first = json.loads(out)
    assert first["status"] == "succeeded" and first["executed"] == 2
    assert first["nodes"] == {"numbers": "succeeded", "total": "succeeded"}
    code, out, _ = invoke("run", f"{path}:workflow")
    assert code == 0 and "0 executed, 2 cached" in out

    code, out, _ = invoke("runs", "--json")
    runs = json.loads(out)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[1]["id"] == first["run_id"] and runs[0]["cached"] == 2

    code, out, _ = invoke("show", first["run_id"], "--json")
    shown = json.loads(out)
    assert {n["node"]: n["status"] for n in shown["nodes"]} == {
        "numbers": "succeeded",
        "total": "succeeded",
    }
    code, out, _ = invoke("show", runs[0]["id"])
    assert code == 0 and "cached" in out and "numbers" in out

    code, out, _ = invoke("runs", "--workflow", "nope", "--json")
    assert json.loads(out) == []


def test_failed_run_exits_1_and_names_the_node(tmp_path: Path) -> None:
    code, out, err = invoke("run", str(write(tmp_path, fail=True)))
    assert code == 1
    assert "failed" in out
    assert "total: ValueError: asked to fail" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py"], "no such workflow file"),
        (["run", "folder.py"], "folder.py is a folder, not a workflow file"),
        (["run", "flow.py:nothing"], "is not a Workflow"),
        (["show", "no-such-run"], "no run 'no-such-run'"),
        (["logs", "last", "total"], "(`latest`: the newest run)"),
        (["run", "flow.py", "--backend", "sparkle"], "unknown execution backend 'sparkle'"),
    ],
)
def test_user_mistakes_are_one_line_errors_with_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    write(tmp_path)
    (tmp_path / "folder.py").mkdir()
    if args[0] in ("show", "logs"):
        invoke("run", "flow.py")
    code, _, err = invoke(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-workers", "0"], ["--max-workers", ">=1"]),
        (["--max-workers", "-2"], ["--max-workers", ">=1"]),
        (["--backend", "gpu"], ["--backend", "'gpu'", "local", "processes", "threads", "dask"]),
    ],
)
def test_a_bad_run_flag_is_named_with_the_allowed_values(
    tmp_path: Path, args: list[str], named: list[str]
) -> None:
    """A bad --max-workers or --backend is exit 2, one line naming the flag and what it takes."""
    write(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for word in named:
        assert word in done.stderr, (word, done.stderr)


def test_a_bad_backend_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_EXECUTION_BACKEND", "gpu")
    code, _, err = invoke("run", "flow.py")
    assert code == 2
    assert "ETHEREALFABRIC_EXECUTION_BACKEND" in err and "--backend" not in err


def test_history_without_a_journal_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = invoke("runs")
    assert code == 2 and "no journal" in err


def test_file_with_two_workflows_needs_a_name(tmp_path: Path) -> None:
    path = tmp_path / "two.py"
    path.write_text("from etherealfabric import Workflow\na = Workflow('a')\nb = Workflow('b')\n")
    code, _, err = invoke("run", str(path))
    assert code == 2 and "several (a, b)" in err


def test_help_lists_commands() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for command in ("run", "runs", "show"):
        assert command in out


def test_script_run_and_cli_run_share_the_cache(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path)
    path.write_text(path.read_text() + "\nif __name__ == '__main__':\n    workflow.execute()\n")
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, out, _ = invoke("run", str(path), "--json")
    assert code == 0
    assert json.loads(out)["cached"] == 2


def test_a_script_run_under_a_profiler_shares_the_cache(tmp_path: Path) -> None:
    """``python -m cProfile flow.py`` runs the script in globals of its own while
    ``sys.modules["__main__"]`` is cProfile: the nodes (a function and a Node class) are
    still named after flow.py, so the profiled run finds the plain run's results."""
    import subprocess
    import sys

    path = tmp_path / "flow.py"
    path.write_text(
        "from etherealfabric import Node, Workflow, node\n"
        "@node\n"
        "def numbers(n):\n"
        "    return list(range(n))\n"
        "class Total(Node):\n"
        "    def __init__(self, xs):\n"
        "        super().__init__()\n"
        '        self.xs, self.outputs = xs, ["total"]\n'
        "    def run(self):\n"
        '        return {"total": sum(self.xs)}\n'
        "with Workflow('profiled') as workflow:\n"
        "    workflow.add_node(Total(numbers(10)))\n"
        "results = workflow.execute()\n"
        "print(results.executed, results.cached)\n"
    )
    runs = []
    for runner in ([], ["-m", "cProfile", "-o", str(tmp_path / "prof")]):
        done = subprocess.run(
            [sys.executable, *runner, str(path)], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        runs.append(done.stdout.split())
    assert runs == [["2", "0"], ["0", "2"]]
    code, out, _ = invoke("runs", "--json")
    assert code == 0 and "cProfile" not in out


def test_a_helper_wrapped_by_a_decorator_of_another_module_has_one_key_both_ways(
    tmp_path: Path,
) -> None:
    """A helper in the script wrapped by ``functools.wraps`` in util.py: the wrapper carries
    the script's ``__module__`` but util's globals. ``python flow.py`` and ``etherealfabric run
    flow.py`` name it alike (``flow.helper.<wrapper>``), so each finds the other's result."""
    import subprocess
    import sys

    (tmp_path / "util.py").write_text(
        "import functools\n"
        "def doubled(f):\n"
        "    @functools.wraps(f)\n"
        "    def wrapper(*a):\n"
        "        return f(*a) * 2\n"
        "    return wrapper\n"
    )
    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "from util import doubled\n"
        "@doubled\n"
        "def helper(x):\n"
        "    return x + 1\n"
        "@node\n"
        "def f(n):\n"
        "    return helper(n)\n"
        "with Workflow('deco') as wf:\n"
        "    out = f(10)\n"
        "if __name__ == '__main__':\n"
        "    r = wf.execute()\n"
        "    print('RESULT', r[out], r.executed)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    plain = [sys.executable, "flow.py"]
    cli = [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--quiet"]
    outs = []
    for command in (plain, cli, plain):
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout.strip().splitlines()[-1])
    assert outs[0] == "RESULT 22 1"
    assert "0 executed, 1 cached" in outs[1]
    assert outs[2] == "RESULT 22 0"


def test_celery_worker_without_a_broker_says_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ETHEREALFABRIC_CELERY_BROKER_URL", raising=False)
    code, _, err = invoke("celery-worker", "--concurrency", "1")
    assert code == 2
    assert "ETHEREALFABRIC_CELERY_BROKER_URL" in err


def _ef(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh process, in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


FILES_FLOW = """
from pathlib import Path
from etherealfabric import File, Workflow, node

@node
def load(f):
    return open(f).read()

@node
def check(text):
    if (Path(__file__).parent / "fail").exists():
        raise RuntimeError("asked to fail")
    return text.upper()

with Workflow("files") as wf:
    check(load(File("data.csv")))
"""


def test_resume_from_another_folder_reads_the_files_of_the_run(tmp_path: Path) -> None:
    """``File("data.csv")`` resolves against the folder the run was started in, so a resume
    typed elsewhere goes there first (it read the other folder's file, or failed on it)."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    (proj / "flow.py").write_text(FILES_FLOW)
    (proj / "data.csv").write_text("a,b\n")
    (elsewhere / "data.csv").write_text("not the data\n")
    (proj / "fail").write_text("")
    failed = _ef(proj, "run", "flow.py", "--json")
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stdout)["run_id"]
    (proj / "fail").unlink()
    home = os.path.relpath(proj / ".etherealfabric", elsewhere)  # a relative --home stays right
    done = _ef(elsewhere, "resume", run_id, "--home", home, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["nodes"] == {"load": "cached", "check": "succeeded"}
    assert f"resuming run {run_id} in {proj}, the folder it was started in" in done.stderr
    value = _ef(elsewhere, "cat", summary["run_id"], "check", "--home", home)
    assert value.stdout.strip() == repr("A,B\n")
    assert not (elsewhere / ".etherealfabric").exists()


def test_resume_of_a_run_whose_folder_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    start = tmp_path / "start"
    start.mkdir()
    (tmp_path / "flow.py").write_text(FILES_FLOW)
    (start / "data.csv").write_text("a,b\n")
    (tmp_path / "fail").write_text("")
    home = str(tmp_path / "home")
    failed = _ef(start, "run", "../flow.py", "--home", home, "--json")
    run_id = json.loads(failed.stdout)["run_id"]
    (start / "data.csv").unlink()
    start.rmdir()
    done = _ef(tmp_path, "resume", run_id, "--home", home)
    assert done.returncode == 2
    assert f"run {run_id} was started in {start}, which no longer exists" in done.stderr
    runs = json.loads(_ef(tmp_path, "runs", "--home", home, "--json").stdout)
    assert [r["id"] for r in runs] == [run_id]  # nothing started


def test_a_script_that_executes_when_imported_is_named_by_run(tmp_path: Path) -> None:
    """The seed's example calls workflow.execute() at module level: `etherealfabric run`
    imports the file (one run), then runs it (a second, cached): the user is told why, with
    the line and the fix."""
    (tmp_path / "script.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\n"
        "def one():\n"
        "    return 1\n"
        "with Workflow('script') as wf:\n"
        "    one()\n"
        "results = wf.execute()\n"
    )
    done = _ef(tmp_path, "run", "script.py")
    assert done.returncode == 0, done.stderr
    assert "importing script.py executed workflow 'script' (at script.py:7)" in done.stderr
    assert '__name__ == "__main__"' in done.stderr
    assert "0 executed, 1 cached" in done.stdout  # the import's run computed it

    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        (tmp_path / "script.py")
        .read_text()
        .replace("results = wf.execute()", "if __name__ == '__main__':\n    wf.execute()")
    )
    done = _ef(tmp_path, "run", "guarded.py")
    assert done.returncode == 0 and "note:" not in done.stderr, done.stderr


def test_quiet_hides_the_engines_info_lines(tmp_path: Path) -> None:
    """--quiet: only failures and the summary. Two calls of one node with the same key log an
    INFO line ("waiting for it") that a plain run shows and a quiet one does not."""
    (tmp_path / "flow.py").write_text(
        "import time\n"
        "from etherealfabric import Workflow, node\n"
        "@node\n"
        "def a():\n"
        "    time.sleep(0.5)\n"
        "    return 1\n"
        "@node\n"
        "def b(x, y):\n"
        "    return x + y\n"
        "with Workflow('same') as wf:\n"
        "    b(a(), a())\n"
    )
    done = _ef(tmp_path, "run", "flow.py", "--home", "plain")
    assert done.returncode == 0 and "waiting for it" in done.stderr, done.stderr
    done = _ef(tmp_path, "run", "flow.py", "--quiet", "--home", "quiet")
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stderr and "waiting for it" not in done.stderr, done.stderr
    assert "2 executed, 1 cached" in done.stdout


def _every_command() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(command: click.Command, path: str) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}".strip())

    walk(main, "")
    return found


def test_every_command_has_a_one_line_summary_and_every_option_a_help() -> None:
    """`etherealfabric --help` cut most summaries with '...' (`cat  Print NODE's result in run
    RUN_ID (its OUTPUT, for a...`); `runs --limit` and `celery-worker`'s options had no help."""
    for path, command in _every_command():
        if path:
            summary = command.get_short_help_str(limit=1000)
            assert summary and summary == command.get_short_help_str(limit=55), path
            assert not summary.endswith("..."), (path, summary)
        for param in command.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"{path} {param.opts[0]} has no help"
    for group in ([], ["cache"]):
        code, out, _ = invoke(*group, "--help")
        assert code == 0
        commands = out.split("Commands:\n")[1].splitlines()
        assert commands and all(not line.endswith("...") for line in commands), out


def test_celery_worker_passes_its_options_and_any_other_to_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import etherealfabric.backends._celery as celery_backend

    pytest.importorskip("celery")
    seen: list[list[str]] = []
    monkeypatch.setattr(celery_backend, "main", lambda argv: seen.append(argv) or 0)
    code, _, _ = invoke("celery-worker", "-c", "2", "--loglevel", "DEBUG", "--pool", "solo",
                        "--broker-url", "redis://h:1/0")  # fmt: skip
    assert code == 0
    assert seen == [
        ["worker", "--concurrency=2", "--loglevel=DEBUG", "--broker-url=redis://h:1/0",
         "--pool", "solo"]
    ]  # fmt: skip
