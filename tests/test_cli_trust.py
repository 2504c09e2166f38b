"""What a demanding user trying the command line in fresh processes finds: bad settings named
with what is allowed, tables that keep their columns in a pipe, --force of a node that is not
there, `cache pin` and `cache forget` saying what they did (or did not), `runs --json` fields."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from cli_runner import ef

FLOW = """
from etherealfabric import Workflow, node

@node
def load(n: int = 3):
    return list(range(n))

@node
def total(xs):
    return sum(xs)

with Workflow("trust") as wf:
    total(load())
"""


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    return tmp_path


def one_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, out.stderr
    return lines[0]


# -- 1. bad settings ---------------------------------------------------------------------------
def test_a_mistyped_backend_variable_names_it_the_backends_and_the_close_one(flow: Path) -> None:
    line = one_error(ef(flow, "run", "flow.py", ETHEREALFABRIC_EXECUTION_BACKEND="procesess"))
    assert "ETHEREALFABRIC_EXECUTION_BACKEND" in line
    assert "local, processes" in line or "processes, " in line  # the allowed values
    assert "did you mean 'processes'?" in line


def test_a_mistyped_backend_option_names_the_option(flow: Path) -> None:
    line = one_error(ef(flow, "run", "flow.py", "--backend", "thread"))
    assert "--backend" in line and "did you mean 'threads'?" in line and "dask" in line


def test_bad_worker_counts_name_the_variable_or_the_option(flow: Path) -> None:
    line = one_error(ef(flow, "run", "flow.py", ETHEREALFABRIC_MAX_WORKERS="four"))
    assert "ETHEREALFABRIC_MAX_WORKERS='four'" in line and "whole number >= 1" in line
    out = ef(flow, "run", "flow.py", "--max-workers", "0")  # a usage error, as click says it
    assert out.returncode == 2 and "Invalid value for '--max-workers'" in out.stderr


@pytest.mark.parametrize(
    ("variable", "value", "close"),
    [
        ("ETHEREALFABRIC_CELERY_BROKER_URL", "rdis://localhost:1/0", "redis"),
        ("ETHEREALFABRIC_CELERY_BROKER_URL", "nosuch://localhost:1/0", None),
        ("ETHEREALFABRIC_CELERY_RESULT_BACKEND", "rdis://localhost:1/0", "redis"),
    ],
)
def test_a_bad_celery_url_names_the_variable_and_the_known_schemes(
    flow: Path, variable: str, value: str, close: str | None
) -> None:
    pytest.importorskip("celery")
    env = {
        "ETHEREALFABRIC_CELERY_BROKER_URL": "redis://localhost:1/0",
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": "redis://localhost:1/0",
        variable: value,
    }
    line = one_error(ef(flow, "run", "flow.py", "--backend", "celery", **env))
    assert f"{variable}='{value}'" in line
    assert "known schemes: " in line and "redis" in line
    if close:
        assert f"did you mean {close}://" in line
    assert "No module named" not in line


@pytest.mark.parametrize(
    ("mistyped", "meant"),
    [
        ("ETHEREALFABRIC_BACKEND", "ETHEREALFABRIC_EXECUTION_BACKEND"),
        ("ETHEREALFABRIC_WORKERS", "ETHEREALFABRIC_MAX_WORKERS"),
        ("ETHEREALFABRIC_BROKER_URL", "ETHEREALFABRIC_CELERY_BROKER_URL"),
    ],
)
def test_a_variable_that_is_no_setting_is_warned_about_with_the_one_meant(
    flow: Path, mistyped: str, meant: str
) -> None:
    out = ef(flow, "run", "flow.py", **{mistyped: "processes"})
    assert out.returncode == 0, out.stderr
    assert f"{mistyped} is not a setting; did you mean {meant}?" in out.stderr


# -- 2. tables in a pipe -----------------------------------------------------------------------
def test_tables_printed_to_a_pipe_keep_every_column(flow: Path) -> None:
    assert ef(flow, "run", "flow.py").returncode == 0
    runs = ef(flow, "runs")
    assert runs.returncode == 0
    header = runs.stdout.splitlines()[1]
    for column in ("run", "workflow", "status", "started", "duration", "executed", "cached"):
        assert column in header, runs.stdout
    assert "not shown" not in runs.stdout
    [run] = json.loads(ef(flow, "runs", "--json").stdout)
    shown = ef(flow, "show", run["id"])
    assert "not shown" not in shown.stdout and "error" in shown.stdout, shown.stdout
    narrow = ef(flow, "runs", COLUMNS="60")  # COLUMNS set: the width asked for
    assert "not shown" in narrow.stdout and max(map(len, narrow.stdout.splitlines())) <= 60


# -- 3. --force of a node that is not there ----------------------------------------------------
def test_force_of_an_unknown_node_lists_the_workflows_nodes(flow: Path) -> None:
    line = one_error(ef(flow, "run", "flow.py", "--force", "zzz"))
    assert "'zzz'" in line and "its nodes: load, total" in line
    line = one_error(ef(flow, "run", "flow.py", "--force", "totl"))
    assert "did you mean 'total'?" in line and "its nodes: load, total" in line


# -- 4. cache pin ------------------------------------------------------------------------------
def test_cache_pin_says_when_nothing_is_pinned_and_remove_needs_a_run(flow: Path) -> None:
    assert ef(flow, "run", "flow.py").returncode == 0
    out = ef(flow, "cache", "pin")
    assert out.returncode == 0 and "no pinned runs" in out.stderr and out.stdout == ""
    out = ef(flow, "cache", "pin", "--remove")
    assert out.returncode == 2
    assert "Usage:" in out.stderr and "RUN_ID" in out.stderr
    [run] = json.loads(ef(flow, "runs", "--json").stdout)
    assert ef(flow, "cache", "pin", run["id"]).returncode == 0
    assert ef(flow, "cache", "pin").stdout.split() == [run["id"]]
    out = ef(flow, "cache", "pin", "--remove", run["id"])
    assert out.returncode == 0 and out.stdout.strip() == f"unpinned {run['id']}"
    out = ef(flow, "cache", "pin", "--remove", run["id"])  # unpinned already: says so
    assert "nothing unpinned" in out.stdout and f"run {run['id']} was not pinned" in out.stderr


# -- 6. runs --json ------------------------------------------------------------------------------
def test_runs_and_show_json_give_the_recorded_params_as_an_object(flow: Path) -> None:
    assert ef(flow, "run", "flow.py", "--node", "load").returncode == 0
    [run] = json.loads(ef(flow, "runs", "--json").stdout)
    params = run["params"]
    assert isinstance(params, dict), params
    assert params["target"] == str(flow / "flow.py") and params["nodes"] == ["load"]
    shown = json.loads(ef(flow, "show", run["id"], "--json").stdout)
    assert shown["run"]["params"] == params


# -- 7. cache forget -----------------------------------------------------------------------------
def test_cache_forget_of_a_node_never_seen_is_an_error_naming_it(flow: Path) -> None:
    assert ef(flow, "run", "flow.py").returncode == 0
    line = one_error(ef(flow, "cache", "forget", "nothere"))
    assert "'nothere'" in line and "load, total" in line
    line = one_error(ef(flow, "cache", "forget", "totl", "load"))  # nothing forgotten then
    assert "did you mean 'total'?" in line
    assert json.loads(ef(flow, "run", "flow.py", "--json").stdout)["cached"] == 2
    line = one_error(ef(flow, "cache", "forget", "--key", "0" * 32))
    assert "no cache entry" in line and "0" * 32 in line

    out = ef(flow, "cache", "forget", "load")
    assert out.returncode == 0 and "forgot 1 cache entry" in out.stdout
    again = ef(flow, "cache", "forget", "load", "--json")  # a known node, nothing left: fine
    assert again.returncode == 0 and json.loads(again.stdout)["forgotten"] == 0
    assert "'load' has no cache entry" in again.stderr


# -- 8. "an ndarray", "an int" -------------------------------------------------------------------
ARRAY_FLOW = """
import numpy as np
from etherealfabric import Workflow, node

@node
def arr():
    return np.arange(3)

with Workflow("arrays") as wf:
    arr()
"""


def test_messages_put_an_before_a_vowel(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    (tmp_path / "flow.py").write_text(ARRAY_FLOW)
    run = json.loads(ef(tmp_path, "run", "flow.py", "--json").stdout)
    line = one_error(ef(tmp_path, "cat", run["run_id"], "arr", "-o", "out.parquet"))
    assert "arr.result is an ndarray, not a data frame" in line
    (tmp_path / "params.json").write_text("5")
    line = one_error(ef(tmp_path, "run", "flow.py", "--params", "params.json"))
    assert "got an int" in line


def test_the_article_helper() -> None:
    from etherealfabric.errors import a_or_an

    said = [a_or_an(w) for w in ("int", "ndarray", "str", "object", "uint8", "_io.TextIOWrapper")]
    assert said == ["an int", "an ndarray", "a str", "an object", "a uint8", "an _io.TextIOWrapper"]
    assert a_or_an("list") == "a list" and a_or_an("Index") == "an Index"
    for word in ("float", "frozenset", "set", "dict", "Series", "LazyFrame", "str"):
        assert a_or_an(word) == f"a {word}"
    for word in ("SVC", "S3FileSystem", "HTTPResponse", "MLPRegressor", "XGBModel", "ndarray"):
        assert a_or_an(word) == f"an {word}"


def test_node_of_an_unknown_name_lists_the_nodes_and_the_close_one(flow: Path) -> None:
    line = one_error(ef(flow, "run", "flow.py", "--node", "lod"))
    assert "has no node 'lod'; its nodes: load, total" in line and "did you mean 'load'?" in line


def test_cache_verify_with_a_store_out_of_reach_is_one_error_line(flow: Path) -> None:
    pytest.importorskip("s3fs")
    assert ef(flow, "run", "flow.py", "-q").returncode == 0
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = ef(
        flow, "cache", "verify",
        ETHEREALFABRIC_STORE="s3://team/ef",
        ETHEREALFABRIC_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        ETHEREALFABRIC_STORE_TIMEOUT="2",
        AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
    )  # fmt: skip
    assert "Traceback" not in out.stderr
    assert "did not answer" in one_error(out)
