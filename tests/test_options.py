"""Typos are errors: an unknown option, setting or keyword names itself and the closest valid one.

Every entry point a user passes options to (``Workflow(...)``, ``execute``, ``plan``,
``@node(...)``, backends, stores, ``Settings.resolve``) raises
:class:`~etherealfabric.errors.UnknownOptionError` before it runs or writes anything; an
unknown ``ETHEREALFABRIC_*`` environment variable is logged once per process.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etherealfabric import Workflow, config, node
from etherealfabric.backends import Backend, create_backend
from etherealfabric.backends._local import ProcessBackend, ThreadBackend
from etherealfabric.config import (
    ENV,
    KNOWN_ENV,
    SETTING_NAMES,
    Settings,
    check_options,
    keyword_options,
    strict_options,
)
from etherealfabric.define._function import NodeFunction
from etherealfabric.errors import ConfigError, EtherealFabricError, UnknownOptionError
from etherealfabric.store import LocalStore, open_store

SRC = Path(__file__).resolve().parent.parent / "src" / "etherealfabric"
CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@node
def make(n: int) -> int:
    CALLS.append("make")
    return n * 2


def build() -> tuple[Workflow, Any]:
    with Workflow("typos") as wf:
        out = make(21)
    return wf, out


def assert_names(info: pytest.ExceptionInfo[UnknownOptionError], word: str, close: str) -> None:
    error = info.value
    assert (error.option, error.suggestion) == (word, close)
    assert f"unknown option {word!r}; did you mean {close!r}?" in str(error)
    assert close in error.valid and word not in error.valid


# -- the error -------------------------------------------------------------------------------------
def test_error_is_a_config_error_and_a_type_error() -> None:
    error = UnknownOptionError("backnd", where="Workflow.execute()", valid=["home", "backend"])
    assert isinstance(error, ConfigError) and isinstance(error, TypeError)
    assert isinstance(error, EtherealFabricError)
    assert str(error) == (
        "Workflow.execute() got an unknown option 'backnd'; did you mean 'backend'? "
        "Valid options: backend, home"
    )
    assert (error.option, error.where, error.valid, error.suggestion) == (
        "backnd",
        "Workflow.execute()",
        ("backend", "home"),
        "backend",
    )
    assert error.setting == "backnd"
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries like the others
    assert type(copy) is UnknownOptionError and str(copy) == str(error)
    assert copy.suggestion == "backend"


def test_no_suggestion_when_nothing_is_close() -> None:
    error = UnknownOptionError("zzz", where="f()", valid=["backend", "home"])
    assert error.suggestion is None
    assert str(error) == "f() got an unknown option 'zzz'. Valid options: backend, home"
    assert "did you mean" not in str(error)


def test_check_options() -> None:
    check_options({"home": 1}, ["home", "store"], where="f()")
    check_options([], [], where="f()")
    with pytest.raises(UnknownOptionError, match=r"^g\(\) got an unknown option 'stor'") as info:
        check_options({"home": 1, "stor": 2}, ["home", "store"], where="g()")
    assert_names(info, "stor", "store")


def test_strict_options_checks_keywords_and_keeps_the_signature() -> None:
    @strict_options
    def fetch(url: str, *, retries: int = 0, timeout: float = 1.0) -> tuple[str, int, float]:
        return url, retries, timeout

    class Client:
        @strict_options
        def __init__(self, *, timeout: float = 1.0) -> None:
            self.timeout = timeout

        @strict_options
        def get(self, path: str, **settings: Any) -> dict[str, Any]:
            return {"path": path, **settings}

    class SubClient(Client):
        pass

    assert fetch("u", retries=2) == ("u", 2, 1.0)
    assert fetch(url="u") == ("u", 0, 1.0)
    assert str(inspect.signature(fetch)) == str(inspect.signature(fetch.__wrapped__))  # type: ignore[attr-defined]
    with pytest.raises(UnknownOptionError, match=r"^fetch\(\) got an unknown option") as info:
        fetch("u", retry=2)  # type: ignore[call-arg]
    assert_names(info, "retry", "retries")
    assert info.value.valid == ("retries", "timeout", "url")
    assert Client(timeout=2).timeout == 2
    with pytest.raises(UnknownOptionError, match=r"^SubClient\(\) got") as info:
        SubClient(timout=2)  # type: ignore[call-arg]
    assert_names(info, "timout", "timeout")
    # **settings accepts the setting names, and nothing else
    assert Client().get("p", home="h", max_workers=2) == {
        "path": "p",
        "home": "h",
        "max_workers": 2,
    }
    with pytest.raises(UnknownOptionError, match=r"^SubClient\.get\(\) got") as info:
        SubClient().get("p", max_worker=2)
    assert_names(info, "max_worker", "max_workers")
    assert set(SETTING_NAMES) <= set(info.value.valid) and "self" not in info.value.valid


def test_strict_options_with_explicit_names() -> None:
    @strict_options(where="@tool()", extra=["colour"])
    def tool(**options: Any) -> dict[str, Any]:
        return options

    assert tool(colour="red") == {"colour": "red"}
    with pytest.raises(UnknownOptionError, match=r"^@tool\(\) got") as info:
        tool(color="red")
    assert_names(info, "color", "colour")
    assert info.value.valid == ("colour",)


# -- settings ----------------------------------------------------------------------------------------
def test_settings_resolve_rejects_unknown_settings(tmp_path: Path) -> None:
    with pytest.raises(UnknownOptionError, match=r"^Settings\.resolve\(\) got") as info:
        Settings.resolve(env={}, hom=str(tmp_path))
    assert_names(info, "hom", "home")
    assert set(info.value.valid) == {*ENV, "inline_limit"}
    resolved = Settings.resolve(env={}, home=str(tmp_path), inline_limit=10, log_level="debug")
    assert (resolved.home, resolved.inline_limit, resolved.log_level) == (tmp_path, 10, "DEBUG")


# -- Workflow ----------------------------------------------------------------------------------------
def test_workflow_constructor(tmp_path: Path) -> None:
    with pytest.raises(UnknownOptionError, match=r"^Workflow\(\) got") as info:
        Workflow("w", hom=str(tmp_path / "h"))  # type: ignore[call-arg]
    assert_names(info, "hom", "home")
    with pytest.raises(TypeError, match="'keep_goin'; did you mean 'keep_going'"):
        Workflow("w", keep_goin=True)  # type: ignore[call-arg]
    wf = Workflow("w", home=str(tmp_path / "h"), keep_going=True)
    assert wf.name == "w" and wf.keep_going and wf.settings["home"] == str(tmp_path / "h")
    assert Workflow().name == Path(__file__).stem  # the default name still finds the user's file


def test_execute_with_a_typo_runs_and_writes_nothing(tmp_path: Path, home: Path) -> None:
    wf, out = build()
    custom = tmp_path / "custom-home"
    with pytest.raises(UnknownOptionError, match=r"^Workflow\.execute\(\) got") as info:
        wf.execute(hom=str(custom))
    assert_names(info, "hom", "home")
    with pytest.raises(UnknownOptionError) as info:
        wf.execute(home=str(custom), backnd="dask")
    assert_names(info, "backnd", "backend")
    assert {"targets", "raise_on_error", "backend", "home", "durability"} <= set(info.value.valid)
    with pytest.raises(UnknownOptionError) as info:
        wf.execute(home=str(custom), target=["make"])
    assert_names(info, "target", "targets")
    assert CALLS == []
    assert not custom.exists() and not home.exists()  # no journal, no store, no folder

    results = wf.execute(home=str(custom), backend="local", max_workers=1)
    assert results[out] == 42 and CALLS == ["make"]
    assert (custom / "journal.db").exists()


def test_plan_with_a_typo(tmp_path: Path, home: Path) -> None:
    wf, _ = build()
    with pytest.raises(UnknownOptionError, match=r"^Workflow\.plan\(\) got") as info:
        wf.plan(targts=["make"])
    assert_names(info, "targts", "targets")
    with pytest.raises(UnknownOptionError) as info:
        wf.plan(stor=str(tmp_path / "store"))
    assert_names(info, "stor", "store")
    assert not home.exists() and not (tmp_path / "store").exists()
    planned = wf.plan(targets=["make"])
    assert planned.to_run == ["make"]
    assert CALLS == [] and not (home / "journal.db").exists()


# -- @node -----------------------------------------------------------------------------------------
def test_node_options() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(UnknownOptionError, match=r"^@node\(\) got") as info:
        node(retrys=3)  # type: ignore[call-overload]
    assert_names(info, "retrys", "retries")
    assert set(info.value.valid) == {
        "name",
        "outputs",
        "version",
        "retries",
        "serializers",
        "timeout",
        "on_error",
        "secret",
        "writes",
        "on_driver",
    }
    assert set(info.value.valid) == keyword_options(NodeFunction)
    with pytest.raises(UnknownOptionError, match=r"^@node\(\) got") as info:
        node(add, output=["sum"])  # type: ignore[call-overload]
    assert_names(info, "output", "outputs")
    with pytest.raises(UnknownOptionError, match=r"^NodeFunction\(\) got") as info:
        NodeFunction(add, verison=2)  # type: ignore[call-arg]
    assert_names(info, "verison", "version")

    fn = node(retries=3, outputs=["sum"], version=2)(add)
    assert fn.retries is not None and fn.retries.retries == 3
    assert (fn.outputs, fn.version) == (("sum",), "2")
    assert fn(1, 2) == 3


# -- backends ----------------------------------------------------------------------------------------
def test_create_backend_rejects_unknown_options() -> None:
    with pytest.raises(UnknownOptionError, match=r"^create_backend\('local'\) got") as info:
        create_backend("local", max_worker=2)
    assert_names(info, "max_worker", "max_workers")
    with pytest.raises(UnknownOptionError, match=r"^create_backend\('dask'\) got") as info:
        create_backend("dask", adress="tcp://127.0.0.1:1")
    assert_names(info, "adress", "address")
    assert set(info.value.valid) == {"max_workers", "address", "client"}
    with pytest.raises(UnknownOptionError, match=r"^create_backend\('celery'\) got") as info:
        create_backend("celery", broker="redis://127.0.0.1:1/0")
    assert_names(info, "broker", "broker_url")
    with create_backend("local", max_workers=2) as backend:
        assert backend.max_workers == 2
        assert backend.submit(abs, -3).result(timeout=10) == 3


def test_backend_constructors_reject_unknown_options() -> None:
    with pytest.raises(UnknownOptionError, match=r"^ThreadBackend\(\) got") as info:
        ThreadBackend(max_worker=2)  # type: ignore[call-arg]
    assert_names(info, "max_worker", "max_workers")
    with pytest.raises(UnknownOptionError, match=r"^ProcessBackend\(\) got") as info:
        ProcessBackend(max_wokers=2)  # type: ignore[call-arg]
    assert_names(info, "max_wokers", "max_workers")
    from etherealfabric.backends._dask import DaskBackend

    with pytest.raises(UnknownOptionError, match=r"^DaskBackend\(\) got") as info:
        DaskBackend(clinet=None)  # type: ignore[call-arg]
    assert_names(info, "clinet", "client")


def test_third_party_backend_passing_options_to_the_base(monkeypatch: pytest.MonkeyPatch) -> None:
    import etherealfabric.backends as backends

    class Inline(Backend):
        name = "inline"

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)

        def submit(self, fn: Any, task: Any) -> Any:
            raise NotImplementedError

        def close(self, *, cancel: bool = False) -> None:
            pass

    monkeypatch.setitem(backends._registered, "inline", Inline)
    with pytest.raises(UnknownOptionError, match=r"^Inline\(\) got") as info:
        create_backend("inline", max_wrkers=2)
    assert_names(info, "max_wrkers", "max_workers")
    assert create_backend("inline", max_workers=3).max_workers == 3


# -- stores ------------------------------------------------------------------------------------------
def test_open_store_rejects_unknown_options(tmp_path: Path) -> None:
    location = tmp_path / "store"
    with pytest.raises(UnknownOptionError, match=r"^open_store\(\) got") as info:
        open_store(location, durabel=True)  # type: ignore[call-arg]
    assert_names(info, "durabel", "durable")
    assert not location.exists()
    store = open_store(location, durable=True)
    assert isinstance(store, LocalStore)


# -- environment variables ---------------------------------------------------------------------------
@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_warned_env", set())


def env_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "etherealfabric" and r.levelno == logging.WARNING
    ]


@pytest.mark.usefixtures("fresh_warnings")
def test_unknown_environment_variable_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    env = {"ETHEREALFABRIC_EXECUTON_BACKEND": "dask", "ETHEREALFABRIC_HOME": "/tmp/ef"}
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        settings = Settings.resolve(env=env)
        Settings.resolve(env=env)
    assert settings.backend == "local"  # the typo is not a setting, as the warning says
    assert env_warnings(caplog) == [
        "ETHEREALFABRIC_EXECUTON_BACKEND is not a setting; "
        "did you mean ETHEREALFABRIC_EXECUTION_BACKEND?"
    ]


@pytest.mark.usefixtures("fresh_warnings")
def test_unknown_variable_with_nothing_close(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        Settings.resolve(env={"ETHEREALFABRIC_ZQX": "1", "OTHER_THING": "2"})
    (message,) = env_warnings(caplog)
    assert message.startswith("ETHEREALFABRIC_ZQX is not a setting; known variables: ")
    assert "did you mean" not in message and "ETHEREALFABRIC_EXECUTION_BACKEND" in message


@pytest.mark.usefixtures("fresh_warnings")
def test_known_variables_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        Settings.resolve(env={var: "" for var in KNOWN_ENV})
    assert env_warnings(caplog) == []


@pytest.mark.usefixtures("fresh_warnings")
def test_unknown_variable_is_logged_when_a_workflow_runs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_MAX_WORKER", "1")
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        wf, out = build()
        results = wf.execute()
    assert results[out] == 42 and (home / "journal.db").exists()
    assert (
        "ETHEREALFABRIC_MAX_WORKER is not a setting; did you mean ETHEREALFABRIC_MAX_WORKERS?"
        in env_warnings(caplog)
    )


def test_every_variable_the_package_reads_is_known() -> None:
    used = set()
    for path in SRC.rglob("*.py"):
        used |= set(re.findall(r"ETHEREALFABRIC_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert used, "the scan found no variables"
    assert used <= set(KNOWN_ENV), sorted(used - set(KNOWN_ENV))
    assert set(ENV.values()) <= set(KNOWN_ENV) and len(set(KNOWN_ENV)) == len(KNOWN_ENV)


# -- the command line --------------------------------------------------------------------------------
def test_cli_rejects_unknown_options_with_a_suggestion(tmp_path: Path) -> None:
    from etherealfabric.cli import main

    script = tmp_path / "x.py"
    script.write_text("raise SystemExit('must not be loaded')\n")
    result = CliRunner().invoke(main, ["run", "--backnd", "dask", str(script)])
    assert result.exit_code == 2
    assert "No such option '--backnd'. Did you mean '--backend'?" in result.output
