"""Mapped nodes on the command line: one row per map in ``show`` and ``status``, the children
on demand with ``show RUN NODE --items``, and a progress line per map."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from etherealfabric.cli import main

FLOW = """
from etherealfabric import Workflow, node

@node
def items(n):
    return list(range(n))

@node
def square(x):
    if x % 10 == 3:
        raise ValueError(f"no {x}")
    return x * x

@node
def total(xs):
    return sum(xs)

with Workflow("mapflow") as wf:
    total(square.map(items(40), max_failures=5))
"""


FAILED = sorted(f"square[{i}]" for i in (3, 13, 23, 33))


def cli(*args: str, fails: bool = False) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code != 0) == fails, result.output
    return result.output


def run_flow(tmp_path: Path) -> str:
    flow = tmp_path / "mapflow.py"
    flow.write_text(FLOW)
    out = cli("run", str(flow))
    assert "square done in" in out and "40/40 items, 0 cached, 4 failed" in out
    out = cli("runs", "--json")
    return str(json.loads(out)[0]["id"])


def test_show_groups_a_maps_children_into_one_row(tmp_path: Path) -> None:
    run_id = run_flow(tmp_path)
    out = cli("show", run_id, "--json")
    shown = json.loads(out)
    assert [n["node"] for n in shown["nodes"]] == ["items", "square", "total"]
    summary = shown["maps"]["square"]
    assert (summary["items"], summary["cached"], summary["collected"]) == (40, 0, 36)
    assert summary["counts"] == {"succeeded": 36, "failed": 4}
    assert summary["p50"] is not None and summary["max"] >= summary["p90"] >= summary["p50"]
    out = cli("show", run_id)
    assert "map square: 40 items, 0 cached, 4 failed, 36 succeeded, p50" in out
    assert "│ square[" not in out  # no row per child
    assert "failed items: square[3], square[13], square[23], square[33]" in out


def test_show_items_lists_a_maps_children(tmp_path: Path) -> None:
    run_id = run_flow(tmp_path)
    out = cli("show", run_id, "square", "--items", "--json")
    listed = json.loads(out)
    rows = {r["node"]: r for r in listed["items"]}
    assert len(rows) == 40
    assert rows["square[13]"]["status"] == "failed"
    assert "ValueError: no 13" in rows["square[13]"]["error"]
    assert rows["square[12]"]["status"] == "succeeded"
    out = cli("show", run_id, "total", "--items", fails=True)
    assert "not a map" in out


def test_a_warm_run_shows_the_map_as_one_cached_row_and_logs_work_per_item(
    tmp_path: Path,
) -> None:
    first = run_flow(tmp_path)
    out = cli("run", str(tmp_path / "mapflow.py"))
    assert "4 failed" in out  # the failed items are tried again, alone
    out = cli("status", "--json")
    state = json.loads(out)
    assert state["counts"] == {"cached": 2, "succeeded": 1}
    assert state["maps"]["square"]["cached"] == 36
    out = cli("logs", first, "square[13]")
    assert "square[13] attempt 1 (failed)" in out


def test_plan_says_what_a_map_maps_over_and_how_many_items_it_had(tmp_path: Path) -> None:
    flow = tmp_path / "mapflow.py"
    flow.write_text(FLOW)
    planned = json.loads(cli("plan", str(flow), "--json"))
    square = next(n for n in planned["nodes"] if n["node"] == "square")
    assert square["reason"] == "maps over the output of items.result ('items' runs first)"
    run_id = run_flow(tmp_path)
    flow.write_text(FLOW.replace("items(40)", "items(41)"))
    planned = json.loads(cli("plan", str(flow), "--json"))
    square = next(n for n in planned["nodes"] if n["node"] == "square")
    assert square["reason"].startswith("maps over the output of items.result")
    assert f"40 items in run {run_id} (40 ran, 0 cached)" in square["reason"]
    assert square["estimate"] is not None


def test_metrics_count_a_maps_items_in_one_series_per_status() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from etherealfabric import Workflow, node
    from etherealfabric.observe._metrics import Metrics

    @node
    def odd(x):
        if x % 2:
            raise ValueError("odd")
        return x

    def build(n: int) -> Workflow:
        with Workflow("mapmetrics") as wf:
            odd.map(list(range(n)), max_failures=0.5)
        return wf

    metrics = Metrics()
    build(10).execute(subscribers=[metrics])
    build(12).execute(subscribers=[metrics])
    found = {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(metrics.text())
        for s in family.samples
        if s.name == "etherealfabric_map_items_total" and s.labels["node"] == "odd"
    }
    # run 1: 5 succeeded, 5 failed; run 2: 5 cached, 1 new succeeded, the 6 odd ones fail
    assert found == {"succeeded": 6.0, "failed": 11.0, "cached": 5.0}


def test_show_items_lists_every_child_of_a_warm_run_with_its_status(tmp_path: Path) -> None:
    run_flow(tmp_path)
    cli("run", str(tmp_path / "mapflow.py"))  # 36 children cached, the 4 failing ones again
    second = str(json.loads(cli("runs", "--json"))[0]["id"])
    listed = json.loads(cli("show", second, "square", "--items", "--json"))["items"]
    statuses = {r["node"]: r["status"] for r in listed}
    assert len(statuses) == 40
    assert statuses["square[12]"] == "cached" and statuses["square[13]"] == "failed"
    assert sum(s == "cached" for s in statuses.values()) == 36
    failed = json.loads(cli("show", second, "square", "--items", "--status", "failed", "--json"))
    assert sorted(r["node"] for r in failed["items"]) == FAILED
    out = cli("show", second, "square")
    assert "failed items: square[3], square[13], square[23], square[33]" in out.replace("\n ", "")


def test_show_items_of_a_map_taken_whole_from_the_cache_lists_its_children(
    tmp_path: Path,
) -> None:
    flow = tmp_path / "mapflow.py"
    flow.write_text(FLOW.replace("x % 10 == 3", "x < 0"))
    cli("run", str(flow))
    cli("run", str(flow))  # the whole map is one lookup: no child is looked at
    warm = str(json.loads(cli("runs", "--json"))[0]["id"])
    assert json.loads(cli("show", warm, "--json"))["maps"] == {}
    listed = json.loads(cli("show", warm, "square", "--items", "--json"))["items"]
    assert [r["node"] for r in listed] == [f"square[{i}]" for i in range(40)]
    assert {r["status"] for r in listed} == {"cached"}
    out = cli("show", warm, "square", "--items")
    assert "40 rows: 40 cached" in out


def test_open_run_rebuilds_the_map_reports_of_a_past_run(tmp_path: Path) -> None:
    from etherealfabric import open_run

    run_id = run_flow(tmp_path)
    results = open_run(run_id)
    assert set(results.statuses) == {"items", "square", "total"}  # children are not nodes
    report = results.map_report("square")
    assert (report.items, report.children, report.cached, report.collected) == (40, 40, 0, 36)
    assert sorted(report.failed) == ["square[13]", "square[23]", "square[33]", "square[3]"]
    assert report.failed["square[13]"] == "ValueError: no 13"
    assert len(report.executed) == 36 and not report.whole
    assert results.maps == {"square": report}
    assert results["total"]["result"] == sum(x * x for x in range(40) if x % 10 != 3)


def test_a_partly_failed_map_names_its_failed_items_in_the_run_summary(tmp_path: Path) -> None:
    flow = tmp_path / "mapflow.py"
    flow.write_text(FLOW)
    out = cli("run", str(flow), "--json")
    summary = json.loads(out[out.index("{") :])
    assert summary["status"] == "succeeded"
    assert sorted(summary["failed_items"]["square"]) == FAILED
    out = cli("run", str(flow), "-q")
    assert "4 map items failed" in out
    assert "square: 4 of 40 items failed (within max_failures): square[" in out


LABELS = """
from etherealfabric import Workflow, node

@node
def items():
    return {"north.csv": 1, "south.csv": 2}

@node
def work(v):
    if v == 1:
        raise KeyError("None of [Index(['units'])] are in the [columns]")
    return v * 2

@node
def agg(parts):
    return sum(parts.values())

@node
def load():
    raise FileNotFoundError("expected one of [/data/a.csv, /data/b.csv]")

with Workflow("labels") as wf:
    agg(work.map(items(), max_failures=1))
    load()
"""


def test_show_prints_labels_and_errors_as_text_not_markup(tmp_path: Path) -> None:
    """Square brackets in a child's label or an error are text: rich read them as markup tags,
    dropping "[north.csv]" and "[columns]", and "[/data/a.csv, ...]" crashed ``show``."""
    import os
    import subprocess
    import sys

    (tmp_path / "labels.py").write_text(LABELS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(COLUMNS="250", ETHEREALFABRIC_HOME=str(tmp_path / "home"))

    def ef(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "etherealfabric", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    assert ef("run", "labels.py", "--keep-going").returncode == 1
    shown = ef("show", "latest")
    assert shown.returncode == 0, shown.stderr
    assert "FileNotFoundError: expected one of [/data/a.csv, /data/b.csv]" in shown.stdout
    assert "failed items: work[north.csv]" in shown.stdout
    items = ef("show", "latest", "work", "--items")
    assert items.returncode == 0, items.stderr
    assert "work[north.csv]" in items.stdout and "work[south.csv]" in items.stdout
    assert "are in the [columns]" in items.stdout


def test_show_items_refuses_a_mistyped_status_and_a_missing_node(tmp_path: Path) -> None:
    """`--status faild` listed "0 rows: none" (exit 0): a typo read as "no failed items"; and
    `--items` without NODE was ignored without a word."""
    run_id = run_flow(tmp_path)
    out = cli("show", run_id, "square", "--items", "--status", "faild", fails=True)
    assert "'faild' is not one of" in out and "'failed'" in out
    for args in (("--items",), ("--status", "failed"), ("square", "--status", "failed")):
        out = cli("show", run_id, *args, fails=True)
        assert "--items NODE" in out or "with --items" in out, out
