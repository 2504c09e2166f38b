"""A shared store set up wrongly is a configuration error before any node runs; a store object
given as ``store=`` is the store.

* ``Workflow(store=ObjectStore(...))`` publishes to the bucket (it became a local folder named
  after the object's repr);
* ``ETHEREALFABRIC_STORE=s3:/team/x`` (a slash missing) is an exit-2 error suggesting
  ``s3://team/x`` (it became the folder ``./s3:/team/x``);
* a missing bucket, missing credentials, an endpoint without ``http://``: a
  :class:`StoreConfigError` naming the setting, and the node never runs (they were cache misses,
  then node failures after the node's work);
* a read-only shared folder in mode read-write: the run goes on as in mode read-only, warned
  once (like a bucket that refuses writes).

S3 cases run against a real moto server on loopback (``test_store.MOTO``); the read-only folder
is a read-only bind mount when the tests run as root (root ignores permission bits).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli_runner
import test_objectstore as shared
from etherealfabric import Workflow, node
from etherealfabric.config import Settings
from etherealfabric.errors import ConfigError, StoreConfigError, StoreError
from etherealfabric.store import LocalStore, ObjectStore
from test_store import MOTO, MotoServer

KEY = "team-secret-0123456789abcdef"
_aws_environment = shared._aws_environment  # moto's credentials, nothing from the machine


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    server = MOTO.ensure()
    yield server
    server.stop()


MARKER: list[Path] = []  # the file the node leaves when it runs (set per test)


def _mark() -> None:
    MARKER[0].write_text("ran")


@node
def marked() -> int:
    """Leaves ``MARKER[0]`` behind when it runs."""
    _mark()
    return 7


@pytest.fixture(autouse=True)
def _marker(tmp_path: Path) -> Iterator[None]:
    MARKER[:] = [tmp_path / "ran"]
    yield
    MARKER.clear()


def _workflow(marker: Path, **settings: object) -> Workflow:
    """A workflow of :func:`marked`, which leaves ``marker`` (``tmp_path / "ran"``)."""
    assert marker.name == "ran"
    with Workflow("storecfg", **settings) as wf:  # type: ignore[arg-type]
        marked()
    return wf


def _executed(results: object) -> list[str]:
    statuses = results.statuses  # type: ignore[attr-defined]
    return sorted(name for name, status in statuses.items() if status == "succeeded")


def _entries(server: MotoServer, url: str) -> list[str]:
    import fsspec

    fs = fsspec.filesystem(
        "s3", skip_instance_cache=True, use_listings_cache=False, **server.options
    )
    return [str(p) for p in fs.find(url.removeprefix("s3://"))]


# -- store= takes a store object --------------------------------------------------------------------
def test_a_store_object_given_as_store_is_the_shared_store(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"s3://{s3.bucket}/{uuid.uuid4().hex}"
    store = ObjectStore(url, storage_options=s3.options, signing_key=KEY)
    results = _workflow(tmp_path / "ran", home=str(tmp_path / "alice"), store=store).execute()
    assert _executed(results) == ["marked"] and results["marked"]["result"] == 7
    names = _entries(s3, url)
    assert any("/actions/" in n for n in names) and any("/objects/" in n for n in names), names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "ran"]  # no "<ObjectStore"
    # a teammate with an empty home, given the same bucket as an object, gets the hit
    (tmp_path / "ran").unlink()
    again = ObjectStore(url, storage_options=s3.options, signing_key=KEY)
    results = _workflow(tmp_path / "ran", home=str(tmp_path / "bob"), store=again).execute()
    assert _executed(results) == [] and not (tmp_path / "ran").exists()


def test_a_local_store_object_is_shared_like_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", KEY)
    team = tmp_path / "team"
    store = LocalStore(team)
    _workflow(tmp_path / "ran", home=str(tmp_path / "alice"), store=store).execute()
    assert list((team / "actions").glob("*/*.json")), "nothing published to the shared folder"
    (tmp_path / "ran").unlink()
    results = _workflow(tmp_path / "ran", home=str(tmp_path / "bob"), store=str(team)).execute()
    assert _executed(results) == [] and not (tmp_path / "ran").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "bob", "team"]


def test_store_given_something_else_is_a_config_error_naming_store(tmp_path: Path) -> None:
    wf = _workflow(tmp_path / "ran", home=str(tmp_path / "home"), store=42)
    with pytest.raises(ConfigError, match=r"store=42 is not a store.*ObjectStore"):
        wf.execute()
    assert not (tmp_path / "ran").exists()


def test_the_store_argument_is_typed_for_every_form_it_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Workflow(store=...)` was typed `str | None`, so a type checker refused the path, the
    `Path` and the store objects the docs show (`store=ObjectStore(...)`). The hint now names
    each form; a `Path` works as its folder does."""
    import inspect
    import typing

    import etherealfabric.define._definition as definition
    from etherealfabric.config import StoreLike

    written = inspect.signature(Workflow.__init__).parameters["store"].annotation
    hint = eval(written, vars(definition)) if isinstance(written, str) else written
    forms = set(typing.get_args(hint))
    assert {str, os.PathLike[str], StoreLike, type(None)} <= forms, written
    for store in (LocalStore(tmp_path / "team"), ObjectStore("memory://team")):
        assert isinstance(store.url, str)  # what StoreLike asks of a store object
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", KEY)
    wf = _workflow(tmp_path / "ran", home=str(tmp_path / "home"), store=tmp_path / "team")
    assert _executed(wf.execute()) == ["marked"]
    assert list((tmp_path / "team" / "actions").glob("*/*.json"))


# -- a store URL with a slash missing ------------------------------------------------------------------
TINY = """
from etherealfabric import Workflow, node

@node
def one():
    return 1

with Workflow("tiny") as wf:
    one()
"""


@pytest.mark.parametrize(
    ("value", "meant"),
    [
        ("s3:/team/x", "s3://team/x"),
        ("s3:team", "s3://team"),
        ("gs:/bucket/p", "gs://bucket/p"),
        ("file:/srv/store", "file:///srv/store"),
    ],
)
def test_a_store_url_with_a_slash_missing_is_an_exit_2_error(
    tmp_path: Path, value: str, meant: str
) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    env = {"ETHEREALFABRIC_STORE": value, "ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    out = cli_runner.ef(tmp_path, "run", "tiny.py", **env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "ETHEREALFABRIC_STORE" in lines[0] and meant in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.py"]  # no folder made


@pytest.mark.parametrize(
    "value", ["shared/store", "/srv/with:colon/x", "./s3:/really-a-folder", "data:v1", "2024:s3"]
)
def test_folder_paths_stay_folders(tmp_path: Path, value: str) -> None:
    settings = Settings.resolve(env={"ETHEREALFABRIC_STORE": value}, home=str(tmp_path / "home"))
    assert settings.store == value and settings.shared_store


def test_an_explicit_store_url_with_a_slash_missing_names_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store='s3:/team/x'.*store=s3://team/x"):
        Settings.resolve(store="s3:/team/x", home=str(tmp_path / "home"))


# -- a shared store set up wrongly: before any node runs -----------------------------------------------
def test_a_missing_bucket_stops_the_run_before_the_node_runs(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", s3.endpoint)
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/team"
    wf = _workflow(tmp_path / "ran", home=str(tmp_path / "home"), store=url)
    with pytest.raises(StoreConfigError, match="does not exist") as info:
        wf.execute()
    assert info.value.setting == "ETHEREALFABRIC_STORE" and url in str(info.value)
    assert isinstance(info.value, StoreError)  # as before it had a class of its own
    assert not (tmp_path / "ran").exists()


def test_a_missing_bucket_is_an_exit_2_error_naming_the_setting(
    s3: MotoServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    program = TINY.replace("return 1", f"open({str(marker)!r}, 'w').close()\n    return 1")
    (tmp_path / "flow.py").write_text(program)
    env = {
        "ETHEREALFABRIC_STORE": f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/team",
        "ETHEREALFABRIC_S3_ENDPOINT_URL": s3.endpoint,
        "ETHEREALFABRIC_HOME": str(tmp_path / "home"),
    }
    out = cli_runner.ef(tmp_path, "run", "flow.py", **env)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "ETHEREALFABRIC_STORE" in last and "bucket" in last
    assert "Traceback" not in out.stderr and not marker.exists()


def test_missing_credentials_are_an_exit_2_error_naming_the_aws_variables(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a process of its own: fsspec caches file systems (and their credentials) per process."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    marker = tmp_path / "ran"
    program = TINY.replace("return 1", f"open({str(marker)!r}, 'w').close()\n    return 1")
    (tmp_path / "flow.py").write_text(program)
    env = {
        "ETHEREALFABRIC_STORE": f"s3://{s3.bucket}/{uuid.uuid4().hex}",
        "ETHEREALFABRIC_S3_ENDPOINT_URL": s3.endpoint,
        "ETHEREALFABRIC_HOME": str(tmp_path / "home"),
    }
    out = cli_runner.ef(tmp_path, "run", "flow.py", **env)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "no credentials" in last and "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in last
    assert "Traceback" not in out.stderr and not marker.exists()


def test_an_endpoint_without_a_scheme_is_a_config_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", "127.0.0.1:9")
    wf = _workflow(tmp_path / "ran", home=str(tmp_path / "home"), store="s3://team/x")
    with pytest.raises(ConfigError, match=r"ETHEREALFABRIC_S3_ENDPOINT_URL='127.0.0.1:9'.*http://"):
        wf.execute()
    assert not (tmp_path / "ran").exists()
    with pytest.raises(ConfigError, match=r"storage_options\['endpoint_url'\]"):
        ObjectStore("s3://team/x", storage_options={"endpoint_url": "minio:9000"})


def _mount_read_only(source: Path, target: Path) -> bool:
    target.mkdir()
    for command in (
        ["mount", "--bind", str(source), str(target)],
        ["mount", "-o", "remount,bind,ro", str(target)],
    ):
        if subprocess.run(command, capture_output=True).returncode != 0:
            subprocess.run(["umount", str(target)], capture_output=True)
            return False
    return True


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A shared folder that this process cannot write (yielded: its path)."""
    writable = tmp_path / "shared"
    writable.mkdir()
    if os.geteuid() == 0:
        view = tmp_path / "shared-ro"
        if not shutil.which("mount") or not _mount_read_only(writable, view):
            pytest.skip("running as root without permission to mount: cannot make it read-only")
        try:
            yield view
        finally:
            subprocess.run(["umount", str(view)], check=True)
        return
    writable.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        yield writable
    finally:
        writable.chmod(stat.S_IRWXU)


def test_a_read_only_shared_folder_in_read_write_mode_runs_as_read_only(
    tmp_path: Path,
    read_only_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", KEY)
    home = str(tmp_path / "home")
    wf = _workflow(tmp_path / "ran", home=home, store=str(read_only_folder))
    # like a bucket that refuses writes: warned once, the run computes and keeps it local
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        results = wf.execute()
    said = [r for r in caplog.records if "ETHEREALFABRIC_STORE_MODE=read-only" in r.getMessage()]
    assert len(said) == 1 and str(read_only_folder) in said[0].getMessage()
    assert list(read_only_folder.iterdir()) == []
    assert _executed(results) == ["marked"] and (tmp_path / "ran").exists()


def test_a_scheme_in_capitals_is_the_same_store() -> None:
    """``S3://team/up`` (a scheme is case-insensitive) is s3://team/up: it used to start the
    run, then fail its first node with "Protocol not known: S3"."""
    pytest.importorskip("s3fs")
    options = {"endpoint_url": "http://127.0.0.1:9", "key": "x", "secret": "y"}
    store = ObjectStore("S3://team/up/", storage_options=options)
    assert (store.url, store.scheme, store.root) == ("s3://team/up", "s3", "team/up")
    assert store.fs.protocol[0] in ("s3", "s3a")  # (connecting asks nothing of the server)


def test_a_scheme_no_file_system_knows_names_the_setting() -> None:
    with pytest.raises(
        StoreError, match=r"cannot open the store s4://team/up \(ETHEREALFABRIC_STORE"
    ):
        ObjectStore("s4://team/up")
