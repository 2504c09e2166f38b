"""A shared folder's content is untrusted, and damage to it is repaired (a user-level sweep).

Everything goes through the CLI in fresh processes, as users run it: entries replaced by
folders, a damaged small output, forged records and roots, and ``cache gc --dry-run`` against
the real collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from etherealfabric.hashing._digest import digest_bytes

KEY = "team-secret-0123456789abcdef"

PIPELINE = """
import os
from etherealfabric import Workflow, node


def _log(name):
    with open(os.environ["EF_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


@node
def small(n):
    _log("small")
    return {"n": n, "pad": "x" * 100}  # an inline output


@node
def big(n):
    _log("big")
    return "y" * 100_000 + str(n)  # a stored object


@node
def report(s, b):
    _log("report")
    return len(s["pad"]) + len(b) + s["n"]


with Workflow("sweep", params={"n": 3}) as workflow:
    result = report(small(workflow.params.n), big(workflow.params.n))
"""


class Team:
    """A project folder with the pipeline, a shared folder, and one home per teammate."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "wf.py").write_text(PIPELINE)
        self.shared = root / "shared"
        self.log = root / "executions.log"

    def cli(
        self, *args: str, home: str = "a", timeout: float = 120, key: str | None = KEY
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        env.update(EF_TEST_LOG=str(self.log), ETHEREALFABRIC_STORE=str(self.shared))
        if key is not None:
            env["ETHEREALFABRIC_SIGNING_KEY"] = key
        return subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args, "--home", str(self.root / home)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, home: str = "a", *params: str) -> dict[str, Any]:
        out = self.cli("run", "wf.py", *params, "--json", home=home)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def keys(self) -> dict[str, str]:
        out = self.cli("plan", "wf.py", "--json", home="scratch")
        assert out.returncode == 0, out.stderr
        return {n["node"]: n["key"] for n in json.loads(out.stdout)["nodes"] if n["key"]}

    def executed(self) -> list[str]:
        found = self.log.read_text().split() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return sorted(found)

    def record(self, key: str) -> Path:
        return self.shared / "actions" / key[:2] / f"{key}.json"

    def object(self, digest: str) -> Path:
        return self.shared / "objects" / digest[:2] / digest

    def outputs(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self.record(key).read_text())["outputs"]["result"])


@pytest.fixture
def team(tmp_path: Path) -> Team:
    return Team(tmp_path)


def plant_folder(path: Path, victim: Path) -> None:
    """A folder where a store file belongs, with a symbolic link to ``victim`` inside."""
    if path.is_file():
        path.unlink()
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "link").symlink_to(victim)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious").write_text("keep me")
    return folder


# -- 1. folders planted where entries belong ---------------------------------------------------
@pytest.mark.timeout(300)
def test_a_run_writes_its_entries_over_planted_folders(team: Team, victim: Path) -> None:
    """A folder in place of a record, an object and a lease: the node succeeds, its entry
    replaces the folder (a warning names it), and a teammate then gets every hit."""
    keys = team.keys()
    assert team.run("a")["executed"] == 3
    big = team.outputs(keys["big"])["digest"]
    planted = [
        team.record(keys["small"]),
        team.object(big),
        team.shared / "leases" / keys["big"][:2] / f"{keys['big']}.1",
        team.shared / "leases" / keys["small"][:2] / f"{keys['small']}.1",
    ]
    for path in planted:
        plant_folder(path, victim)
    team.executed()
    out = team.cli("run", "wf.py", "--json", home="b", timeout=90)  # a planted lease blocked
    assert out.returncode == 0, out.stderr
    assert team.executed() == ["big", "small"]  # their entries were absent: recomputed
    for path in planted[:2]:
        assert path.is_file() and str(path) in out.stderr
    assert "a folder where a stored file belongs" in out.stderr
    assert team.run("c")["cached"] == 3 and team.executed() == []
    assert (victim / "precious").read_text() == "keep me"


def test_verify_reports_entries_that_are_folders_and_fix_removes_them(
    team: Team, victim: Path
) -> None:
    keys = team.keys()
    team.run("a")
    big = team.outputs(keys["big"])["digest"]
    names = [
        f"actions/{keys['small'][:2]}/{keys['small']}.json",
        f"objects/{big[:2]}/{big}",
        f"leases/{keys['big'][:2]}/{keys['big']}.1",
        "roots/ab/" + "ab" * 16 + ".json",
        f"checkpoints/{keys['big'][:2]}/{keys['big']}",
    ]
    for name in names:
        plant_folder(team.shared / name, victim)
    # a temp name, over a day old (a shared folder's temp files may be a teammate's uploads
    # from another machine: leftovers only once older than gc's grace period)
    temp = team.shared / "objects" / ".tmp" / ".tmp-left-behind"
    plant_folder(temp, victim)
    os.utime(temp, (time.time() - 2 * 86400,) * 2)

    out = team.cli("cache", "verify", "--json")
    assert out.returncode == 1, out.stderr
    problems = json.loads(out.stdout)["problems"]
    damaged = sorted(p["entry"] for p in problems if p["kind"] == "damaged_entry")
    assert damaged == sorted(names)
    leftovers = json.loads(out.stdout)["leftovers"]  # listed apart: not a failure by itself
    assert [(p["kind"], p["path"]) for p in leftovers] == [("orphan_temp", str(temp))]

    out = team.cli("cache", "verify", "--fix")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    for name in names:
        assert not os.path.lexists(team.shared / name)
    assert not os.path.lexists(temp)
    assert team.cli("cache", "verify").returncode == 0
    assert (victim / "precious").read_text() == "keep me"
    assert team.run("b")["executed"] == 2  # the small record and big's object were gone


def test_gc_removes_entries_that_are_folders_with_a_warning(team: Team, victim: Path) -> None:
    keys = team.keys()
    team.run("a")
    home_id = (team.root / "a" / "home-id").read_text().strip()
    names = [
        f"roots/{home_id[:2]}/{home_id}.json",  # this home's own roots
        "roots/cd/" + "cd" * 16 + ".json",  # another home's
        f"leases/{keys['big'][:2]}/{keys['big']}.1",
        "actions/ef/" + "ef" * 16 + ".json",
    ]
    for name in names:
        plant_folder(team.shared / name, victim)
    dry = team.cli("cache", "gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["shared"]["removed_damaged"] == sorted(names)
    out = team.cli("cache", "gc", "--json")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert json.loads(out.stdout)["shared"]["removed_damaged"] == sorted(
        names[1:]
    )  # own: rewritten
    for name in names[1:]:
        assert str(team.shared / name) in out.stderr and not os.path.lexists(team.shared / name)
    assert (team.shared / names[0]).is_file()  # this home's roots, published again
    assert (victim / "precious").read_text() == "keep me"
    assert team.run("b")["cached"] == 3  # nothing of the team's was collected


# -- 2, 3. a damaged small output ----------------------------------------------------------------
def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))  # the same size, other bytes


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_damaged_small_output_in_the_shared_store_is_repaired_once_recomputed(
    team: Team, backend: str
) -> None:
    """The recomputed bytes have the damaged copy's size: they replace it all the same (a
    size check kept it, and every teammate recomputed the node forever), and the run says
    once that the entry is unusable."""
    keys = team.keys()
    team.run("a")
    digest = team.outputs(keys["small"])["digest"]
    flip_a_byte(team.object(digest))
    team.executed()
    out = team.cli("run", "wf.py", "--json", "--backend", backend, home="b")
    assert out.returncode == 0, out.stderr
    assert team.executed() == ["small"]
    assert digest_bytes(team.object(digest).read_bytes()) == digest  # repaired
    assert out.stderr.count("shared cache entry") == 1, out.stderr  # said once
    assert keys["small"] in out.stderr and str(team.object(digest)) in out.stderr
    assert team.run("c")["cached"] == 3 and team.executed() == []


def _forge_small(team: Team, forged: bytes, **fields: Any) -> str:
    """Make the shared record of ``small`` name ``forged`` (stored as an object under its
    digest; ``fields`` of its output changed too) and delete ``report``'s record, so that the
    next run's ``report`` loads it; returns the forged bytes' digest."""
    small = next(p for p in (team.shared / "actions").glob("*/*.json") if "small" in p.read_text())
    record = json.loads(small.read_text())
    digest = digest_bytes(forged)
    team.object(digest).parent.mkdir(parents=True, exist_ok=True)
    team.object(digest).write_bytes(forged)
    record["outputs"]["result"].update({"digest": digest, "size": len(forged), **fields})
    small.write_text(json.dumps(record))
    for path in (team.shared / "actions").glob("*/*.json"):  # the consumer must run
        if json.loads(path.read_text())["node"] == "report":
            path.unlink()
    return digest


@pytest.mark.timeout(300)
@pytest.mark.parametrize("key", [KEY, None], ids=["signed", "unsigned"])
def test_an_output_whose_bytes_match_their_digest_but_do_not_parse_is_recomputed(
    team: Team, key: str | None
) -> None:
    """A forged unsigned JSON entry whose object hashes right but which json refuses (an
    integer of 5,000 digits): the consumer's input is unusable, its producer is computed
    again and the shared entry replaced (before: the consumer failed with a ValueError in
    every run of every teammate). A signed store refuses the forged record outright."""
    assert team.cli("run", "wf.py", key=key).returncode == 0
    team.executed()
    forged = ('{"n": 3, "pad": ' + "9" * 5000 + "}").encode()
    digest = _forge_small(team, forged)

    out = team.cli("run", "wf.py", "--json", home="b", key=key)
    assert out.returncode == 0, out.stderr
    assert team.executed() == ["report", "small"]
    assert json.loads(out.stdout)["status"] == "succeeded"
    assert "Traceback" not in out.stderr
    if key is None:
        assert "no valid json data" in out.stderr and digest in out.stderr, out.stderr
    out = team.cli("run", "wf.py", "--json", home="c", key=key)
    assert out.returncode == 0 and team.executed() == [], out.stderr  # the entry was replaced
    assert json.loads(out.stdout)["cached"] == 3


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lie", [False, True], ids=["true-size", "size-understated"])
def test_a_forged_inline_output_of_megabytes_never_goes_into_a_journal(
    team: Team, lie: bool
) -> None:
    """An unsigned record whose small output is replaced by 2 MB of valid JSON, still marked
    inline: a teammate's journal keeps only small bytes (before: it copied the object into
    its journal, as much as the record named); one that understates its size is a miss."""
    assert team.cli("run", "wf.py", key=None).returncode == 0
    team.executed()
    forged = json.dumps({"n": 3, "pad": "z" * 2_000_000}).encode()
    _forge_small(team, forged, size=116 if lie else len(forged), inline=True)

    out = team.cli("run", "wf.py", "--json", home="b", key=None)
    assert out.returncode == 0, out.stderr
    assert (team.root / "b" / "journal.db").stat().st_size < 1_000_000
    if lie:
        assert team.executed() == ["report", "small"]  # a miss: recomputed
        assert f"has {len(forged)} bytes, not its 116" in out.stderr, out.stderr
    else:  # the forged value is loaded (unsigned json: see docs/stores.md), from the object
        assert team.executed() == ["report"]
    assert "Traceback" not in out.stderr


# -- 4. a forged record of a returned file ---------------------------------------------------------
@pytest.mark.parametrize(
    "files,reason",
    [
        (
            "{}",
            "its file output 'result' names 'out.txt', which the record's file entries do not list",
        ),
        ("[]", "its 'files' is not an object"),
        (
            '{"../out.txt": {"kind": "file", "digest": "%s", "size": 3}}' % ("ab" * 16),
            "its file entry '../out.txt' is unsafe",
        ),
        (
            '{"out.txt": {"kind": "file", "digest": "%s", "size": 3}}' % ("cd" * 16),
            "its file output 'result' and the file entry 'out.txt' name different digests",
        ),
    ],
    ids=["files-empty", "files-a-list", "unsafe-entry", "other-digest"],
)
def test_a_forged_file_record_is_refused_for_what_is_wrong_with_it(
    team: Team, files: str, reason: str
) -> None:
    """A record of a returned file whose ``files`` section is forged is refused naming the
    file entry at fault, not with the reason given for pickles."""
    key = team.keys()["small"]
    team.record(key).parent.mkdir(parents=True)
    output = {"digest": "ab" * 16, "serializer": "file", "size": 3, "path": "out.txt", "type": "x"}
    body = {"node": "small", "created_at": 1.0, "outputs": {"result": output}}
    team.record(key).write_text(json.dumps(body)[:-1] + f', "files": {files}}}')
    out = team.cli("run", "wf.py", "--json", home="b", key=None)
    assert out.returncode == 0, out.stderr
    assert "small" in team.executed()
    assert reason in out.stderr and str(team.record(key)) in out.stderr
    assert "pickle" not in out.stderr


# -- 5. cache gc --dry-run says what cache gc removes ----------------------------------------------
def test_gc_dry_run_reports_exactly_what_gc_removes(team: Team) -> None:
    """The real collection publishes this home's roots first (its last --keep-runs runs and
    its pins); the dry run, which publishes nothing, went by the roots of the last run (five
    runs, no pin): it listed the pinned run's results, and not the three runs --keep-runs 2
    drops."""
    first = team.run("a", "n=1")["run_id"]
    for n in range(2, 7):  # the roots name the last five runs: no longer n=1's results
        team.run("a", f"n={n}")
    assert team.cli("cache", "pin", first).returncode == 0
    dry = team.cli("cache", "gc", "--keep-runs", "2", "--grace", "0", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    real = team.cli("cache", "gc", "--keep-runs", "2", "--grace", "0", "--json")
    assert real.returncode == 0, real.stderr
    would, did = json.loads(dry.stdout)["shared"], json.loads(real.stdout)["shared"]
    fields = ("records_removed", "objects_removed", "leases_removed", "bytes_freed")
    assert {f: would[f] for f in fields} == {f: did[f] for f in fields}
    assert would["removed_records"] == did["removed_records"]
    assert would["removed_objects"] == did["removed_objects"]
    assert did["records_removed"] == 9  # three nodes of n=2, 3 and 4
    assert team.run("c", "n=1")["cached"] == 3  # the pinned run's results are all there
    assert team.run("c", "n=3")["executed"] == 3  # collected


# -- 6. a forged roots entry ---------------------------------------------------------------------
def test_a_forged_roots_entry_costs_a_recomputation_never_a_wrong_result(team: Team) -> None:
    """What docs/stores.md says: replacing a home's roots with ``"keys": []`` lets the next
    collection remove that home's results (as deleting them would); they are recomputed,
    right, and the home's next `cache gc` publishes its roots again."""
    team.run("a")
    assert team.run("b", "n=9")["executed"] == 3
    b_id = (team.root / "b" / "home-id").read_text().strip()
    roots = team.shared / "roots" / b_id[:2] / f"{b_id}.json"
    roots.write_text(json.dumps({"home": b_id, "host": "x", "updated_at": 1.0, "keys": []}))
    out = team.cli("cache", "gc", "--grace", "0", "--json", home="a")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["shared"]["records_removed"] == 3  # b's: unprotected
    team.executed()
    again = team.run("c", "n=9")
    assert again["executed"] == 3 and team.executed() == ["big", "report", "small"]
    value = team.cli("cat", again["run_id"], "report", home="c")
    assert value.stdout.strip() == str(100 + 100_001 + 9)
    assert team.cli("cache", "gc", "--grace", "0", home="b").returncode == 0
    assert json.loads(roots.read_text())["keys"]  # b's roots are back
