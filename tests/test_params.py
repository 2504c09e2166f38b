"""Workflow parameters (issue 10): declared with defaults, referenced by nodes, set per run.

Through the API and through the CLI in fresh processes, bad inputs included: a parameter keys
exactly the nodes that read it, is recorded on the run, shown by ``show``, diffed by
``explain``, and an unknown or mistyped one is an error naming the closest.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from etherealfabric import (
    DefinitionError,
    File,
    Node,
    Param,
    ParameterError,
    RunFailedError,
    UnknownParameterError,
    Workflow,
    node,
)
from etherealfabric.journal import Journal
from etherealfabric.observe._explain import explain_node

PIPELINE = """
import os
from etherealfabric import Node, Workflow, node


@node
def load(n):
    return list(range(n))


@node
def fit(xs, C):
    if os.path.exists("fail-fit"):
        raise RuntimeError("fit was told to fail")
    return sum(xs) * C


@node
def report(score, model):
    return {"score": score, "model": model}


class Scale(Node):
    def __init__(self, x, factor):
        super().__init__()
        self.x = x
        self.factor = factor
        self.outputs = ["y"]

    def run(self):
        return {"y": len(self.x) * self.factor}


with Workflow("train", params={"n_rows": 100, "model": {"C": 1.0, "kernel": "rbf"}}) as wf:
    data = load(wf.params.n_rows)
    score = fit(data, C=wf.params.model.C)
    summary = report(score, wf.params.model)
    wf.add_node(Scale(data, wf.params.model.C))
"""


# -- the API ----------------------------------------------------------------------------------
@node
def load(n: int) -> list[int]:
    return list(range(n))


@node
def fit(xs: list[int], C: float) -> float:
    return sum(xs) * C


@node
def report(score: float, model: dict[str, Any]) -> dict[str, Any]:
    return {"score": score, "model": model}


@node
def echo(value: Any) -> Any:
    return value


class Scale(Node):
    def __init__(self, x: Any, factor: Any) -> None:
        super().__init__()
        self.x = x
        self.factor = factor
        self.outputs = ["y"]

    def run(self) -> dict[str, Any]:
        return {"y": len(self.x) * self.factor}


def _workflow() -> tuple[Workflow, dict[str, Any]]:
    with Workflow("train", params={"n_rows": 100, "model": {"C": 1.0, "kernel": "rbf"}}) as wf:
        data = load(wf.params.n_rows)
        score = fit(data, C=wf.params.model.C)
        summary = report(score, wf.params.model)
        scale = Scale(data, factor=wf.params.model.C)
        wf.add_node(scale)
    return wf, {"score": score, "summary": summary, "scale": scale}


def _ran(results: Any) -> set[str]:
    return {n for n, s in results.statuses.items() if s == "succeeded"}


def test_nodes_get_the_defaults_then_the_values_given() -> None:
    wf, refs = _workflow()
    first = wf.execute()
    assert first[refs["score"]] == 4950.0
    assert first[refs["summary"]] == {"score": 4950.0, "model": {"C": 1.0, "kernel": "rbf"}}
    assert first[refs["scale"]]["y"] == 100.0
    second = wf.execute(params={"model.C": 0.5, "n_rows": 10})
    assert second[refs["score"]] == 22.5
    assert second[refs["scale"]]["y"] == 5.0


def test_a_parameter_reruns_exactly_the_nodes_that_read_it() -> None:
    wf, _ = _workflow()
    assert _ran(wf.execute()) == {"load", "fit", "report", "Scale"}
    assert _ran(wf.execute(params={"model.C": 0.5})) == {"fit", "report", "Scale"}
    assert _ran(wf.execute(params={"model": {"kernel": "linear", "C": 0.5}})) == {"report"}
    assert _ran(wf.execute(params={"model": {"C": 0.5}, "model.kernel": "linear"})) == set()


def test_an_int_for_a_float_parameter_is_the_same_value() -> None:
    wf, refs = _workflow()
    wf.execute(params={"model.C": 2.0})
    again = wf.execute(params={"model.C": 2})
    assert again.executed == 0
    assert isinstance(again[refs["score"]], float)


def test_unknown_and_mistyped_parameters_are_errors_naming_the_closest() -> None:
    wf, _ = _workflow()
    with pytest.raises(UnknownParameterError, match=r"'model\.c'.*did you mean 'model\.C'"):
        wf.execute(params={"model.c": 0.5})
    with pytest.raises(UnknownParameterError, match="did you mean 'n_rows'"):
        wf.execute(params={"nrows": 5})
    with pytest.raises(ParameterError, match=r"'n_rows' takes an int.*got str '5'"):
        wf.execute(params={"n_rows": "5"})
    with pytest.raises(ParameterError, match="'n_rows' takes an int"):
        wf.execute(params={"n_rows": True})
    with pytest.raises(ParameterError, match="is a group"):
        wf.execute(params={"model": 3})
    with pytest.raises(UnknownParameterError, match="did you mean 'n_rows'") as info:
        _ = wf.params.n_row
    assert isinstance(info.value, AttributeError) and info.value.suggestion == "n_rows"
    with pytest.raises(ParameterError, match="not a group"):
        _ = wf.params.n_rows.x
    assert not os.path.exists(".etherealfabric/journal.db")  # nothing ran


def test_declarations_are_checked() -> None:
    with pytest.raises(ParameterError, match="Param\\(None, type=int\\)"):
        Workflow("w", params={"seed": None})
    with pytest.raises(ParameterError, match="parameters are bool, int, float"):
        Workflow("w", params={"when": object()})
    with pytest.raises(ParameterError, match="identifiers"):
        Workflow("w", params={"two words": 1})
    with pytest.raises(ParameterError, match="'lr' takes a float"):
        Workflow("w", params={"lr": Param("fast", type=float)})


def test_optional_list_and_dict_parameters() -> None:
    declared = {
        "seed": Param(None, type=int, help="random seed"),
        "cols": ["a", "b"],
        "extra": Param({"k": 1}, type=dict),
    }
    with Workflow("w", params=declared) as wf:
        out = echo([wf.params.seed, wf.params.cols, wf.params.extra])
    assert wf.execute()[out] == [None, ["a", "b"], {"k": 1}]
    assert wf.execute(params={"seed": 3, "cols": ("x",)})[out] == [3, ["x"], {"k": 1}]
    with pytest.raises(ParameterError, match="'seed' takes an int or null"):
        wf.execute(params={"seed": 1.5})


def test_a_reference_has_no_value_while_defining() -> None:
    wf = Workflow("w", params={"debug": False})
    with pytest.raises(TypeError, match="no value while the workflow is defined"):
        bool(wf.params.debug)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(wf.params.debug)
    with pytest.raises(TypeError):
        iter(wf.params)
    assert "debug" in dir(wf.params)


def test_a_reference_made_into_text_or_a_path_says_so_instead_of_its_repr() -> None:
    """``f"run-{wf.params.tag}"`` was "run-<param tag: ...>", silently (and -p tag=b then a
    cache hit); ``File(wf.params.path)`` a bare ``expected str ... not ParamRef``; a
    ``writes=`` template naming a parameter was filled with the repr and never written."""
    wf = Workflow("w", params={"tag": "a", "path": "a.csv", "region": "north"})
    for make in (lambda: f"run-{wf.params.tag}", lambda: str(wf.params.tag)):
        with pytest.raises(TypeError, match=r"cannot be made into text.*inside the node"):
            make()
    with pytest.raises(TypeError, match=r"no path yet .*File or Path inside it"):
        File(wf.params.path)
    with pytest.raises(TypeError, match="no path yet"):
        os.fspath(wf.params.path)
    assert repr(wf.params.tag) == "<param tag: a str (default 'a')>"  # (messages still name it)

    class Report(Node):
        writes: ClassVar[list[str]] = ["reports/{region}.txt"]

        def __init__(self, region: Any) -> None:
            super().__init__()
            self.region = region

        def run(self) -> dict[str, Any]:
            return {}

    with wf:
        Report(wf.params.region)
    with pytest.raises(DefinitionError, match=r"names a workflow parameter"):
        wf.execute()


def test_a_parameter_of_another_workflow_is_refused() -> None:
    other = Workflow("other", params={"x": 1})
    with Workflow("mine", params={"x": 1}) as wf:
        echo(other.params.x)
    with pytest.raises(ParameterError, match="of workflow 'other'"):
        wf.execute()


def test_the_values_are_recorded_and_explain_names_the_parameter() -> None:
    wf, _ = _workflow()
    wf.execute()
    second = wf.execute(params={"model.C": 0.5})
    with Journal(Path(".etherealfabric/journal.db")) as journal:
        row = journal.get_run(second.run_id)
        recorded = json.loads(row["params"])["workflow_params"]
        assert recorded == {"n_rows": 100, "model.C": 0.5, "model.kernel": "rbf"}
        why = explain_node(journal, second.run_id, "fit")
    assert [str(c) for c in why.changes] == ["param model.C: 1.0 → 0.5"]


def test_plan_takes_the_parameters() -> None:
    wf, _ = _workflow()
    wf.execute()
    planned = wf.plan(params={"model.C": 0.5})
    assert set(planned.to_run) == {"fit", "report", "Scale"}
    assert "param model.C: 1.0 → 0.5" in next(n for n in planned.nodes if n.node == "fit").reason
    # printed, as the tutorial does: what `etherealfabric plan` prints, not a dataclass dump
    text = str(planned).splitlines()
    assert text[0] == f"plan of {wf.name!r}: {len(planned.cached)} cached, 3 will run"
    fit = next(line for line in text if line.split()[0] == "fit")
    assert "will run" in fit and "param model.C: 1.0 → 0.5" in fit
    assert len(text) == 1 + len(planned.nodes) and "PlannedNode" not in repr(planned)


def test_resume_reuses_the_recorded_values(tmp_path: Path) -> None:
    wf, refs = _workflow()
    (tmp_path / "fail-fit").touch()

    @node
    def fragile(x: float) -> float:
        if (tmp_path / "fail-fit").exists():
            raise RuntimeError("told to fail")
        return x

    with wf:
        last = fragile(refs["score"])
    with pytest.raises(RunFailedError) as info:
        wf.execute(params={"model.C": 0.5})
    (tmp_path / "fail-fit").unlink()
    resumed = wf.execute(resume=info.value.results.run_id)
    assert resumed[last] == 2475.0  # with C=0.5, not the default


# -- the command line, in fresh processes ------------------------------------------------------
def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run(root: Path, *args: str, code: int = 0) -> dict[str, Any]:
    out = cli(root, "run", "wf.py", "--json", *args)
    assert out.returncode == code, out.stderr
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def _succeeded(summary: dict[str, Any]) -> set[str]:
    return {n for n, s in summary["nodes"].items() if s == "succeeded"}


def test_cli_sets_parameters_and_reruns_only_their_readers(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    assert _succeeded(_run(tmp_path)) == {"load", "fit", "report", "Scale"}
    assert _succeeded(_run(tmp_path, "-p", "model.C=0.5")) == {"fit", "report", "Scale"}
    assert _succeeded(_run(tmp_path, "--param", "model.C=0.5")) == set()
    assert _succeeded(_run(tmp_path, "model.C=0.5", "n_rows=100")) == set()  # NAME=VALUE
    changed = _run(tmp_path, "-p", "model.C=0.5", "-p", "model.kernel=linear")
    assert _succeeded(changed) == {"report"}

    show = cli(tmp_path, "show", changed["run_id"])
    assert show.returncode == 0, show.stderr
    assert 'params: n_rows=100, model.C=0.5, model.kernel="linear"' in show.stdout
    shown = json.loads(cli(tmp_path, "show", changed["run_id"], "--json").stdout)
    assert shown["params"] == {"n_rows": 100, "model.C": 0.5, "model.kernel": "linear"}

    second = json.loads(cli(tmp_path, "runs", "--json").stdout)[3]["id"]
    explain = cli(tmp_path, "explain", second, "fit")
    assert explain.returncode == 0, explain.stderr
    assert "param model.C: 1.0 → 0.5" in explain.stdout
    assert "param C:" not in explain.stdout  # said once, by the parameter's name


def test_a_params_file_saved_as_utf16_or_with_a_bom_is_read(tmp_path: Path) -> None:
    """PowerShell and Notepad save UTF-16 (or UTF-8 with a BOM): a raw UnicodeDecodeError
    traceback before."""
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "utf16.yaml").write_bytes("model:\n  C: 1e-3\nn_rows: 10\n".encode("utf-16"))
    (tmp_path / "bom.yaml").write_bytes("model:\n  C: 1e-3\nn_rows: 10\n".encode("utf-8-sig"))
    first = _run(tmp_path, "--params", "utf16.yaml")
    values = json.loads(cli(tmp_path, "show", first["run_id"], "--json").stdout)["params"]
    assert values["n_rows"] == 10 and values["model.C"] == 0.001
    assert _succeeded(_run(tmp_path, "--params", "bom.yaml")) == set()  # the same values


def test_cli_reads_params_files_and_options_win(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "params.yaml").write_text("model:\n  C: 1e-3\nn_rows: 10\n")
    (tmp_path / "params.toml").write_text('n_rows = 10\n[model]\nC = 0.001\nkernel = "rbf"\n')
    from_yaml = _run(tmp_path, "--params", "params.yaml")
    assert _succeeded(from_yaml) == {"load", "fit", "report", "Scale"}
    assert _succeeded(_run(tmp_path, "--params", "params.toml")) == set()  # the same values
    both = _run(tmp_path, "--params", "params.yaml", "-p", "n_rows=20")
    values = json.loads(cli(tmp_path, "show", both["run_id"], "--json").stdout)["params"]
    assert values == {"n_rows": 20, "model.C": 0.001, "model.kernel": "rbf"}


BAD_INPUTS = [
    (["-p", "model.c=0.5"], "has no parameter 'model.c'; did you mean 'model.C'?"),
    (["-p", "nrows=5"], "did you mean 'n_rows'?"),
    (["-p", "n_rows=many"], "parameter 'n_rows' takes an int (default 100); 'many' is not an int"),
    (["-p", "model.C=high"], "parameter 'model.C' takes a float"),
    (["-p", "n_rows"], "a parameter is set as NAME=VALUE"),
    (["-p", "model=3"], "parameter 'model' is a group; set its members"),
    (["--params", "missing.yaml"], "params file missing.yaml: cannot read it"),
    (["--params", "broken.yaml"], "params file broken.yaml: not valid YAML"),
    (["--params", "broken.toml"], "params file broken.toml: not valid TOML"),
    (["--params", "params.ini"], "expected a .yaml, .yml, .toml or .json file"),
    (["--params", "typo.yaml"], "no parameter 'model.kernal'; did you mean 'model.kernel'?"),
    (["--params", "list.json"], "expected a mapping of parameter names"),
    (["--params", "bomb.yaml"], "values once its YAML aliases are expanded"),
    (["--params", "latin1.yaml"], "params file latin1.yaml: not UTF-8 text (byte 0xe9 at offset"),
    (["--params", "binary.json"], "params file binary.json: not UTF-8 text"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_cli_bad_parameters_are_one_line_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "broken.yaml").write_text("n_rows: [1\n")
    (tmp_path / "broken.toml").write_text("n_rows = \n")
    (tmp_path / "params.ini").write_text("[x]\n")
    (tmp_path / "typo.yaml").write_text("model:\n  kernal: linear\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    # nine lists of nine aliases of the one before: 9**9 values once expanded (it hung)
    levels = ["&l0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text(f"n_rows: [{', '.join(levels)}]\n")
    (tmp_path / "latin1.yaml").write_bytes("model:\n  kernel: lin\u00e9aire\n".encode("latin-1"))
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    out = cli(tmp_path, "run", "wf.py", *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
    assert message in out.stderr, out.stderr
    assert not (tmp_path / ".etherealfabric").exists()  # nothing ran


def test_cli_parameters_for_a_workflow_without_any(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\ndef one():\n    return 1\n"
        "with Workflow('plain') as wf:\n    one()\n"
    )
    out = cli(tmp_path, "run", "wf.py", "-p", "x=1")
    assert out.returncode == 2
    assert "has no parameter 'x'" in out.stderr and "Its parameters: none" in out.stderr


def test_cli_resume_keeps_the_parameters(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "fail-fit").touch()
    failed = _run(tmp_path, "-p", "model.C=0.5", code=1)
    (tmp_path / "fail-fit").unlink()
    out = cli(tmp_path, "resume", failed["run_id"], "--json")
    assert out.returncode == 0, out.stderr
    resumed = json.loads(out.stdout)
    assert resumed["resumed_from"] == failed["run_id"]
    assert resumed["nodes"]["fit"] == "succeeded" and resumed["nodes"]["load"] == "cached"
    values = json.loads(cli(tmp_path, "show", resumed["run_id"], "--json").stdout)["params"]
    assert values["model.C"] == 0.5
    cat = cli(tmp_path, "cat", resumed["run_id"], "fit", "--json")
    assert json.loads(cat.stdout) == 2475.0


def test_cli_plan_takes_the_parameters(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(PIPELINE)
    _run(tmp_path)
    planned = cli(tmp_path, "plan", "wf.py", "--json", "-p", "model.C=0.5")
    assert planned.returncode == 0, planned.stderr
    will_run = {n["node"] for n in json.loads(planned.stdout)["nodes"] if n["action"] == "run"}
    assert will_run == {"fit", "report", "Scale"}
    (tmp_path / "params.yaml").write_text("model:\n  C: 0.5\n")
    from_file = cli(tmp_path, "plan", "wf.py", "--params", "params.yaml", "--json")
    assert from_file.returncode == 0, from_file.stderr
    fit = next(n for n in json.loads(from_file.stdout)["nodes"] if n["node"] == "fit")
    assert "param model.C: 1.0 → 0.5" in fit["reason"]
    unchanged = cli(tmp_path, "plan", "wf.py", "--json")
    assert all(n["action"] == "cached" for n in json.loads(unchanged.stdout)["nodes"])
    wrong = cli(tmp_path, "plan", "wf.py", "-p", "model.c=0.5")
    assert wrong.returncode == 2
    assert "model.C" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_params_are_bound_once_any_reference_exists() -> None:
    """Binding is skipped while no ParamRef exists in the process (a large graph without
    parameters pays nothing); once one is made (references cannot be copied or pickled, so
    ``__new__`` sees every one), nodes get the run's values."""
    code = (
        "from etherealfabric import Workflow, node\n"
        "from etherealfabric.define import _params\n"
        "@node\n"
        "def scale(x, factor):\n"
        "    return x * factor\n"
        "with Workflow('plain') as plain:\n"
        "    scale(2, 3)\n"
        "assert not _params.any_param_refs()\n"
        "assert plain.execute()['scale']['result'] == 6\n"
        "with Workflow('p', params={'factor': 4}) as wf:\n"
        "    scale(2, wf.params.factor)\n"
        "assert _params.any_param_refs()\n"
        "assert wf.execute(params={'factor': 5})['scale']['result'] == 10\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), [1.0, float("nan")], {"a": float("-inf")}]
)
def test_values_that_are_not_finite_numbers_are_refused(tmp_path: Path, value: Any) -> None:
    kind = type(value) if not isinstance(value, float) else float
    default = {list: [1.0], dict: {"a": 1.0}, float: 1.0}[kind]
    with Workflow("finite", params={"x": Param(default, type=kind)}, home=tmp_path) as wf:
        echo(wf.params.x)
    with pytest.raises(ParameterError, match=r"parameter 'x' takes .* a finite number"):
        wf.execute(params={"x": value})
    with pytest.raises(ParameterError, match="a finite number"):
        Workflow("finite-default", params={"x": Param(value, type=kind)})
    if kind is float:  # an int too large for a float is infinite too (not an OverflowError)
        with pytest.raises(ParameterError, match="is not a finite number"):
            wf.execute(params={"x": 10**400})
    assert not (tmp_path / "journal.db").exists()


HELPED = """
from etherealfabric import Param, Workflow, node


@node
def load(n, C):
    return [C] * n


with Workflow("helped", params={
    "n_rows": Param(100, help="rows to sample, at least 10"),
    "model": {"C": Param(1.0, type=float, help="inverse regularization strength")},
}) as wf:
    load(wf.params.n_rows, wf.params.model.C)
"""


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["-p", "n_rows=many"], "-p n_rows=many: "),
        (["--param", "model.C=high"], "-p model.C=high: "),
        (["n_rows=many"], "n_rows=many (after the file): "),
        (["--params", "bad.json"], "params file bad.json: "),
    ],
)
def test_cli_a_bad_value_says_how_it_was_given_and_the_parameters_help(
    tmp_path: Path, args: list[str], given: str
) -> None:
    """Before: `parameter 'n_rows' takes an int (default 100); 'many' is not an int`, with
    neither the option it came from nor the `help=` its author wrote."""
    (tmp_path / "wf.py").write_text(HELPED)
    (tmp_path / "bad.json").write_text('{"model": {"C": "high"}}')
    out = cli(tmp_path, "run", "wf.py", *args)
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {given}parameter "), line
    if "n_rows" in given:
        assert "'n_rows' takes an int (default 100); 'many' is not an int" in line, line
        assert line.endswith("(n_rows: rows to sample, at least 10)"), line
    else:
        assert "'model.C' takes a float (default 1.0);" in line, line
        assert line.endswith("(model.C: inverse regularization strength)"), line
    assert "Traceback" not in out.stderr
    planned = cli(tmp_path, "plan", "wf.py", *args)  # plan says the same
    assert planned.returncode == 2 and planned.stderr == out.stderr, planned.stderr


def test_a_bad_value_through_the_api_ends_with_the_parameters_help() -> None:
    with Workflow("api-helped", params={"n": Param(3, help="how many")}) as wf:
        echo(wf.params.n)
    with pytest.raises(ParameterError, match=r"'n' takes an int.*got str 'x' \(n: how many\)$"):
        wf.execute(params={"n": "x"})
