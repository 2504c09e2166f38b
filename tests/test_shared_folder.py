"""A shared folder store is untrusted: forged entries there never run code (issue 12.1).

Everything goes through the CLI in fresh processes, as a user (and an attacker) would. Every
Python process of a run, workers included, gets an audit hook (through ``sitecustomize``) that
logs each ``pickle.find_class`` call: the forged pickle below imports ``posix.mkdir``, so the
hook sees it if it is ever unpickled, whether or not the payload succeeds. The control test at
the end puts the same forged entries in the home's own store, which is trusted by design, and
shows the hook catching the load: the other tests could fail.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from etherealfabric.hashing._digest import digest_bytes
from etherealfabric.store._base import checkpoint_header

TEAM_KEY = "team-secret-0123456789abcdef"
ATTACKER_KEY = "attacker-key-0123456789abcdef"

PIPELINE = """
import os
from etherealfabric import Workflow, checkpoint, node


def _log(name):
    with open(os.environ["EF_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


@node
def make(n):
    _log("make")
    return {"n": n, "s": {1, 2}}


@node
def train(epochs):
    _log("train")
    state = checkpoint.load(default=None)
    start = 0 if state is None else state["epoch"]
    for epoch in range(start, epochs):
        checkpoint.save({"epoch": epoch + 1})
    return epochs


@node
def total(d, t):
    _log("total")
    value = d["n"] * 2 + len(d["s"]) + t
    with open(os.environ["EF_TEST_LOG"] + ".result", "w") as f:
        f.write(str(value))
    return value


with Workflow("shared") as workflow:
    result = total(make(3), train(2))
"""

SITECUSTOMIZE = """
import os
import sys


def _hook(event, args):
    if event == "pickle.find_class":
        with open(os.environ["EF_TEST_AUDIT"], "a") as f:
            f.write(f"{args[0]} {args[1]}\\n")


sys.addaudithook(_hook)
"""


class _Forged:
    """Unpickling this calls ``posix.mkdir(marker)``: code run from a pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.marker,))


class Project:
    """A folder with the pipeline, a scratch home, and the audit hook for every process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "wf.py").write_text(PIPELINE)
        hooks = root / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.hooks = hooks
        self.log = root / "executions.log"
        self.audit = root / "audit.log"
        self.marker = root / "pwned"

    def env(self, store: Path | None, key: str | None, mode: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.hooks), env.get("PYTHONPATH", "")])
        env["EF_TEST_LOG"] = str(self.log)
        env["EF_TEST_AUDIT"] = str(self.audit)
        if store is not None:
            env["ETHEREALFABRIC_STORE"] = str(store)
        if key is not None:
            env["ETHEREALFABRIC_SIGNING_KEY"] = key
        if mode is not None:
            env["ETHEREALFABRIC_STORE_MODE"] = mode
        return env

    def cli(
        self,
        *args: str,
        home: Path,
        store: Path | None = None,
        key: str | None = None,
        mode: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args, "--home", str(home)],
            cwd=self.root,
            env=self.env(store, key, mode),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def keys(self) -> dict[str, str]:
        """Each root node's cache key, from ``plan --json`` in a scratch home."""
        out = self.cli("plan", "wf.py", "--json", home=self.root / "scratch")
        assert out.returncode == 0, out.stderr
        return {n["node"]: n["key"] for n in json.loads(out.stdout)["nodes"] if n["key"]}

    def executed(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def unpickled(self) -> list[str]:
        return self.audit.read_text().splitlines() if self.audit.exists() else []

    def forge(self, store: Path, keys: dict[str, str], *, sign_with: str | None = None) -> None:
        """Plant a record of ``make`` naming a pickle that runs code, and a checkpoint of
        ``train`` that runs code, as an attacker who can write the folder would."""
        payload = pickle.dumps(_Forged(str(self.marker)))
        digest = digest_bytes(payload)
        obj = store / "objects" / digest[:2] / digest
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(payload)
        record = {
            "created_at": 1.0,
            "node": "make",
            "outputs": {
                "result": {
                    "digest": digest,
                    "inline": False,
                    "serializer": "pickle",
                    "size": len(payload),
                    "type": "builtins.dict",
                }
            },
        }
        key = keys["make"]
        if sign_with is not None:
            from etherealfabric.store._signing import Signer, encode_record

            record = encode_record(key, record, Signer(sign_with.encode()))
        action = store / "actions" / key[:2] / f"{key}.json"
        action.parent.mkdir(parents=True, exist_ok=True)
        action.write_text(json.dumps(record))
        state = pickle.dumps(_Forged(str(self.marker)))
        train = keys["train"]
        ckpt = store / "checkpoints" / train[:2] / train
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(checkpoint_header(state) + state)

    def assert_no_forged_code_ran(self) -> None:
        assert not self.marker.exists(), "the forged pickle ran"
        assert not [line for line in self.unpickled() if line.startswith(("posix", "os "))], (
            self.unpickled()
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["threads", "processes"])
@pytest.mark.parametrize(
    "key,sign_with",
    [(None, None), (TEAM_KEY, None), (TEAM_KEY, ATTACKER_KEY), (None, ATTACKER_KEY)],
    ids=["no-key", "key-unsigned-forgery", "key-foreign-signature", "no-key-signed-forgery"],
)
def test_forged_entries_in_a_shared_folder_never_run(
    project: Project, backend: str, key: str | None, sign_with: str | None
) -> None:
    shared = project.root / "shared"
    project.forge(shared, project.keys(), sign_with=sign_with)
    home = project.root / "home"
    out = project.cli("run", "wf.py", "--backend", backend, home=home, store=shared, key=key)
    assert out.returncode == 0, out.stderr
    project.assert_no_forged_code_ran()
    # the forged record was a miss: make ran, and the result is the real one
    assert sorted(project.executed()) == ["make", "total", "train"]
    assert Path(f"{project.log}.result").read_text() == "10"
    assert "ignoring the action record" in out.stderr
    assert "ignoring the checkpoint" in out.stderr


def test_the_home_store_is_trusted_so_the_hook_would_see_a_forged_load(
    project: Project,
) -> None:
    """Control: the same forgery in the home's own (trusted) store is loaded, and seen."""
    home = project.root / "home"
    project.forge(home, project.keys())
    out = project.cli("run", "wf.py", home=home)
    assert any(line.startswith(("posix", "os ")) for line in project.unpickled())
    assert project.marker.exists(), out.stderr


@pytest.mark.slow
def test_teammates_with_the_key_share_hits_through_a_shared_folder(project: Project) -> None:
    shared = project.root / "shared"
    first = project.cli(
        "run", "wf.py", "--json", home=project.root / "a", store=shared, key=TEAM_KEY
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["executed"] == 3
    second = project.cli(
        "run", "wf.py", "--json", home=project.root / "b", store=shared, key=TEAM_KEY
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["cached"] == 3
    assert sorted(project.executed()) == ["make", "total", "train"]  # the first run only
    project.assert_no_forged_code_ran()


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '{"node": 1}',
        '{"node": "make", "outputs": {"result": {"digest": "zz", "serializer": "json"}}}',
        '{"node": "make", "outputs": {"result": "x"}}',
        '{"node": "make", "outputs": {"result": {"digest": "%s", "serializer": "json", '
        '"size": -1}}}' % ("ab" * 16),
        "not json",
        "[" * 100_000,
    ],
    ids=["list", "node-int", "bad-digest", "output-str", "negative-size", "not-json", "deep"],
)
def test_a_malformed_record_in_a_shared_folder_is_a_miss_not_a_failure(
    project: Project, body: str
) -> None:
    shared = project.root / "shared"
    key = project.keys()["make"]
    action = shared / "actions" / key[:2] / f"{key}.json"
    action.parent.mkdir(parents=True)
    action.write_text(body)
    out = project.cli("run", "wf.py", "--json", home=project.root / "home", store=shared)
    assert out.returncode == 0, out.stderr
    assert "make" in project.executed()
    assert key in out.stderr and "ignoring the action record" in out.stderr
    assert out.stderr.count(key) <= 2, out.stderr  # one warning, not one per lookup


def test_cache_verify_checks_this_homes_copies_of_shared_objects(project: Project) -> None:
    """With a shared store, a run keeps copies of what it loads in its home; a damaged copy is
    reported by ``cache verify`` (and removed by ``--fix``), not only the shared originals."""
    store, home = project.root / "team-store", project.root / "home"
    store.mkdir()
    assert project.cli("run", "wf.py", home=home, store=store).returncode == 0
    copies = sorted(p for p in (home / "objects").rglob("*") if p.is_file())
    assert copies, "the run kept no local copy"
    damaged = copies[0]
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    audit = project.cli("cache", "verify", home=home, store=store)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert f"corrupt object {damaged.name}" in audit.stdout
    assert "this home's copy of the shared store's" in audit.stdout
    fixed = project.cli("cache", "verify", "--fix", home=home, store=store)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert not damaged.exists()
    assert (store / "objects" / damaged.name[:2] / damaged.name).exists()  # the original stays
    assert project.cli("cache", "verify", home=home, store=store).returncode == 0
    again = project.cli("run", "wf.py", home=home, store=store)
    assert "0 executed, 3 cached" in again.stderr, again.stderr


@pytest.mark.parametrize("created", ["1" + "0" * 30, "-1" + "0" * 19, "1e400"])
def test_a_record_whose_time_the_journal_cannot_hold_is_a_miss_not_a_failure(
    project: Project, created: str
) -> None:
    """An unsigned record (no key: json outputs are shared) naming real bytes, whose
    ``created_at`` is an integer beyond SQLite's 64 bits or an infinity: a miss with a warning
    naming it (the node failed with ``OverflowError: Python int too large to convert to SQLite
    INTEGER`` as its record went into the journal)."""
    shared = project.root / "shared"
    key = project.keys()["make"]
    data = b'{"n": 3, "s": [1, 2]}'
    digest = digest_bytes(data)
    obj = shared / "objects" / digest[:2] / digest
    obj.parent.mkdir(parents=True)
    obj.write_bytes(data)
    output = {"digest": digest, "serializer": "json", "size": len(data), "inline": True}
    body = json.dumps({"node": "make", "outputs": {"result": output}, "created_at": 0})
    action = shared / "actions" / key[:2] / f"{key}.json"
    action.parent.mkdir(parents=True)
    action.write_text(body.replace('"created_at": 0', f'"created_at": {created}'))
    out = project.cli("run", "wf.py", "--json", home=project.root / "home", store=shared)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "make" in project.executed()
    assert f"{key}.json (a cache miss: the node runs again): its 'created_at'" in out.stderr


#: a pipeline whose output is too large to stay inline in the journal (an object in the store)
BIG_PIPELINE = """
from etherealfabric import Workflow, node


@node
def big(n):
    return bytes(range(256)) * n


with Workflow("big") as workflow:
    big(400)
"""


def test_cache_verify_fix_replaces_a_damaged_shared_object_with_this_homes_sound_copy(
    project: Project,
) -> None:
    """A shared object a teammate (or an intruder) damaged, of a result this home holds sound:
    ``--fix`` keeps this home's record and puts its copy back in the store, so neither this home
    nor a teammate recomputes it (it deleted this home's record and the team's)."""
    (project.root / "big.py").write_text(BIG_PIPELINE)
    store, home = project.root / "team-store", project.root / "home"
    store.mkdir()
    assert project.cli("run", "big.py", home=home, store=store, key=TEAM_KEY).returncode == 0
    (digest,) = [p.name for p in (store / "objects").rglob("*") if p.stat().st_size > 65536]
    shared, copy = (root / "objects" / digest[:2] / digest for root in (store, home))
    data = bytearray(shared.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shared.write_bytes(bytes(data))
    audit = project.cli("cache", "verify", home=home, store=store, key=TEAM_KEY)
    assert audit.returncode == 1 and f"corrupt object {digest} at {shared}" in audit.stdout
    assert "node big" not in audit.stdout, audit.stdout  # this home's record is sound
    fixed = project.cli("cache", "verify", "--fix", home=home, store=store, key=TEAM_KEY)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert shared.read_bytes() == copy.read_bytes()
    for who in (home, project.root / "teammate"):
        again = project.cli("run", "big.py", home=who, store=store, key=TEAM_KEY)
        assert "0 executed, 1 cached" in again.stderr, again.stderr


def test_cache_verify_fix_keeps_the_results_not_pushed_yet(project: Project) -> None:
    """A ``push-on-demand`` result lives in the home until ``cache push``: its object is absent
    from the shared store, and that is no problem to report or "fix" (``--fix`` deleted its
    record, losing the result ``cache push`` was to send)."""
    (project.root / "big.py").write_text(BIG_PIPELINE)
    store, home = project.root / "team-store", project.root / "home"
    store.mkdir()
    mode = "push-on-demand"
    assert (
        project.cli("run", "big.py", home=home, store=store, key=TEAM_KEY, mode=mode).returncode
        == 0
    )
    assert not list((store / "objects").rglob("*"))
    audit = project.cli("cache", "verify", "--fix", home=home, store=store, key=TEAM_KEY, mode=mode)
    assert audit.returncode == 0 and "0 problem(s)" in audit.stdout, audit.stdout
    pushed = project.cli("cache", "push", home=home, store=store, key=TEAM_KEY, mode=mode)
    assert "pushed 1 result(s)" in pushed.stdout + pushed.stderr, pushed.stdout + pushed.stderr
    teammate = project.cli(
        "run", "big.py", home=project.root / "teammate", store=store, key=TEAM_KEY
    )
    assert "0 executed, 1 cached" in teammate.stderr, teammate.stderr


def test_cache_push_sends_again_the_bytes_a_record_there_names_that_are_gone(
    project: Project,
) -> None:
    """The team's record is there, but its objects went (deleted by someone who can write the
    store, or collected): ``cache push`` from a home that holds them sends them again, and a
    teammate's hit works (it said "already there" and sent nothing: the teammate recomputed)."""
    (project.root / "big.py").write_text(BIG_PIPELINE)
    store, home = project.root / "team-store", project.root / "home"
    store.mkdir()
    assert project.cli("run", "big.py", home=home, store=store, key=TEAM_KEY).returncode == 0
    objects = sorted(p for p in (store / "objects").rglob("*") if p.is_file())
    assert objects and list((store / "actions").rglob("*.json"))
    for gone in objects:
        gone.unlink()
    dry = project.cli("cache", "push", "--dry-run", home=home, store=store, key=TEAM_KEY)
    assert f"would have pushed 1 result(s) ({len(objects)} object(s)" in dry.stdout, dry.stdout
    pushed = project.cli("cache", "push", home=home, store=store, key=TEAM_KEY)
    assert pushed.returncode == 0 and "pushed 1 result(s)" in pushed.stdout, pushed.stdout
    assert all(p.is_file() for p in objects)
    again = project.cli("cache", "push", home=home, store=store, key=TEAM_KEY)
    assert "pushed 0 result(s)" in again.stdout and "1 already there" in again.stdout
    teammate = project.cli("run", "big.py", home=project.root / "mate", store=store, key=TEAM_KEY)
    assert "0 executed, 1 cached" in teammate.stderr, teammate.stderr


def test_folders_of_a_shared_folder_linked_outside_it_are_never_gone_through(
    project: Project,
) -> None:
    """Symbolic links planted where the store's folders belong (``actions``, ``objects/00``,
    ``objects/.tmp``) pointing outside the store: a run, ``cache gc`` and ``cache verify --fix``
    never read, write or delete anything there (a run wrote its records there, and ``cache gc``
    deleted a file there named like an object); the links are replaced by real folders."""
    store, outside = project.root / "team-store", project.root / "outside"
    folders = {"actions": "records", "objects/00": "prefix", "objects/.tmp": "temp"}
    for where, name in folders.items():
        (outside / name).mkdir(parents=True)
        (store / where).parent.mkdir(parents=True, exist_ok=True)
        (store / where).symlink_to(outside / name, target_is_directory=True)
    precious = outside / "prefix" / ("00" + "ab" * 15)
    precious.write_text("not the store's")
    before = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    home = project.root / "home"
    out = project.cli("run", "wf.py", home=home, store=store, key=TEAM_KEY)
    assert out.returncode == 0, out.stderr
    assert "is a symbolic link where a folder of the store belongs" in out.stderr, out.stderr
    for command in (("cache", "gc", "--grace", "0"), ("cache", "verify", "--fix")):
        done = project.cli(*command, home=home, store=store, key=TEAM_KEY)
        assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == before
    assert precious.read_text() == "not the store's"
    assert not any((store / where).is_symlink() for where in folders)
    mate = project.cli(
        "run", "wf.py", "--json", home=project.root / "mate", store=store, key=TEAM_KEY
    )
    assert json.loads(mate.stdout)["cached"] == 3, mate.stderr


def test_deeply_nested_entries_in_a_shared_folder_break_no_run_gc_or_verify(
    project: Project,
) -> None:
    """JSON nested 100,000 deep (a few hundred kB a teammate can plant as a record or a roots
    entry) makes ``json.loads`` raise RecursionError, not ValueError: it is a forged entry like
    any other, ignored with a warning, never a failed node or a traceback from ``cache gc``."""
    shared, home = project.root / "shared", project.root / "home"
    assert project.cli("run", "wf.py", home=home, store=shared, key=TEAM_KEY).returncode == 0
    key = project.keys()["make"]
    deep = "[" * 100_000
    (shared / "actions" / key[:2] / f"{key}.json").write_text(deep)
    for roots in (shared / "roots").rglob("*.json"):
        roots.write_text('{"keys": ' + deep)
    other = project.root / "other-home"
    out = project.cli("run", "wf.py", "--json", home=other, store=shared, key=TEAM_KEY)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nodes"]["make"] == "succeeded"
    assert key in out.stderr and "Traceback" not in out.stderr
    assert (project.root / "executions.log.result").read_text() == "10"
    for command in (("cache", "gc"), ("cache", "verify")):
        done = project.cli(*command, home=other, store=shared, key=TEAM_KEY)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr


def test_cat_of_a_forged_json_output_too_deep_to_read_is_one_line_not_a_traceback(
    project: Project,
) -> None:
    """Without a key a teammate can make a record name other json bytes (documented: wrong
    data, never code); bytes nested too deep for the parser make ``cat`` say so in one line."""
    shared = project.root / "shared"
    assert project.cli("run", "wf.py", home=project.root / "a", store=shared).returncode == 0
    data = b"[" * 100_000 + b"]" * 100_000
    digest = digest_bytes(data)
    (shared / "objects" / digest[:2]).mkdir(parents=True, exist_ok=True)
    (shared / "objects" / digest[:2] / digest).write_bytes(data)
    for action in (shared / "actions").rglob("*.json"):
        record = json.loads(action.read_text())
        if record["node"] == "total":
            record["outputs"]["result"].update(digest=digest, size=len(data), inline=False)
            action.write_text(json.dumps(record))
    home = project.root / "b"
    assert project.cli("run", "wf.py", home=home, store=shared).returncode == 0
    out = project.cli("cat", "latest", "total", home=home, store=shared)
    assert out.returncode == 2, out.stdout + out.stderr  # the CLI's one-line error
    assert "Traceback" not in out.stderr and "total" in out.stderr, out.stderr
    assert "nested too deep" in out.stderr, out.stderr


BIG = """
import os
from etherealfabric import Workflow, node


@node
def blob(n):
    with open(os.environ["EF_TEST_LOG"], "a") as f:
        f.write("blob\\n")
    return bytes(range(256)) * n


@node
def size(b):
    return len(b)


with Workflow("big") as workflow:
    size(blob(1000))
"""


def test_a_huge_file_planted_for_a_shared_object_is_refused_without_being_copied(
    project: Project,
) -> None:
    # a writer of the folder without the key swaps a 256 KB object for a 4 GiB (sparse) file:
    # the record gives its size, so the next teammate refuses it at once, never copying
    # gigabytes into its home, and recomputes
    (project.root / "wf.py").write_text(BIG)
    shared, a, b = project.root / "shared", project.root / "a", project.root / "b"
    first = project.cli("run", "wf.py", home=a, store=shared, key=TEAM_KEY)
    assert first.returncode == 0, first.stderr
    objects = [p for p in (shared / "objects").rglob("*") if p.is_file()]
    [obj] = [p for p in objects if p.stat().st_size > 200_000]
    size = obj.stat().st_size
    os.truncate(obj, 4 << 30)
    second = project.cli("run", "wf.py", "--json", home=b, store=shared, key=TEAM_KEY)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["executed"] >= 1
    assert project.executed() == ["blob", "blob"]  # recomputed by b
    assert f"bytes instead of {size}" in second.stderr, second.stderr
    copied = sum(p.stat().st_blocks * 512 for p in b.rglob("*") if p.is_file())
    assert copied < 64 << 20, copied  # nothing near the planted size came down
    shown = project.cli("cat", "latest", "size", home=b, store=shared, key=TEAM_KEY)
    assert shown.stdout.strip() == "256000", shown
