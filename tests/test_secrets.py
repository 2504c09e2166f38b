"""Secret parameters are used by nodes and written nowhere (issue 12, item 10).

The end-to-end tests run workflows through the CLI in fresh processes, as a user would, then
read every byte under the home (``journal.db`` and its WAL included) and everything the
inspection commands print: the token must appear nowhere, and neither must an unkeyed hash of
it. Keys follow the secret through an HMAC keyed with the team's signing key (shared store) or
the home's own key, so teammates share hits and nobody can test guesses offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etherealfabric import RunFailedError, Secret, Workflow, node
from etherealfabric.errors import DefinitionError, HashingError

TOKEN = "tok-7Hq9-SUPERSECRET-Zx2"
TEAM_KEY = "team-secret-0123456789abcdef"

PIPELINE = """
import hashlib
import logging
import os
from etherealfabric import Secret, Workflow, node


@node(retries=1)
def call_api(token, n):
    with open(os.environ["EF_TEST_OUT"], "a") as f:
        f.write(type(token).__name__ + " " + hashlib.sha256(token.encode()).hexdigest() + "\\n")
    print(f"calling with {token}")
    logging.getLogger("app").warning("token=%s", token)
    if os.environ.get("EF_TEST_FAIL"):
        raise ValueError(f"bad token {token}")
    return n * 2


@node(secret=["password"])
def login(user, password):
    return f"{user}:{len(password)}"


@node
def report(x, y):
    return f"{x} {y}"


with Workflow("secrets") as workflow:
    token = os.environ["EF_TEST_TOKEN"]
    result = report(call_api(Secret(token), 21), login("bob", password=token[::-1] + "-pw"))
"""


class Project:
    """A folder with the pipeline; runs the CLI in fresh processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "wf.py").write_text(PIPELINE)
        self.out = root / "node-saw.txt"

    def cli(
        self,
        *args: str,
        home: Path,
        token: str = TOKEN,
        fail: bool = False,
        store: Path | None = None,
        key: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        env.update(EF_TEST_TOKEN=token, EF_TEST_OUT=str(self.out))
        if fail:
            env["EF_TEST_FAIL"] = "1"
        if store is not None:
            env["ETHEREALFABRIC_STORE"] = str(store)
        if key is not None:
            env["ETHEREALFABRIC_SIGNING_KEY"] = key
        return subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args, "--home", str(home)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def run(self, home: Path, *extra: str, **options: Any) -> dict[str, Any]:
        out = self.cli("run", "wf.py", "--json", *extra, home=home, **options)
        assert out.returncode in (0, 1), out.stderr
        return dict(json.loads(out.stdout))

    def keys(self, home: Path, run_id: str) -> dict[str, str]:
        out = self.cli("show", run_id, "--json", home=home)
        assert out.returncode == 0, out.stderr
        return {n["node"]: n["cache_key"] for n in json.loads(out.stdout)["nodes"]}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def _unkeyed_digests(value: str) -> list[str]:
    """Unkeyed hashes of the value an offline guesser could compare against."""
    from etherealfabric.hashing._digest import digest_bytes
    from etherealfabric.hashing._values import hash_value

    return [
        hash_value(value),
        digest_bytes(value.encode()),
        hashlib.sha256(value.encode()).hexdigest(),
    ]


def _assert_nowhere(needles: list[str], folder: Path, texts: dict[str, str]) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for needle in needles:
        for path in files:  # journal.db, journal.db-wal, objects, actions...
            assert needle.encode() not in path.read_bytes(), f"{needle!r} in {path}"
        for what, text in texts.items():
            assert needle not in text, f"{needle!r} in the output of {what}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_secret_is_written_and_printed_nowhere(project: Project, backend: str) -> None:
    home = project.root / "home"
    ran = project.cli("run", "wf.py", "--backend", backend, home=home, fail=True)
    assert ran.returncode == 1, ran.stderr
    # the node got the plain value, in this process or a worker process, on each attempt
    seen = project.out.read_text().splitlines()
    assert seen == [f"str {hashlib.sha256(TOKEN.encode()).hexdigest()}"] * 2
    run_id = json.loads(project.cli("runs", "--json", home=home).stdout)[0]["id"]
    texts = {"run": ran.stdout + ran.stderr}
    for args in (
        ("show", run_id, "--json"),
        ("show", run_id),
        ("logs", run_id, "call_api"),
        ("logs", run_id, "call_api", "--json"),
        ("explain", run_id, "call_api"),
        ("explain", run_id, "call_api", "--json"),
        ("explain", run_id, "login", "--json"),
        ("runs", "--json"),
        ("status", "--json"),
        ("plan", "wf.py"),
        ("plan", "wf.py", "--json"),
    ):
        out = project.cli(*args, home=home, fail=True)
        assert out.returncode in (0, 1), (args, out.stderr)
        texts[" ".join(args)] = out.stdout + out.stderr
    password = TOKEN[::-1] + "-pw"
    assert (home / "journal.db").exists()
    _assert_nowhere(
        [TOKEN, password, *_unkeyed_digests(TOKEN), *_unkeyed_digests(password)], home, texts
    )
    # what was there is shown as ***
    assert "bad token ***" in texts[f"show {run_id} --json"]
    assert "calling with ***" in texts[f"logs {run_id} call_api"]
    assert "token=***" in texts[f"logs {run_id} call_api"]
    assert "bad token ***" in texts["run"]
    assert "Secret('***')" in texts[f"show {run_id} --json"]  # the parameter's description


@pytest.mark.slow
def test_the_key_follows_the_secret(project: Project) -> None:
    home = project.root / "home"
    first = project.run(home)
    assert first["status"] == "succeeded"
    keys = project.keys(home, first["run_id"])
    again = project.run(home)
    assert again["executed"] == 0 and project.keys(home, again["run_id"]) == keys
    other = project.run(home, token="another-SUPERSECRET-token")
    changed = project.keys(home, other["run_id"])
    assert other["executed"] == 3
    assert changed["call_api"] != keys["call_api"] and changed["login"] != keys["login"]
    back = project.run(home)
    assert back["executed"] == 0 and project.keys(home, back["run_id"]) == keys
    key_file = home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32


@pytest.mark.slow
def test_teammates_sharing_a_store_and_signing_key_share_hits(project: Project) -> None:
    shared = project.root / "shared"
    alice, bob = project.root / "alice", project.root / "bob"
    first = project.run(alice, store=shared, key=TEAM_KEY)
    assert first["executed"] == 3
    second = project.run(bob, store=shared, key=TEAM_KEY)
    assert second["status"] == "succeeded" and second["executed"] == 0, second
    assert project.keys(alice, first["run_id"]) == project.keys(bob, second["run_id"])
    assert not (alice / "secret.key").exists()  # the team's key was used
    for folder in (shared, alice, bob):
        _assert_nowhere([TOKEN, *_unkeyed_digests(TOKEN)], folder, {})


@pytest.mark.slow
def test_without_a_shared_store_the_key_is_not_computable_from_the_value(
    project: Project,
) -> None:
    one, two = project.root / "one", project.root / "two"
    first, second = project.run(one), project.run(two)
    assert first["executed"] == second["executed"] == 3
    keys_one, keys_two = project.keys(one, first["run_id"]), project.keys(two, second["run_id"])
    assert keys_one["call_api"] != keys_two["call_api"]
    assert keys_one["login"] != keys_two["login"]
    assert keys_one["report"] == keys_two["report"]  # same upstream bytes: early cutoff holds
    assert (one / "secret.key").read_bytes() != (two / "secret.key").read_bytes()


# -- in-process ------------------------------------------------------------------------------


def test_secret_shows_as_stars_and_pickles_for_transport() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('***')"
    assert "hunter2" not in repr([secret, {"k": secret}])
    copy = pickle.loads(pickle.dumps(secret))
    assert copy == secret and copy.reveal() == "hunter2"
    assert Secret(b"raw").reveal() == b"raw"
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Secret("")


def test_a_secret_is_never_hashed_without_a_key() -> None:
    from etherealfabric.hashing._values import hash_value

    with pytest.raises(HashingError, match="only with a key"):
        hash_value(Secret("hunter2"))


def test_the_node_gets_the_plain_value(tmp_path: Path) -> None:
    seen: list[Any] = []

    @node(secret=["password"])
    def use(token, items, password):
        seen.append((token, items, password))
        return len(token) + len(password)

    with Workflow("plain", home=tmp_path / "h") as wf:
        out = use(Secret("abc"), [Secret(b"xy"), {"k": Secret("z")}], "pw")
    results = wf.execute()
    assert results[out] == 5
    assert seen == [("abc", [b"xy", {"k": "z"}], "pw")]


def test_returning_a_secret_is_refused_naming_the_node(tmp_path: Path) -> None:
    @node
    def leak(token):
        return Secret(token)

    @node
    def leak_nested(token):
        return {"auth": [Secret(token)]}

    with Workflow("leaky", home=tmp_path / "h", keep_going=True) as wf:
        leak(Secret("tok-LEAK"))
        leak_nested(Secret("tok-LEAK"))
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    errors = info.value.failures
    assert "node 'leak'" in errors["leak"] and "is a Secret" in errors["leak"]
    assert "node 'leak_nested'" in errors["leak_nested"]
    assert "cannot be stored" in errors["leak_nested"]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "h").rglob("*") if p.is_file())
    assert b"tok-LEAK" not in stored


def test_errors_retries_and_logs_are_redacted_in_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caught: list[Any] = []

    @node(retries=1)
    def flaky(token):
        logging.getLogger("app").error("failing with %s", token)
        raise ValueError(f"bad token {token}", token)

    with Workflow("redact", home=tmp_path / "h") as wf:
        flaky(Secret("tok-REDACT-ME"))
    with caplog.at_level(logging.WARNING):
        results = wf.execute(raise_on_error=False, subscribers=[caught.append])
    error = results.errors["flaky"]
    assert error == "ValueError: ('bad token ***', '***')"
    for event in caught:
        assert "tok-REDACT-ME" not in repr(event.data), event
    assert "tok-REDACT-ME" not in caplog.text and "failing with ***" in caplog.text
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    assert "tok-REDACT-ME" not in str(info.value)
    assert "tok-REDACT-ME" not in str(info.value.__cause__)


def test_secret_names_are_checked() -> None:
    def fn(a, b):
        return a

    with pytest.raises(DefinitionError, match="not parameters"):
        node(secret=["c"])(fn)
    wrapped = node(secret=["b"])(fn)
    with Workflow("refs"):
        up = node(fn)(1, 2)
        with pytest.raises(DefinitionError, match="secret parameter 'b'"):
            wrapped(1, up)


def test_checkpoints_refuse_secrets(tmp_path: Path) -> None:
    from etherealfabric import checkpoint

    @node
    def saver(token):
        checkpoint.save({"token": Secret(token)})
        return 1

    with Workflow("ckpt", home=tmp_path / "h") as wf:
        saver(Secret("tok-CKPT"))
    results = wf.execute(raise_on_error=False)
    assert "cannot be stored" in results.errors["saver"]
