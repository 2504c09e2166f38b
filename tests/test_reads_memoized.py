"""Files read by a memoized helper (``functools.lru_cache``, ``functools.cache``) count for every
node that calls it, not only for the node that filled the cache: the second node gets the table
from the cache, opens nothing, and was a stale hit when the file changed (run/_memoized.py)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import Workflow, node
from etherealfabric.run import _memoized
from test_reads import records

LOOKUPS = """
import functools


@functools.lru_cache(maxsize=None)
def load_rates():
    with open("rates.csv") as f:
        return dict(line.strip().split(",") for line in f)


def rate(cur):
    return float(load_rates()[cur])
"""

FLOW = """
from etherealfabric import Workflow, node
from lookups import load_rates, rate


@node
def to_eur(amount):
    return amount * float(load_rates()["USD"])


@node
def to_gbp(eur):
    return eur * rate("GBP")


@node
def other(x):
    return x + 1


with Workflow("lru") as wf:
    other(to_gbp(to_eur(100)))
"""


def test_cli_a_file_a_memoized_helper_read_for_another_node_reruns_it(
    tmp_path: Path, home: Path
) -> None:
    Path("lookups.py").write_text(LOOKUPS)
    Path("flow.py").write_text(FLOW)
    Path("rates.csv").write_text("USD,0.5\nGBP,0.8\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(home)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run() -> dict[str, Any]:
        return json.loads(cli("run", "flow.py", "--json"))

    first = run()
    assert first["executed"] == 3 and cli("cat", first["run_id"], "to_gbp").strip() == "40.0"
    reads = {name: record.get("reads", {}) for name, record in records(home).items()}
    assert "./rates.csv" in reads["to_eur"] and "./rates.csv" in reads["to_gbp"]
    assert "./rates.csv" not in reads["other"]  # it calls no memoized helper
    Path("rates.csv").write_text("USD,0.5\nGBP,0.1\n")
    second = run()
    assert cli("cat", second["run_id"], "to_gbp").strip() == "5.0"


FLOW_MEMOIZED_INSIDE = """
from functools import cache, lru_cache

from etherealfabric import Workflow, node


@lru_cache
def load_rate():
    with open("rates.csv") as f:
        return float(f.read().split()[-1].split(",")[1])


@cache
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@node
def to_eur(amount):
    return amount * load_rate()


@node
def steps(eur):
    return eur + fib(20) + load_rate()


with Workflow("memo") as wf:
    steps(to_eur(10.0))
"""


def test_cli_processes_a_memoized_helper_of_the_workflow_file_runs_and_reruns(
    tmp_path: Path, home: Path
) -> None:
    """A memoized helper defined in the workflow file travels to the worker by value, as the
    file's functions do (cloudpickle sent the wrapper by name: ModuleNotFoundError of the
    file's module in the worker), and an edit of the file it read runs its callers again."""
    Path("flow.py").write_text(FLOW_MEMOIZED_INSIDE)
    Path("rates.csv").write_text("ccy,rate\nEUR,0.9\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(home)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            capture_output=True, text=True, env=env, check=False, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def run() -> dict[str, Any]:
        return json.loads(cli("run", "flow.py", "--backend", "processes", "--json"))

    first = run()
    assert first["executed"] == 2, first
    assert float(cli("cat", first["run_id"], "to_eur")) == pytest.approx(9.0)
    assert float(cli("cat", first["run_id"], "steps")) == pytest.approx(9.0 + 6765 + 0.9)
    reads = {name: record.get("reads", {}) for name, record in records(home).items()}
    assert "./rates.csv" in reads["to_eur"] and "./rates.csv" in reads["steps"]
    assert run()["cached"] == 2
    Path("rates.csv").write_text("ccy,rate\nEUR,0.5\n")
    third = run()
    assert third["executed"] == 2, third
    assert float(cli("cat", third["run_id"], "to_eur")) == pytest.approx(5.0)
    assert float(cli("cat", third["run_id"], "steps")) == pytest.approx(5.0 + 6765 + 0.5)


def test_a_memoized_function_of_by_value_code_travels_by_value(python: str) -> None:
    """``dumps_task``: a memoized function of ``__main__``-like code loads where its module
    does not exist, once (a recursive one calls the very wrapper it is), with its ``maxsize``
    and ``typed``; one of an importable module still travels by name."""
    from etherealfabric.backends._taskpickle import dumps_task

    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(  # the code of a script
        "import functools\n"
        "@functools.lru_cache(maxsize=16, typed=True)\n"
        "def fib(n):\n"
        "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
        "def use(n):\n"
        "    return fib(n), fib.cache_parameters(), fib.__name__\n",
        namespace,
    )
    check = (
        "import sys, cloudpickle\n"
        "use = cloudpickle.loads(sys.stdin.buffer.read())\n"
        "fib = use.__globals__['fib']\n"
        "assert fib.__wrapped__.__globals__['fib'] is fib\n"
        "print(use(25))\n"
    )
    done = subprocess.run(
        [python, "-c", check], input=dumps_task(namespace["use"]), capture_output=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "(75025, {'maxsize': 16, 'typed': True}, 'fib')"
    assert len(dumps_task(_cached_text)) < 100  # by name: this module is importable


@functools.lru_cache(maxsize=8)
def _cached_text() -> str:
    return Path("value.txt").read_text()


class _Tables:
    @staticmethod
    @functools.cache
    def number() -> int:
        return int(Path("number.txt").read_text())


def test_in_process_each_caller_of_a_memoized_helper_records_its_reads(home: Path) -> None:
    _memoized.reset()
    _cached_text.cache_clear()
    _Tables.number.cache_clear()
    Path("value.txt").write_text("abc")
    Path("number.txt").write_text("7")

    @node
    def first() -> str:
        return _cached_text() + str(_Tables.number())

    @node
    def second(prefix: str) -> str:
        return prefix + _cached_text()

    @node
    def third(prefix: str) -> int:
        return _Tables.number() + len(prefix)

    with Workflow("memo", root=".") as wf:
        out = first()
        second(out)
        third(out)
    assert wf.execute().executed == 3
    reads = {name: record.get("reads", {}) for name, record in records(home).items()}
    assert set(reads["second"]) == {"./value.txt"}
    assert set(reads["third"]) == {"./number.txt"}


def test_a_nested_or_plain_function_is_not_memoized() -> None:
    def inner() -> None:
        pass

    assert not _memoized._is_memoized(inner.__code__, globals())
    assert not _memoized._is_memoized(records.__code__, vars(sys.modules[records.__module__]))
    assert _memoized._is_memoized(_cached_text.__wrapped__.__code__, globals())


@pytest.fixture(autouse=True)
def _forget() -> Any:
    yield
    _memoized.reset()


JINJA_FLOW = """
from jinja2 import Environment, FileSystemLoader
from etherealfabric import Workflow, node

ENV = Environment(loader=FileSystemLoader("templates"))


@node
def report(region):
    return ENV.get_template("report.j2").render(region=region)


@node
def gather(texts):
    return texts


with Workflow("reports") as wf:
    gather([report(r) for r in ("north", "south", "east")])
"""


def test_cli_a_template_a_library_cache_served_to_other_nodes_reruns_them_all(
    tmp_path: Path, ef: Any
) -> None:
    """Jinja loads ``report.j2`` once per environment: the first node opens it, the others get
    it from Jinja's cache and open nothing. The file, read by a node of this process and
    named by the others (``"report.j2"``), counts for all of them (run/_audit.py's
    ``read_in_process``): editing it re-ran only the first (the others served ``v1``)."""
    pytest.importorskip("jinja2")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "report.j2").write_text("Hello {{ region }} v1\n")
    (tmp_path / "flow.py").write_text(JINJA_FLOW)

    def run() -> dict[str, Any]:
        done = ef(tmp_path, "run", "flow.py", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert run()["executed"] == 4
    assert run()["cached"] == 4
    (tmp_path / "templates" / "report.j2").write_text("Hello {{ region }} v2\n")
    assert run()["executed"] == 4
    shown = ef(tmp_path, "cat", "latest", "gather", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [f"Hello {r} v2" for r in ("north", "south", "east")]
    assert run()["cached"] == 4
