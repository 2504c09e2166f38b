"""User mistakes get one clear line (exit 2 on the command line), never a crash or a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli_runner
from etherealfabric import DefinitionError, Node, Workflow, node
from etherealfabric.cli import main
from etherealfabric.errors import HashingError


@node
def total(values: object) -> int:
    return 1


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output  # stdout and stderr, as a terminal shows them


def _ef(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh process, in ``cwd``, with ``env`` added (wide)."""
    return cli_runner.ef(cwd, *args, **{"COLUMNS": "200", **env})


FLOW = """
from etherealfabric import Workflow, node

@node
def numbers(n):
    return list(range(n))

@node
def total(xs, scale):
    return sum(xs) * scale

with Workflow("sweep", params={"n": 3, "scale": 1.0}) as wf:
    total(numbers(wf.params.n), wf.params.scale)
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from etherealfabric import Workflow\nwf = Workflow('x'\n", "broken.py:2: syntax error"),
        (
            "import no_such_module_xyz\n",
            "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        ),
        ("x = 1\ny = 1 / 0\n", "ZeroDivisionError: division by zero (at broken.py:2)"),
    ],
)
def test_a_broken_workflow_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text(source)
    code, output = _cli("run", "broken.py")
    assert code == 2
    assert expected in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_traceback_flag_shows_the_original_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("def f():\n    return 1 / 0\n\nf()\n")
    code, output = _cli("--traceback", "run", "broken.py")
    assert code == 2
    assert "Traceback" in output and "ZeroDivisionError" in output
    assert output.strip().splitlines()[-1].startswith("error: broken.py: importing it raised")


def test_an_error_in_a_module_the_workflow_imports_names_that_module_s_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpers.py").write_text("import json\nX = 1 / 0\n")
    (tmp_path / "flow.py").write_text("from etherealfabric import Workflow\nimport helpers\n")
    code, output = _cli("run", "flow.py")
    assert code == 2
    assert output.strip() == (
        "error: flow.py: importing it raised ZeroDivisionError: division by zero "
        "(at helpers.py:2, from flow.py:2)"
    )
    # an error inside a library (json) the file calls still names the file's own line
    (tmp_path / "flow.py").write_text("import json\n\njson.loads('{')\n")
    code, output = _cli("run", "flow.py")
    assert code == 2 and output.strip().endswith("(at flow.py:3)"), output


def test_a_file_without_a_workflow_says_how_to_name_the_function_that_builds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n\n@node\ndef a():\n    return 1\n\n"
        "def make():\n    with Workflow('m') as wf:\n        a()\n    return wf\n"
    )
    code, output = _cli("run", "flow.py")
    assert code == 2 and len(output.strip().splitlines()) == 1
    assert "flow.py defines no Workflow object at module level" in output
    assert "flow.py:FUNCTION (functions in it: make)" in output
    assert _cli("run", "flow.py:make")[0] == 0


def test_a_name_that_is_not_a_workflow_lists_the_workflows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flows.py").write_text(
        textwrap.dedent(
            """
            from etherealfabric import Workflow
            train = Workflow("train")
            score = Workflow("score")
            """
        )
    )
    code, output = _cli("run", "flows.py:nope")
    assert code == 2
    assert "flows.py:score" in output and "flows.py:train" in output


@pytest.mark.parametrize("name", ["\x1b[31mred", "tab\there", "bell\x07", "new\nline"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(DefinitionError, match="control characters"):
        Workflow(name)

    class Step(Node):
        def __init__(self) -> None:
            super().__init__(name=name)

    with pytest.raises(DefinitionError, match="control characters"):
        Step()


def test_a_parameter_that_contains_itself_is_a_clear_error(tmp_path: Path) -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with (
        pytest.raises(DefinitionError, match=r"node 'total': an input is nested too deeply"),
        Workflow("loops", home=tmp_path),
    ):
        total(loop)


def test_a_parameter_nested_too_deeply_is_a_clear_error(tmp_path: Path) -> None:
    deep: object = 0
    for _ in range(600):  # walks fine, but far too deep for the hasher's frames
        deep = [deep]
    with Workflow("deep", home=tmp_path) as wf:
        total(deep)
    with pytest.raises((DefinitionError, HashingError), match="nested too deeply"):
        wf.execute(raise_on_error=True)


def test_run_ids_are_matched_literally_and_an_ambiguous_prefix_names_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Workflow("ids") as wf:
        total([1])
    first = wf.execute(home=tmp_path / "h").run_id
    second = wf.execute(home=tmp_path / "h").run_id
    for pattern in ("%", "_", first[:4] + "%", "_" * len(first)):
        code, output = _cli("show", pattern, "--home", str(tmp_path / "h"))
        assert code == 2, output
        assert "no run" in output.lower() or "not found" in output.lower(), output
    prefix = os.path.commonprefix([first, second])  # noqa: RUF071 (strings: char by char)
    assert prefix  # both ids start with the date
    code, output = _cli("show", prefix, "--home", str(tmp_path / "h"))
    assert code == 2
    assert "ambiguous" in output and first in output and second in output
    assert len(output.strip().splitlines()) == 1
    code, output = _cli("show", first, "--home", str(tmp_path / "h"))
    assert code == 0, output


def test_a_syntax_error_in_an_imported_module_names_that_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpers.py").write_text("x = 1\n\ndef broken(:\n    pass\n")
    (tmp_path / "flow.py").write_text("import helpers\n")
    code, output = _cli("run", "flow.py")
    assert code == 2
    assert "helpers.py:3: syntax error" in output and "flow.py" not in output


def test_a_project_module_named_like_a_standard_one_does_not_break_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's modules imported after the workflow file (whose folder comes first on
    sys.path) do not import a standard module the project shadows (statistics.py)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    (tmp_path / "statistics.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            from etherealfabric import Workflow, node
            import statistics

            @node
            def avg():
                return statistics.mean([1, 2, 3])

            with Workflow("shadow") as wf:
                avg()
            """
        )
    )
    saved = __import__("sys").modules.pop("statistics", None)
    try:
        assert _cli("run", "flow.py")[0] == 0
        code, output = _cli("plan", "flow.py")
    finally:
        __import__("sys").modules.pop("statistics", None)
        if saved is not None:
            __import__("sys").modules["statistics"] = saved
    assert code == 0, output
    assert "avg" in output


def test_show_with_an_unknown_node_and_runs_with_an_unknown_status_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "home"))
    with Workflow("known") as wf:
        total([1, 2])
    run_id = wf.execute().run_id
    code, output = _cli("show", run_id, "totl")
    assert code == 2 and "has no node 'totl' (did you mean 'total'?); its nodes: total" in output
    assert _cli("show", run_id, "total")[0] == 0
    code, output = _cli("runs", "--status", "bogus")
    assert code == 2 and "bogus" in output and "succeeded" in output


def test_a_home_that_is_a_file_is_a_config_error_for_every_command(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "home").write_text("my notes\n")
    commands = [
        ["run", "flow.py"], ["resume", "r1"], ["plan", "flow.py"], ["runs"], ["show", "r1"],
        ["status"], ["explain", "r1", "total"], ["logs", "r1", "total"],
        ["cat", "r1", "total"], ["graph", "flow.py", "--run", "r1"], ["cache", "gc"],
        ["cache", "verify"], ["cache", "ls"], ["cache", "du"], ["cache", "pin"],
        ["cache", "forget", "total"], ["cache", "push", "--dry-run"],
    ]  # fmt: skip
    for args in commands:
        done = _ef(tmp_path, *args, ETHEREALFABRIC_HOME=str(tmp_path / "home"))
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr, args
        assert done.stderr.strip().splitlines() == [
            f"error: ETHEREALFABRIC_HOME={str(tmp_path / 'home')!r} is a file; the home must be "
            "a folder (it holds the journal and the local store): point ETHEREALFABRIC_HOME at "
            "a folder (it is created if missing)"
        ], args
    assert (tmp_path / "home").read_text() == "my notes\n"  # untouched
    done = _ef(tmp_path, "runs", ETHEREALFABRIC_HOME=str(tmp_path / "home" / "sub"))
    assert done.returncode == 2 and f"is under {tmp_path / 'home'}, which is a file" in done.stderr
    (tmp_path / ".etherealfabric").write_text("")
    done = _ef(tmp_path, "run", "flow.py")
    assert done.returncode == 2
    assert "the default home" in done.stderr and "ETHEREALFABRIC_HOME is not set" in done.stderr


def test_a_bad_package_versions_mode_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    bad = {"ETHEREALFABRIC_PACKAGE_VERSIONS": "patch"}
    done = _ef(tmp_path, "run", "flow.py", **bad)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: ETHEREALFABRIC_PACKAGE_VERSIONS='patch' is not a package-version mode; "
        "use one of full, minor, off"
    ]
    assert "FAILED" not in done.stderr and not (tmp_path / ".etherealfabric").exists()
    assert _ef(tmp_path, "run", "flow.py", "-p", "n=4").returncode == 0
    rows = _ef(tmp_path, "runs", "--json").stdout
    for args in (["run", "flow.py"], ["plan", "flow.py"]):
        done = _ef(tmp_path, *args, **bad)
        assert done.returncode == 2 and "'patch'" in done.stderr, (args, done.stderr)
    assert _ef(tmp_path, "runs", "--json").stdout == rows  # no run row was added


def _strict_json(text: str) -> object:
    """``text`` parsed as JSON proper: ``NaN`` and ``Infinity`` are refused."""

    def refuse(word: str) -> object:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_a_parameter_that_is_not_a_finite_number_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    done = _ef(tmp_path, "run", "flow.py", "-p", f"scale={text}")
    assert done.returncode == 2, done.stderr
    assert "parameter 'scale' takes a float (default 1.0)" in done.stderr
    assert "is not a finite number" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / ".etherealfabric").exists()  # refused before anything ran
    (tmp_path / "params.yaml").write_text(f"scale: {'.nan' if 'n' in text.lower() else '.inf'}\n")
    done = _ef(tmp_path, "plan", "flow.py", "--params", "params.yaml")
    assert done.returncode == 2 and "is not a finite number" in done.stderr, done.stderr


def test_cat_json_prints_valid_json_when_a_result_holds_nan(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from etherealfabric import Workflow, node

            @node
            def scores():
                return {"mean": float("nan"), "max": float("inf"), "xs": [1.0, float("-inf")]}

            @node
            def array():
                return np.array([1.0, np.nan])

            with Workflow("nans") as wf:
                scores()
                array()
            """
        )
    )
    run = _ef(tmp_path, "run", "flow.py", "--json")
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout)["run_id"]
    done = _ef(tmp_path, "cat", run_id, "scores", "--json")
    assert done.returncode == 0, done.stderr
    assert _strict_json(done.stdout) == {"mean": None, "max": None, "xs": [1.0, None]}
    done = _ef(tmp_path, "cat", run_id, "array", "--json")
    assert _strict_json(done.stdout) == [1.0, None]
    done = _ef(tmp_path, "cat", run_id, "scores", "-o", "scores.json")
    assert done.returncode == 0, done.stderr
    assert _strict_json((tmp_path / "scores.json").read_text())["mean"] is None
    done = _ef(tmp_path, "cat", run_id, "scores")  # the text view is the value's repr
    assert "'mean': nan" in done.stdout
    # an array as .csv is a column of numbers, not the stored .npy bytes; a dict is no table
    done = _ef(tmp_path, "cat", run_id, "array", "-o", "array.csv")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "array.csv").read_text().split() == ["1.0", "nan"]
    for name in ("scores.csv", "scores.parquet"):
        done = _ef(tmp_path, "cat", run_id, "scores", "-o", name)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert "scores.result is a dict, not a data frame" in done.stderr
        assert not (tmp_path / name).exists()


def test_cat_of_a_result_gc_removed_says_so_and_how_to_get_it_back(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    first = _ef(tmp_path, "run", "flow.py", "-p", "n=40000", "-p", "scale=0.5", "--json")
    run_id = json.loads(first.stdout)["run_id"]
    assert _ef(tmp_path, "cat", run_id, "total").stdout.strip() == str(sum(range(40000)) * 0.5)
    for n in (5, 6):
        assert _ef(tmp_path, "run", "flow.py", "-p", f"n={n}").returncode == 0
    gc = _ef(tmp_path, "cache", "gc", "--keep-runs", "1", "--older-than", "0")
    assert gc.returncode == 0, gc.stderr
    command = f"etherealfabric run {tmp_path / 'flow.py'} --node numbers -p n=40000 -p scale=0.5"
    done = _ef(tmp_path, "cat", run_id, "numbers")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert (
        f"the result of node 'numbers' in run {run_id} is no longer in the store (dropped by "
        f"`etherealfabric cache forget` or `cache gc`, or lost); recompute it with `{command}`, "
        "then cat the new run"
    ) in done.stderr
    words = command.split()[1:]  # the command it gives works
    again = _ef(tmp_path, *words, "--json")
    assert again.returncode == 0, again.stderr
    new_run = json.loads(again.stdout)["run_id"]
    numbers = json.loads(_ef(tmp_path, "cat", new_run, "numbers", "--json").stdout)
    assert numbers == list(range(40000))
    for path in (tmp_path / ".etherealfabric" / "objects").rglob("*"):  # bytes lost: the same
        if path.is_file():
            path.unlink()
    done = _ef(tmp_path, "cat", new_run, "numbers")
    assert done.returncode == 2 and "is no longer in the store" in done.stderr, done.stderr
    assert "--node numbers -p n=40000" in done.stderr and "is missing" in done.stderr


def test_cat_of_a_result_damaged_in_place_gives_a_command_that_repairs_it(tmp_path: Path) -> None:
    """A stored object with a flipped byte (same size): the command cat gives must compute it
    again and write it back (a plain ``--node`` run took it from the cache, and the store kept
    the damaged copy of the same size when its content was written again)."""
    (tmp_path / "flow.py").write_text(FLOW)
    first = _ef(tmp_path, "run", "flow.py", "-p", "n=40000", "-p", "scale=0.5", "--json")
    run_id = json.loads(first.stdout)["run_id"]
    objects = [p for p in (tmp_path / ".etherealfabric" / "objects").rglob("*") if p.is_file()]
    assert objects
    for path in objects:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    done = _ef(tmp_path, "cat", run_id, "numbers")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "is corrupt" in done.stderr and "cache verify --fix" in done.stderr, done.stderr
    command = done.stderr.split("recompute it with `")[1].split("`")[0]
    assert command.endswith("--force numbers") or "--force numbers" in command, command
    again = _ef(tmp_path, *command.split()[1:], "--json")
    assert again.returncode == 0, again.stderr
    new_run = json.loads(again.stdout)["run_id"]
    numbers = _ef(tmp_path, "cat", new_run, "numbers", "--json")
    assert numbers.returncode == 0, numbers.stderr
    assert json.loads(numbers.stdout) == list(range(40000))
    verify = _ef(tmp_path, "cache", "verify")
    assert verify.returncode == 0 and "0 problem(s)" in verify.stdout, verify.stdout + verify.stderr


def test_cat_of_frames_with_columns_json_and_parquet_cannot_hold(tmp_path: Path) -> None:
    """Periods print as text in JSON (said on stderr); a frame pyarrow cannot write (complex
    numbers) is a one-line error naming the node and the file, and leaves no file behind."""
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import pandas as pd
            from etherealfabric import Workflow, node

            @node
            def monthly():
                days = pd.Series(pd.to_datetime(["2026-01-05", "2026-02-07"]))
                return pd.DataFrame({"month": days.dt.to_period("M"), "n": [1, 2]})

            @node
            def spectrum():
                return pd.DataFrame({"z": [1 + 2j, 3 - 1j]})

            with Workflow("odd-columns") as wf:
                monthly()
                spectrum()
            """
        )
    )
    run = _ef(tmp_path, "run", "flow.py")
    assert run.returncode == 0, run.stderr
    done = _ef(tmp_path, "cat", "latest", "monthly", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"month": "2026-01", "n": 1}, {"month": "2026-02", "n": 2}]
    assert "columns month printed as text" in done.stderr
    done = _ef(tmp_path, "cat", "latest", "spectrum", "-o", "z.parquet")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write spectrum.result to z.parquet as .parquet" in done.stderr
    assert not (tmp_path / "z.parquet").exists()
    done = _ef(tmp_path, "cat", "latest", "spectrum", "-o", "z.csv")  # another format works
    assert done.returncode == 0 and "(1+2j)" in (tmp_path / "z.csv").read_text()


def test_a_home_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    """Like a home on a read-only mount: the folder cannot be made (here: /proc takes no new
    folders, even for root), so the run stops before it starts, with one line and exit 2."""
    (tmp_path / "flow.py").write_text(FLOW)
    home = "/proc/etherealfabric-no-such/home"
    done = _ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_HOME=home)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot create the home {home} (No such file or directory): point "
        "ETHEREALFABRIC_HOME at a folder this user can write"
    ]


def test_a_store_that_connects_when_opened_and_does_not_answer_is_one_line(
    tmp_path: Path,
) -> None:
    """fsspec's ftp:// file system connects when it is made: a refused connection was a raw
    traceback with exit 1."""
    (tmp_path / "flow.py").write_text(FLOW)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_STORE=f"ftp://127.0.0.1:{port}/team")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot connect to the store ftp://127.0.0.1:{port}/team" in done.stderr
    assert "ConnectionRefusedError" in done.stderr


@node
def breaks(values: object) -> int:
    raise ValueError("broken")


def test_a_node_a_failed_run_never_had_is_not_called_a_node_it_did_not_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a failed run's end writes a row for every node (cancelled, upstream failed): a name
    # none of them has is no node of the run, not one to get with `resume`
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / "home"))
    with Workflow("breaking") as wf:
        total(breaks([1, 2]))
    run_id = wf.execute(raise_on_error=False).run_id
    for command in ("show", "logs"):
        code, output = _cli(command, run_id, "nope")
        assert code == 2, output
        assert "has no node 'nope'; its nodes: breaks, total" in output, output
        assert "ended before" not in output and "resume" not in output, output
